// 16-bit float storage types (bf16, f16) usable on host and device with identical rounding:
// round-to-nearest-even on conversion from float, NaN stays NaN. Arithmetic is done in float.
// Safe to include from .cu files.
#pragma once
#include <cstdint>
#include <cstring>

#include "core/macros.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace seqmix {

SEQMIX_HD SEQMIX_FORCE_INLINE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

SEQMIX_HD SEQMIX_FORCE_INLINE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

struct alignas(2) bf16 {
  uint16_t bits;

  bf16() = default;
  SEQMIX_HD explicit bf16(float f) : bits(from_float(f)) {}
  SEQMIX_HD explicit operator float() const { return bits_float(uint32_t(bits) << 16); }
  SEQMIX_HD float to_float() const { return bits_float(uint32_t(bits) << 16); }

  SEQMIX_HD static uint16_t from_float(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    __nv_bfloat16 h = __float2bfloat16_rn(f);
    return *reinterpret_cast<uint16_t*>(&h);
#else
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
#endif
  }
  SEQMIX_HD static bf16 from_bits(uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }
};

struct alignas(2) f16 {
  uint16_t bits;

  f16() = default;
  SEQMIX_HD explicit f16(float f) : bits(from_float(f)) {}
  SEQMIX_HD explicit operator float() const { return to_float(); }

  SEQMIX_HD float to_float() const {
#if defined(__CUDA_ARCH__)
    return __half2float(*reinterpret_cast<const __half*>(&bits));
#else
    uint32_t sign = uint32_t(bits & 0x8000u) << 16;
    uint32_t exp = (bits >> 10) & 0x1fu;
    uint32_t man = bits & 0x3ffu;
    if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));  // inf / NaN
    if (exp == 0) {
      // zero or subnormal: man * 2^-24, exact in float
      float v = float(man) * 5.9604644775390625e-08f;
      return sign ? -v : v;
    }
    return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
#endif
  }

  SEQMIX_HD static uint16_t from_float(float f) {
#if defined(__CUDA_ARCH__)
    __half h = __float2half_rn(f);
    return *reinterpret_cast<uint16_t*>(&h);
#else
    uint32_t u = float_bits(f);
    uint16_t sign = uint16_t((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
    if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
    if (a < 0x38800000u) {
      // result is subnormal or zero: value * 2^24 rounded to nearest even integer
      if (a < 0x33000000u) return sign;  // < 2^-25: rounds to zero
      uint32_t e = a >> 23;              // biased float exponent, 102..112
      uint32_t m = (a & 0x7fffffu) | 0x800000u;
      uint32_t shift = 126u - e;  // m * 2^(e-150) * 2^24 = m >> (126 - e)
      uint32_t r = m >> shift;
      uint32_t rem = m & ((1u << shift) - 1u);
      uint32_t half = 1u << (shift - 1u);
      if (rem > half || (rem == half && (r & 1u))) ++r;
      return uint16_t(sign | r);
    }
    // normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return uint16_t(sign | (r >> 13));
#endif
  }
  SEQMIX_HD static f16 from_bits(uint16_t b) {
    f16 h;
    h.bits = b;
    return h;
  }
};

// Load any element type as the computation type and store back, with the rounding above.
template <typename T>
SEQMIX_HD SEQMIX_FORCE_INLINE float to_f32(T v) {
  return static_cast<float>(v);
}
template <>
SEQMIX_HD SEQMIX_FORCE_INLINE float to_f32<bf16>(bf16 v) {
  return v.to_float();
}
template <>
SEQMIX_HD SEQMIX_FORCE_INLINE float to_f32<f16>(f16 v) {
  return v.to_float();
}

// Computation type of an element type: double for double, float otherwise.
template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccType<T>::type;

template <typename T, typename A>
SEQMIX_HD SEQMIX_FORCE_INLINE T from_acc(A v) {
  return static_cast<T>(v);
}
template <>
SEQMIX_HD SEQMIX_FORCE_INLINE bf16 from_acc<bf16, float>(float v) {
  return bf16(v);
}
template <>
SEQMIX_HD SEQMIX_FORCE_INLINE f16 from_acc<f16, float>(float v) {
  return f16(v);
}
template <typename A, typename T>
SEQMIX_HD SEQMIX_FORCE_INLINE A to_acc(T v) {
  return static_cast<A>(v);
}
template <>
SEQMIX_HD SEQMIX_FORCE_INLINE float to_acc<float, bf16>(bf16 v) {
  return v.to_float();
}
template <>
SEQMIX_HD SEQMIX_FORCE_INLINE float to_acc<float, f16>(f16 v) {
  return v.to_float();
}

}  // namespace seqmix
