// Counter-based random numbers: Philox-4x32-10 (Salmon et al., SC'11). The value of element i of
// a draw depends only on (seed, offset, i), so it is identical on CPU and GPU, independent of
// launch configuration, and reproducible after resume (the Generator's (seed, offset) is saved).
//
// Layout: key = seed (2 x u32); counter = (i / 4 low, i / 4 high, offset low, offset high); lane
// i % 4 of the output block is element i. The normal transform (Box-Muller) uses a log and a
// sin/cos written here with explicit fmaf and IEEE-rounded +, *, /, sqrt only, and host code is
// built with -ffp-contract=off, so CPU and GPU produce bit-identical normals. Safe for .cu.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/half.h"
#include "core/macros.h"

namespace seqmix::rng {

struct U32x4 {
  uint32_t x, y, z, w;
};

SEQMIX_HD SEQMIX_FORCE_INLINE uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

SEQMIX_HD SEQMIX_FORCE_INLINE U32x4 philox4x32_10(uint64_t seed, uint64_t counter_lo,
                                                  uint64_t counter_hi) {
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  uint32_t c0 = uint32_t(counter_lo), c1 = uint32_t(counter_lo >> 32);
  uint32_t c2 = uint32_t(counter_hi), c3 = uint32_t(counter_hi >> 32);
  SEQMIX_UNROLL
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

// The 4 raw words of block `block` (elements 4*block .. 4*block+3) of draw (seed, offset).
SEQMIX_HD SEQMIX_FORCE_INLINE U32x4 block_u32(uint64_t seed, uint64_t offset, uint64_t block) {
  return philox4x32_10(seed, block, offset);
}

SEQMIX_HD SEQMIX_FORCE_INLINE uint32_t lane(const U32x4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Uniform in [0, 1): the top 24 bits scaled exactly.
SEQMIX_HD SEQMIX_FORCE_INLINE float u01(uint32_t u) {
  return float(u >> 8) * 5.9604644775390625e-08f;
}
// Uniform in (0, 1].
SEQMIX_HD SEQMIX_FORCE_INLINE float u01_open0(uint32_t u) {
  return float((u >> 8) + 1u) * 5.9604644775390625e-08f;
}

// Natural log for x in (0, 1] (normal floats), deterministic across host and device.
SEQMIX_HD SEQMIX_FORCE_INLINE float det_log(float x) {
  uint32_t u = float_bits(x);
  int e = int((u >> 23) & 0xffu) - 127;
  float m = bits_float((u & 0x7fffffu) | 0x3f800000u);  // [1, 2)
  if (m > 1.41421356f) {
    m = m * 0.5f;  // exact
    e += 1;
  }
  float f = m - 1.0f;  // exact (Sterbenz)
  float s = f / (2.0f + f);
  float s2 = s * s;
  // log(1+f) = 2 atanh(s) = 2s (1 + s^2/3 + s^4/5 + s^6/7 + s^8/9 + s^10/11)
  float p = fmaf(s2, 0.0909090936f, 0.111111112f);
  p = fmaf(s2, p, 0.142857149f);
  p = fmaf(s2, p, 0.200000003f);
  p = fmaf(s2, p, 0.333333343f);
  p = fmaf(s2, p, 1.0f);
  float two_s = s + s;
  float lo = fmaf(float(e), -2.12194440e-4f, two_s * p);  // e * (ln2 - ln2_hi) folded in
  return fmaf(float(e), 0.693359375f, lo);                // ln2_hi = 0.693359375 (exact)
}

// sin and cos of 2*pi*v for v in [0, 1), deterministic across host and device.
SEQMIX_HD SEQMIX_FORCE_INLINE void det_sincos_2pi(float v, float* s_out, float* c_out) {
  float w = v * 4.0f;           // quarter turns, exact
  float qf = floorf(w + 0.5f);  // nearest quarter
  float r = w - qf;             // [-0.5, 0.5], exact
  int q = int(qf) & 3;
  float x = r * 1.57079637f;  // [-pi/4, pi/4]
  float x2 = x * x;
  float sp = fmaf(x2, 2.75573192e-06f, -1.98412698e-04f);
  sp = fmaf(x2, sp, 8.33333377e-03f);
  sp = fmaf(x2, sp, -0.166666672f);
  float sn = fmaf(x * x2, sp, x);
  float cp = fmaf(x2, 2.48015873e-05f, -1.38888892e-03f);
  cp = fmaf(x2, cp, 4.16666679e-02f);
  cp = fmaf(x2, cp, -0.5f);
  float cs = fmaf(x2, cp, 1.0f);
  switch (q) {
    case 0:
      *s_out = sn;
      *c_out = cs;
      break;
    case 1:
      *s_out = cs;
      *c_out = -sn;
      break;
    case 2:
      *s_out = -sn;
      *c_out = -cs;
      break;
    default:
      *s_out = -cs;
      *c_out = sn;
      break;
  }
}

// Standard normal for element i of draw (seed, offset): Box-Muller on lanes (0,1) and (2,3).
SEQMIX_HD SEQMIX_FORCE_INLINE float normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
  U32x4 b = block_u32(seed, offset, i >> 2);
  int l = int(i & 3);
  uint32_t ua = (l < 2) ? b.x : b.z;
  uint32_t ub = (l < 2) ? b.y : b.w;
  float radius = sqrtf(-2.0f * det_log(u01_open0(ua)));
  float s, c;
  det_sincos_2pi(u01(ub), &s, &c);
  return radius * ((l & 1) ? s : c);
}

SEQMIX_HD SEQMIX_FORCE_INLINE float uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  return u01(lane(block_u32(seed, offset, i >> 2), int(i & 3)));
}

}  // namespace seqmix::rng
