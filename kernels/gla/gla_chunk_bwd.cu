// CUDA chunked gated linear attention backward (bf16 in, fp32 accumulate, mma.sync m16n8k16).
// With b the chunk-local cumulative log-gate, B = b at the chunk's last step, S = state at the
// chunk start and dH = gradient of the state at the chunk end (reverse state kernel:
// dS_c = exp(B_c) ⊙ dS_{c+1} + scale Q̂_cᵀ dO_c, Q̂_t = q_t exp(b_t), started from dht):
//   dq_t = scale [exp(b_t) ⊙ (do_t Sᵀ) + Σ_{s≤t} (do_t·v_s) k_s ⊙ exp(b_t - b_s)]
//   dk_s = scale Σ_{t≥s} (do_t·v_s) q_t ⊙ exp(b_t - b_s) + exp(B - b_s) ⊙ (v_s dHᵀ)
//   dv_s = scale Σ_{t≥s} (q_t·(k_s ⊙ exp(b_t - b_s))) do_t + (k_s ⊙ exp(B - b_s)) dH
//   dg_u = ∂L/∂g_u = Σ_v (S_u - k_u v_uᵀ) ⊙ dS_u, evaluated per chunk without crossing chunks:
//   dg_u = exp(B) Σ_v S ⊙ dH + Σ_{t≥u} (q_t ⊙ dq_t - k_t ⊙ dk_t^intra) + Σ_{s<u} k_s ⊙ dk_s^inter
//   (summed over K for HeadScalar), where the diagonal (s = t) terms, which cancel exactly, are
//   left out of both dq and dk^intra here and added to dq, dk in fp32 afterwards. Only in-chunk
//   (<= 64 step) cancellation remains, never a sequence-long one. The per-chunk sums run in a
//   separate small kernel (per-key-dim gates) or at the end of the dq/dk/dv block (scalar gates),
//   with no floating-point atomics anywhere (bitwise deterministic).
// Kernels: the states kernels of gla_chunk_fwd.cu (forward recompute of S, reverse for dH),
// dqkv for scalar gates (one block of 4 warps per chunk and head, the whole V in shared memory,
// warp w owns rows [16w, 16w + 16)), dqkv_kv for per-key-dim gates (8 warps: rows and key / value
// halves), dg for per-key-dim gates (cumulative sums per chunk).
// Per-key-dim gates use the same in-sub-chunk reference point as the forward (see there).
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "kernels/common/launch.cuh"
#include "kernels/gla/gla_common.cuh"

namespace seqmix {
namespace gla_chunk {
namespace {

// Per-key-dim gates: the in-chunk products that feed dg (dA k̃ for dq, dAᵀ q̃ for dk) are taken in
// split bf16 (hi·hi + lo·hi + hi·lo, three mma, ~16 mantissa bits) because dg sums them with
// opposite signs: q dq - k dk cancels pair by pair inside the chunk, and plain bf16 products
// leave ~0.5-1% relative error in dg (measured on an H100 with plain bf16 products; o, ht, dq, dk,
// dv, dh0 were within 5e-3 either way). Scalar gates sum dg over K and pass without it.

// acc[16 x 8 NB] += (the 16x16 score block sj, its columns = chunk rows k0..k0+15) · B,
// B[k = chunk row][n = key dim c0 + n] = f(k, c0 + n), in split bf16.
template <int NB, class F>
__device__ __forceinline__ void split_product(float (&acc)[NB][4], const float (&sj)[2][4], int k0,
                                              const F& f, int c0, int gq, int tq) {
  uint32_t ahi[4], alo[4];
  c_to_a_split(ahi, alo, sj, 0);
#pragma unroll
  for (int n = 0; n < NB; ++n) {
    uint32_t bh0, bh1, bl0, bl1;
    frag_b_split(bh0, bh1, bl0, bl1, f, k0, c0 + 8 * n, gq, tq);
    mma_16816(acc[n], ahi, bh0, bh1);
    mma_16816(acc[n], alo, bh0, bh1);
    mma_16816(acc[n], ahi, bl0, bl1);
  }
}

// split_product that also returns the transposes of the high B fragments: tr[n][0] / tr[n][1] hold
// f(k0 + 0..7 / 8..15, c0 + 8 n + ..) with k = the key dim and n = the row (what a product over
// the key dims needs), so the rounded gated operands are formed once for two products.
template <int NB, class F>
__device__ __forceinline__ void split_product_tr(float (&acc)[NB][4], const float (&sj)[2][4],
                                                 int k0, const F& f, int c0, int gq, int tq,
                                                 uint32_t (&tr)[NB][2]) {
  uint32_t ahi[4], alo[4];
  c_to_a_split(ahi, alo, sj, 0);
#pragma unroll
  for (int n = 0; n < NB; ++n) {
    uint32_t bh0, bh1, bl0, bl1;
    frag_b_split(bh0, bh1, bl0, bl1, f, k0, c0 + 8 * n, gq, tq);
    mma_16816(acc[n], ahi, bh0, bh1);
    mma_16816(acc[n], alo, bh0, bh1);
    mma_16816(acc[n], ahi, bl0, bl1);
    tr[n][0] = trans8x8(bh0);
    tr[n][1] = trans8x8(bh1);
  }
}

// Scalar gates (None, HeadConst, HeadScalar): decays multiply the scores after the products.
template <int K, int V>
__global__ void __launch_bounds__(kThreads) gla_chunk_bwd_kernel_dqkv(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sq = reinterpret_cast<bf16*>(sb + kBT);
  bf16* sk = sq + kBT * kLdK;
  bf16* sv = sk + kBT * kLdK;
  bf16* sdo = sv + kBT * kLdV;
  bf16* ss = sdo + kBT * kLdV;

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  load_gate<K, false, true>(sb, p, h, r0, r1, 0, head_const_gate(p, h));
  load_tile<K, true>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V, true>(sv, p.v + h * V, r0, r1, p.h * V);
  load_tile<V, true>(sdo, p.dout + h * V, r0, r1, p.h * V);
  cp_async_commit();
  load_state<K, V>(ss, p.hs + (x * p.h + h) * K * V, V);
  cp_async_wait<0>();
  __syncthreads();  // (HeadScalar: sb holds the cumulative gates p.gc of the state pass)

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp;
  auto sdecay = [&](int t, int s) { return __expf(sb[t] - sb[s]); };

  float sc[8][4];
  float acc[K / 8][4];
  // exp(b_t) and exp(B - b_t) of this thread's rows t0 + gq (+8).
  float erow[2], erow_b[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = t0 + gq + 8 * r;
    erow[r] = __expf(sb[t]);
    erow_b[r] = __expf(sb[kBT - 1] - sb[t]);
  }
  // The per-row sums of q dq' (dq phase), k dk'_intra and k dk_inter (dk phase) and
  // the state term per key dim are all dg needs; they stay in shared memory and the block writes
  // dg itself (no scratch, no separate kernel).
  float row_qdq[2] = {0.f, 0.f}, row_kin[2] = {0.f, 0.f}, row_kex[2] = {0.f, 0.f};
  const bool want_dg = p.dg != nullptr;
  __shared__ float srow[2 * kBT], sdgs[K];
  // The A fragments of dO (dq) and v (dk) rows t0.. stay in registers up to V = 128; wider V
  // reloads them from shared memory per use (register pressure).
  constexpr bool kKeep = V <= 128;
  uint32_t fr[kKeep ? V / 16 : 1][4] = {};
  auto get_a = [&](uint32_t(&a)[4], const bf16* tile, int kk) {
    if constexpr (kKeep) {
      a[0] = fr[kk][0];
      a[1] = fr[kk][1];
      a[2] = fr[kk][2];
      a[3] = fr[kk][3];
    } else {
      load_a(a, tile, kLdV, t0, 16 * kk, gq, tq);
    }
  };

  // ---- dq (rows t = t0..) ----
  {
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
    if constexpr (kKeep) {
#pragma unroll
      for (int kk = 0; kk < V / 16; ++kk) load_a(fr[kk], sdo, kLdV, t0, 16 * kk, gq, tq);
    }
#pragma unroll
    for (int kk = 0; kk < V / 16; ++kk) {
      uint32_t a[4];
      get_a(a, sdo, kk);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j < 2 * warp + 2) {
          uint32_t b0, b1;
          load_bt(b0, b1, sv, kLdV, 8 * j, 16 * kk, gq, tq);
          mma_16816(sc[j], a, b0, b1);
        }
    }
    float diag[2] = {0.f, 0.f};  // do_t·v_t of rows t0 + gq (+8), kept out of the products
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
        if (s == t) diag[e >> 1] = sc[j][e];
        sc[j][e] = s < t ? sc[j][e] * sdecay(t, s) : 0.f;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) diag[r] = __shfl_sync(0xffffffffu, diag[r], 4 * gq + (gq >> 1));
#pragma unroll
    for (int j = 0; j < K / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    mma_scores_tile<K / 8>(acc, sc, sk, kLdK, 0, 0, warp + 1, lane);
#pragma unroll
    for (int j = 0; j < K / 8; ++j) {
      float tmp[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int kk = 0; kk < V / 16; ++kk) {
        uint32_t a[4], b0, b1;
        get_a(a, sdo, kk);
        load_bt(b0, b1, ss, kLdV, 8 * j, 16 * kk, gq, tq);
        mma_16816(tmp, a, b0, b1);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = p.scale * (acc[j][e] + tmp[e] * erow[e >> 1]);
    }
    if (want_dg) {  // Σ_d q dq' per row (zero-filled rows give 0); two partial sums per row
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int t = t0 + gq + 8 * r;
        float sx = 0.f, sy = 0.f;
#pragma unroll
        for (int j = 0; j < K / 8; ++j) {
          const float2 qv = __bfloat1622float2(
              *reinterpret_cast<const __nv_bfloat162*>(sq + t * kLdK + 8 * j + 2 * tq));
          sx = fmaf(qv.x, acc[j][2 * r], sx);
          sy = fmaf(qv.y, acc[j][2 * r + 1], sy);
        }
        float sum = sx + sy;
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        row_qdq[r] = sum;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int t = t0 + gq + 8 * r;
      const int64_t row = r0 + t;
      if (row >= r1) continue;
      if (p.dq) {
        bf16* dst = p.dq + (row * p.h + h) * K;
        const float dd = p.scale * diag[r];
#pragma unroll
        for (int j = 0; j < K / 8; ++j) {
          const int d = 8 * j + 2 * tq;
          *reinterpret_cast<uint32_t*>(dst + d) =
              pack_bf16(acc[j][2 * r] + dd * ld_bf16(sk + t * kLdK + d),
                        acc[j][2 * r + 1] + dd * ld_bf16(sk + t * kLdK + d + 1));
        }
      }
    }
  }

  // dH replaces S in shared memory; on the way, Σ S ⊙ dH (the state term of dg: one value per
  // chunk and head for scalar gates, times exp(B)) from the two bf16 copies, this thread's part.
  // A sequence's first chunk takes S from h0 and its last chunk dH from dht, both fp32 (below):
  // where one chunk is the whole sequence (T <= 64) this term is most of dg, and the bf16-stored
  // copies alone cost ~2^-9 relative error there.
  const bool first_chunk = x == seq_chunk(p, n), last_chunk = r0 + kBT >= r1;
  const float* s32 = first_chunk && p.h0 ? p.h0 + (n * p.h + h) * K * V : nullptr;
  const float* dh32 = last_chunk && p.dht ? p.dht + (n * p.h + h) * K * V : nullptr;
  const bool dgs16 = want_dg && !s32 && !dh32;
  float sdh = 0.f;
  __syncthreads();  // every warp is done with S
  {
    const bf16* src = p.dhs + (x * p.h + h) * K * V;
    constexpr int kC = V / 8;
    if (dgs16) {
      // Σ S ⊙ dH on the tensor cores: the sum over v of a row pair is the diagonal of S dHᵀ, and
      // the dot is unchanged by any permutation of v applied to both. Warp w takes row blocks
      // w, w + 4, ... of 16 key rows; per 32 value columns, thread (gq, tq) loads the 8 columns
      // [8 tq, 8 tq + 8) of dH (global) and of S (shared) for rows r and r + 8 of the block, whose
      // words are directly the A (S) and B (dH) fragments of two m16n8k16 products per n-half
      // (k = the 16 columns {8 tq + e, 8 tq + 2 + e} and {8 tq + 4 + e, 8 tq + 6 + e}), and then
      // stores its dH pieces where it read S (only this thread touches them). r = π(gq) =
      // gq / 2 + 4 (gq % 2) puts the two rows of a quarter-warp on disjoint banks. D = S dHᵀ
      // holds row r's dot at (gq, gq) of n-half 0 and row r + 8's at (gq + 8, gq) of n-half 1:
      // thread tq = gq / 2, elements gq % 2 and 2 + gq % 2. Fixed order: deterministic.
      constexpr int kVC = V / 32, kB = kVC % 4 == 0 ? 4 : 2;  // kVC in {2, 4, 6, 8}
      const int rr = (gq >> 1) + 4 * (gq & 1);
      float dsum = 0.f;
#pragma unroll 1
      for (int d0 = 16 * warp; d0 < K; d0 += 64) {
        float c0[4] = {0.f, 0.f, 0.f, 0.f}, c1[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int cb = 0; cb < kVC; cb += kB) {
          uint4 dh[kB][2];
#pragma unroll
          for (int i = 0; i < kB; ++i)
#pragma unroll
            for (int r = 0; r < 2; ++r)
              dh[i][r] = *reinterpret_cast<const uint4*>(src + int64_t(d0 + rr + 8 * r) * V +
                                                         32 * (cb + i) + 8 * tq);
#pragma unroll
          for (int i = 0; i < kB; ++i) {
            uint4 s16[2];
#pragma unroll
            for (int r = 0; r < 2; ++r)
              s16[r] = *reinterpret_cast<const uint4*>(ss + (d0 + rr + 8 * r) * kLdV +
                                                       32 * (cb + i) + 8 * tq);
            const uint32_t a0[4] = {s16[0].x, s16[1].x, s16[0].y, s16[1].y};
            const uint32_t a1[4] = {s16[0].z, s16[1].z, s16[0].w, s16[1].w};
            mma_16816(c0, a0, dh[i][0].x, dh[i][0].y);
            mma_16816(c1, a0, dh[i][1].x, dh[i][1].y);
            mma_16816(c0, a1, dh[i][0].z, dh[i][0].w);
            mma_16816(c1, a1, dh[i][1].z, dh[i][1].w);
#pragma unroll
            for (int r = 0; r < 2; ++r)
              *reinterpret_cast<uint4*>(ss + (d0 + rr + 8 * r) * kLdV + 32 * (cb + i) + 8 * tq) =
                  dh[i][r];
          }
        }
        if (tq == (gq >> 1)) dsum += (gq & 1 ? c0[1] : c0[0]) + (gq & 1 ? c1[3] : c1[2]);
      }
      sdh = dsum;
    } else {
      // Plain copy, kB 16-byte pieces in flight per thread (1-2 round trips to memory up to
      // V = 128 instead of one per two pieces; kB = 4 for wider V against spills).
      constexpr int kIt = K * kC / kThreads, kB0 = V <= 128 ? 8 : 4, kB = kIt < kB0 ? kIt : kB0;
      static_assert(K * kC % kThreads == 0, "whole 16-byte pieces per thread");
#pragma unroll
      for (int i0 = 0; i0 < kIt; i0 += kB) {
        uint4 dh[kB];
#pragma unroll
        for (int i = 0; i < kB; ++i)
          if (i0 + i < kIt) {
            const int idx = int(threadIdx.x) + (i0 + i) * kThreads, r = idx / kC, c = idx % kC;
            dh[i] = *reinterpret_cast<const uint4*>(src + int64_t(r) * V + c * 8);
          }
#pragma unroll
        for (int i = 0; i < kB; ++i)
          if (i0 + i < kIt) {
            const int idx = int(threadIdx.x) + (i0 + i) * kThreads, r = idx / kC, c = idx % kC;
            *reinterpret_cast<uint4*>(ss + r * kLdV + c * 8) = dh[i];
          }
      }
    }
  }
  if (dgs16) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sdh += __shfl_xor_sync(0xffffffffu, sdh, o);
    if (lane == 0) sdgs[warp] = sdh;  // warp partials, summed in warp order at the end
  }
  __syncthreads();
  if (want_dg && !dgs16) {  // per key dim: warp w takes rows w, w + 4, ..., lanes split V
    const bf16* src = p.hs + (x * p.h + h) * K * V;
    constexpr int kPer = V / 64;
#pragma unroll 1
    for (int d = warp; d < K; d += 4) {
      float sum = 0.f;
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        const int col = 2 * lane + 64 * c;
        const float2 a =
            s32 ? *reinterpret_cast<const float2*>(s32 + d * V + col)
                : __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + d * V + col));
        const float2 b =
            dh32
                ? *reinterpret_cast<const float2*>(dh32 + d * V + col)
                : __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(ss + d * kLdV + col));
        sum += a.x * b.x + a.y * b.y;
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      if (lane == 0) sdgs[d] = sum;
    }
  }

  // ---- dk (rows s = t0..) ----
  {
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
    if constexpr (kKeep) {
#pragma unroll
      for (int kk = 0; kk < V / 16; ++kk) load_a(fr[kk], sv, kLdV, t0, 16 * kk, gq, tq);
    }
#pragma unroll
    for (int kk = 0; kk < V / 16; ++kk) {
      uint32_t a[4];
      get_a(a, sv, kk);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * warp) {
          uint32_t b0, b1;
          load_bt(b0, b1, sdo, kLdV, 8 * j, 16 * kk, gq, tq);
          mma_16816(sc[j], a, b0, b1);
        }
    }
    float diag[2] = {0.f, 0.f};  // v_s·do_s of rows t0 + gq (+8)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int s = t0 + gq + (e >> 1) * 8, t = 8 * j + 2 * tq + (e & 1);
        if (s == t) diag[e >> 1] = sc[j][e];
        sc[j][e] = t > s ? sc[j][e] * sdecay(t, s) : 0.f;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) diag[r] = __shfl_sync(0xffffffffu, diag[r], 4 * gq + (gq >> 1));
#pragma unroll
    for (int j = 0; j < K / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    mma_scores_tile<K / 8>(acc, sc, sq, kLdK, 0, warp, 4, lane);
#pragma unroll
    for (int j = 0; j < K / 8; ++j) {
      float tmp[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int kk = 0; kk < V / 16; ++kk) {
        uint32_t a[4], b0, b1;
        get_a(a, sv, kk);
        load_bt(b0, b1, ss, kLdV, 8 * j, 16 * kk, gq, tq);
        mma_16816(tmp, a, b0, b1);
      }
      // Stored per 8 key dims: dk = intra + inter + diagonal; the row sums k intra, k inter.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int s = t0 + gq + 8 * r;
        const int64_t row = r0 + s;
        if (row >= r1) continue;
        const int d = 8 * j + 2 * tq;
        float intra[2], inter[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          intra[c] = p.scale * acc[j][2 * r + c];
          inter[c] = tmp[2 * r + c] * erow_b[r];
        }
        if (p.dk) {
          const float dd = p.scale * diag[r];
          *reinterpret_cast<uint32_t*>(p.dk + (row * p.h + h) * K + d) =
              pack_bf16(intra[0] + inter[0] + dd * ld_bf16(sq + s * kLdK + d),
                        intra[1] + inter[1] + dd * ld_bf16(sq + s * kLdK + d + 1));
        }
        if (want_dg) {
          const float2 kv =
              __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sk + s * kLdK + d));
          row_kin[r] += kv.x * intra[0] + kv.y * intra[1];
          row_kex[r] += kv.x * inter[0] + kv.y * inter[1];
        }
      }
    }
    if (want_dg) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float a = row_kin[r], b = row_kex[r];
        a += __shfl_xor_sync(0xffffffffu, a, 1);
        a += __shfl_xor_sync(0xffffffffu, a, 2);
        b += __shfl_xor_sync(0xffffffffu, b, 1);
        b += __shfl_xor_sync(0xffffffffu, b, 2);
        if (tq == 0) {  // rows past the sequence hold 0 (zero-filled tiles)
          srow[t0 + gq + 8 * r] = row_qdq[r] - a;
          srow[kBT + t0 + gq + 8 * r] = b;
        }
      }
    }
  }
  // dg is finished by the last warp (the least dv work: 1 of the 4 score blocks), which needs
  // every warp's row sums: the others signal at named barrier 1 and go on with dv, the last warp
  // waits there after its own dv, so the dg sums overlap the other warps' dv.
  constexpr int kDgWarp = kThreads / 32 - 1;
  if (want_dg && warp != kDgWarp) {  // (bar.arrive orders the srow / sdgs writes before it)
    asm volatile("bar.arrive 1, %0;\n" ::"n"(kThreads) : "memory");
  }

  // ---- dv (rows s = t0..) ----
  if (p.dv) {
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t a[4];
      load_a(a, sk, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * warp) {
          uint32_t b0, b1;
          load_bt(b0, b1, sq, kLdK, 8 * j, 16 * kk, gq, tq);
          mma_16816(sc[j], a, b0, b1);
        }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int s = t0 + gq + (e >> 1) * 8, t = 8 * j + 2 * tq + (e & 1);
        sc[j][e] = t >= s ? p.scale * sc[j][e] * sdecay(t, s) : 0.f;
      }
    // V in parts of at most 128 columns (the scores are shared by the parts).
    constexpr int kVP = V <= 128 ? V : V / 2;
#pragma unroll 1
    for (int vp = 0; vp < V; vp += kVP) {
      float dv[kVP / 8][4];
#pragma unroll
      for (int j = 0; j < kVP / 8; ++j) dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.f;
        // Inter-chunk part (k_s exp(B - b_s)) dH first: k_s dH, then the rows times exp(B - b_s).
#pragma unroll
      for (int kk = 0; kk < K / 16; ++kk) {
        uint32_t a[4];
        load_a(a, sk, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
        for (int jj = 0; jj < kVP / 16; ++jj) {
          uint32_t bfr[4];
          load_b(bfr, ss, kLdV, 16 * kk, vp + 16 * jj, lane);
          mma_16816(dv[2 * jj], a, bfr[0], bfr[1]);
          mma_16816(dv[2 * jj + 1], a, bfr[2], bfr[3]);
        }
      }
#pragma unroll
      for (int j = 0; j < kVP / 8; ++j) {
        dv[j][0] *= erow_b[0];
        dv[j][1] *= erow_b[0];
        dv[j][2] *= erow_b[1];
        dv[j][3] *= erow_b[1];
      }
      mma_scores_tile<kVP / 8>(dv, sc, sdo, kLdV, vp, warp, 4, lane);
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t row = r0 + t0 + gq + 8 * r;
        if (row >= r1) continue;
        bf16* dst = p.dv + (row * p.h + h) * V + vp;
#pragma unroll
        for (int j = 0; j < kVP / 8; ++j)
          *reinterpret_cast<uint32_t*>(dst + 8 * j + 2 * tq) =
              pack_bf16(dv[j][2 * r], dv[j][2 * r + 1]);
      }
    }
  }

  // ---- dg (scalar gates), finished here: dg_u = Σ_d dgs_d + Σ_{t>=u} srow_t + Σ_{s<u} srow2_s.
  // Warp kDgWarp, fixed-order sums and shuffle scans (deterministic); lane l owns rows 2l, 2l + 1.
  if (want_dg && warp == kDgWarp) {
    asm volatile("bar.sync 1, %0;\n" ::"n"(kThreads) : "memory");
    {
      // exp(B) Σ S ⊙ dH: the 4 warp partials (bf16 copies) or the K row sums (fp32 h0 / dht).
      float s0 = 0.f;
      if (dgs16) {
        s0 = lane == 0 ? ((sdgs[0] + sdgs[1]) + sdgs[2]) + sdgs[3] : 0.f;
      } else {
        for (int d = lane; d < K; d += 32) s0 += sdgs[d];
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s0 += __shfl_xor_sync(0xffffffffu, s0, o);
      s0 *= __expf(sb[kBT - 1]);
      const float a1 = srow[2 * lane + 1], a0 = srow[2 * lane] + a1;  // suffix within the lane
      const float c0 = srow[kBT + 2 * lane], c1 = c0 + srow[kBT + 2 * lane + 1];  // prefix
      float suf = a0, pre = c1;  // inclusive scans of the lane totals over lanes
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const float ys = __shfl_down_sync(0xffffffffu, suf, o);
        const float yp = __shfl_up_sync(0xffffffffu, pre, o);
        if (lane + o < 32) suf += ys;
        if (lane >= o) pre += yp;
      }
      const float suf_after = suf - a0, pre_before = pre - c1;  // lanes > l, lanes < l
      const float dg0 = s0 + (a0 + suf_after) + pre_before;
      const float dg1 = s0 + (a1 + suf_after) + (pre_before + c0);
      const int64_t row = r0 + 2 * lane;
      if (row < r1) p.dg[row * p.h + h] = dg0;
      if (row + 1 < r1) p.dg[(row + 1) * p.h + h] = dg1;
    }
  }
}

// Per-key-dim gates (KeyVector): reference points b at row 16 (w % 4) + 7 for the gated intra-chunk
// operands (as the forward), split-bf16 intra products for dq and dk (see above), 8 warps per
// (chunk, head): warp w owns rows t0 = 16 (w % 4).. and, for dq and dk, the key dims of
// half w / 4 (every per-element exp of the gated operands and epilogues is done once, by one of
// the two warps), for dv the value dims of half w / 4. The dA scores (no gates) are computed by
// both warps of a row block; the gated dv scores are split over the key halves and summed through
// shared memory (half 0 + half 1, a fixed order: deterministic). The order of the phases keeps
// the warps' loads balanced between barriers: dq's inter-chunk product (S) first, then, while dH
// replaces S in shared memory, the intra-chunk products of dq (rows t: i + 1 blocks) and dk (rows
// s: 4 - i blocks); then dk's inter-chunk part, the state term of dg and dv.
template <int K, int V>
__global__ void __launch_bounds__(kThreadsKV) gla_chunk_bwd_kernel_dqkv_kv(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8, kLdB = K + 4, KH = K / 2, VH = V / 2;
  constexpr int NT = kThreadsKV;
  static_assert(KH % 16 == 0 && VH % 16 == 0, "key / value halves in 16-wide blocks");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sq = reinterpret_cast<bf16*>(sb + kBT * kLdB);
  bf16* sk = sq + kBT * kLdK;
  bf16* sv = sk + kBT * kLdK;
  bf16* sdo = sv + kBT * kLdV;
  bf16* ss = sdo + kBT * kLdV;                          // S, then dH
  float* sx = reinterpret_cast<float*>(ss + K * kLdV);  // dv score exchange [64][kLdX]

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  load_gate<K, true, true, NT>(sb, p, h, r0, r1, 0, 0.f);
  load_tile<K, true, NT>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true, NT>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V, true, NT>(sv, p.v + h * V, r0, r1, p.h * V);
  load_tile<V, true, NT>(sdo, p.dout + h * V, r0, r1, p.h * V);
  load_state<K, V, true, NT>(ss, p.hs + (x * p.h + h) * K * V, V);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int blk = warp & 3, half = warp >> 2;
  const int t0 = 16 * blk, ref = t0 + 7, d0 = half * KH, v0 = half * VH;
  auto gb = [&](int t, int d) { return sb[t * kLdB + d]; };
  // k_s exp(r - b_s) and q_t exp(b_t - r) with r = b at row `ref`.
  auto fk = [&](int s, int d) {
    return ld_bf16(sk + s * kLdK + d) * __expf(gb(ref, d) - gb(s, d));
  };
  auto fq = [&](int t, int d) {
    return ld_bf16(sq + t * kLdK + d) * __expf(gb(t, d) - gb(ref, d));
  };
  float sc[8][4];
  // dv scores k̃_s·q̃_t over this warp's key half (rows s = t0.., cols t) and their A fragments
  // (k̃ of rows t0.., key dims d0..), both taken from the rounded operands of the dq / dk products.
  float scv[8][4];
  uint32_t ak[KH / 16][4];

  // ---- dq, inter-chunk product (raw): dO_t Sᵀ for rows t0.., key dims d0.. ----
  float dqx[KH / 8][4];
  mma_rows_bt<KH / 8, V>(dqx, sdo, kLdV, t0, ss, kLdV, d0, gq, tq);
  __syncthreads();  // every warp is done with S: dH replaces it while the intra products run
  load_state<K, V, true, NT>(ss, p.dhs + (x * p.h + h) * K * V, V);
  cp_async_commit();

  // ---- dq (rows t = t0.., key dims d0..) ----
  {
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll 1
    for (int kk = 0; kk < V / 16; ++kk) {
      uint32_t a[4];
      load_a(a, sdo, kLdV, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j < 2 * blk + 2) {
          uint32_t b0, b1;
          load_bt(b0, b1, sv, kLdV, 8 * j, 16 * kk, gq, tq);
          mma_16816(sc[j], a, b0, b1);
        }
    }
    float diag[2] = {0.f, 0.f};  // do_t·v_t of rows t0 + gq (+8), kept out of the products
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
        if (s == t) diag[e >> 1] = sc[j][e];
        sc[j][e] = s < t ? sc[j][e] : 0.f;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) diag[r] = __shfl_sync(0xffffffffu, diag[r], 4 * gq + (gq >> 1));
    float acc[KH / 8][4];
#pragma unroll
    for (int j = 0; j < KH / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
      // The 16-row key blocks j < blk (loops over j are not unrolled: code size), then the own
      // rows, whose transposed k̃ fragments are the A fragments of the dv scores.
#pragma unroll 1
    for (int j = 0; j < blk; ++j) {
      float sj[2][4];
      pick_block(sj, sc, j);
      split_product<KH / 8>(acc, sj, 16 * j, fk, d0, gq, tq);
    }
    {
      float sj[2][4];
      pick_block(sj, sc, blk);
      uint32_t tr[KH / 8][2];
      split_product_tr<KH / 8>(acc, sj, t0, fk, d0, gq, tq, tr);
#pragma unroll
      for (int kk = 0; kk < KH / 16; ++kk) {
        ak[kk][0] = tr[2 * kk][0];
        ak[kk][1] = tr[2 * kk][1];
        ak[kk][2] = tr[2 * kk + 1][0];
        ak[kk][3] = tr[2 * kk + 1][1];
      }
    }
#pragma unroll
    for (int j = 0; j < KH / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = t0 + gq + (e >> 1) * 8, d = d0 + 8 * j + 2 * tq + (e & 1);
        const float bt = gb(t, d);
        acc[j][e] = p.scale * (acc[j][e] * __expf(bt - gb(ref, d)) + dqx[j][e] * __expf(bt));
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int t = t0 + gq + 8 * r;
      const int64_t row = r0 + t;
      if (row >= r1) continue;
      if (p.dgk) {
        float* dst = p.dgk + (row * p.h + h) * K;
#pragma unroll
        for (int j = 0; j < KH / 8; ++j) {
          const int d = d0 + 8 * j + 2 * tq;
          const float2 qv =
              __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sq + t * kLdK + d));
          *reinterpret_cast<float2*>(dst + d) =
              make_float2(qv.x * acc[j][2 * r], qv.y * acc[j][2 * r + 1]);
        }
      }
      if (p.dq) {
        bf16* dst = p.dq + (row * p.h + h) * K;
        const float dd = p.scale * diag[r];
#pragma unroll
        for (int j = 0; j < KH / 8; ++j) {
          const int d = d0 + 8 * j + 2 * tq;
          const float2 kv =
              __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sk + t * kLdK + d));
          *reinterpret_cast<uint32_t*>(dst + d) =
              pack_bf16(acc[j][2 * r] + dd * kv.x, acc[j][2 * r + 1] + dd * kv.y);
        }
      }
    }
  }

  // ---- dk, intra-chunk product (rows s = t0.., key dims d0..), kept until dH has landed ----
  float dki[KH / 8][4];
  float diagk[2] = {0.f, 0.f};  // v_s·do_s of rows t0 + gq (+8)
  {
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll 1
    for (int kk = 0; kk < V / 16; ++kk) {
      uint32_t a[4];
      load_a(a, sv, kLdV, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * blk) {
          uint32_t b0, b1;
          load_bt(b0, b1, sdo, kLdV, 8 * j, 16 * kk, gq, tq);
          mma_16816(sc[j], a, b0, b1);
        }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int s = t0 + gq + (e >> 1) * 8, t = 8 * j + 2 * tq + (e & 1);
        if (s == t) diagk[e >> 1] = sc[j][e];
        sc[j][e] = t > s ? sc[j][e] : 0.f;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) diagk[r] = __shfl_sync(0xffffffffu, diagk[r], 4 * gq + (gq >> 1));
#pragma unroll
    for (int j = 0; j < KH / 8; ++j) dki[j][0] = dki[j][1] = dki[j][2] = dki[j][3] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) scv[j][0] = scv[j][1] = scv[j][2] = scv[j][3] = 0.f;
#pragma unroll 1
    for (int j = blk; j < 4; ++j) {
      float sj[2][4], sv2[2][4];
      pick_block(sj, sc, j);
      uint32_t tr[KH / 8][2];
      split_product_tr<KH / 8>(dki, sj, 16 * j, fq, d0, gq, tq, tr);
#pragma unroll
      for (int e = 0; e < 4; ++e) sv2[0][e] = sv2[1][e] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KH / 16; ++kk) {
        mma_16816(sv2[0], ak[kk], tr[2 * kk][0], tr[2 * kk + 1][0]);
        mma_16816(sv2[1], ak[kk], tr[2 * kk][1], tr[2 * kk + 1][1]);
      }
      put_block(scv, sv2, j);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // dH in ss

  // exp(B) Σ_v S ⊙ dH per key dim: warp w takes rows w, w + 8, ..., lanes split V (as in
  // gla_chunk_bwd_kernel_dqkv: fp32 h0 / dht in a sequence's first / last chunk).
  const bool first_chunk = x == seq_chunk(p, n), last_chunk = r0 + kBT >= r1;
  const float* s32 = first_chunk && p.h0 ? p.h0 + (n * p.h + h) * K * V : nullptr;
  const float* dh32 = last_chunk && p.dht ? p.dht + (n * p.h + h) * K * V : nullptr;
  constexpr int kW = NT / 32;
  if (p.dgs && (s32 || dh32)) {
    const bf16* src = p.hs + (x * p.h + h) * K * V;
    constexpr int kPer = V / 64;
#pragma unroll 1
    for (int d = warp; d < K; d += kW) {
      float sum = 0.f;
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        const int col = 2 * lane + 64 * c;
        const float2 a =
            s32 ? *reinterpret_cast<const float2*>(s32 + d * V + col)
                : __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + d * V + col));
        const float2 b =
            dh32
                ? *reinterpret_cast<const float2*>(dh32 + d * V + col)
                : __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(ss + d * kLdV + col));
        sum += a.x * b.x + a.y * b.y;
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      if (lane == 0) p.dgs[(x * p.h + h) * K + d] = __expf(gb(kBT - 1, d)) * sum;
    }
  } else if (p.dgs) {
    // S comes from global memory (L2): the loads of kB rows are issued before they are used.
    const bf16* src = p.hs + (x * p.h + h) * K * V;
    constexpr int kRows = K / kW, kPer = V / 64, kB = 4;
    static_assert(kRows % kB == 0, "rows per warp in batches of kB");
#pragma unroll 1
    for (int i0 = 0; i0 < kRows; i0 += kB) {
      __nv_bfloat162 hv[kB][kPer];
#pragma unroll
      for (int i = 0; i < kB; ++i)
#pragma unroll
        for (int c = 0; c < kPer; ++c)
          hv[i][c] = *reinterpret_cast<const __nv_bfloat162*>(src + (warp + kW * (i0 + i)) * V +
                                                              2 * lane + 64 * c);
#pragma unroll
      for (int i = 0; i < kB; ++i) {
        const int d = warp + kW * (i0 + i);
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < kPer; ++c) {
          const float2 a = __bfloat1622float2(hv[i][c]);
          const float2 b = __bfloat1622float2(
              *reinterpret_cast<const __nv_bfloat162*>(ss + d * kLdV + 2 * lane + 64 * c));
          sum += a.x * b.x + a.y * b.y;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) p.dgs[(x * p.h + h) * K + d] = __expf(gb(kBT - 1, d)) * sum;
      }
    }
  }

  // ---- dk: inter-chunk product v_s dHᵀ, then dk = intra + inter + diagonal ----
  {
    // q dq' of these rows and key dims (written by this thread in the dq phase; read back early,
    // so the loads overlap the product): dgk becomes q dq' - k dk_intra, one buffer less.
    float2 qdq[KH / 8][2];
#pragma unroll
    for (int j = 0; j < KH / 8; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int64_t row = r0 + t0 + gq + 8 * r;
        qdq[j][r] = p.dgk && row < r1 ? *reinterpret_cast<const float2*>(
                                            p.dgk + (row * p.h + h) * K + d0 + 8 * j + 2 * tq)
                                      : make_float2(0.f, 0.f);
      }
    float dkx[KH / 8][4];
#pragma unroll
    for (int j = 0; j < KH / 8; ++j) dkx[j][0] = dkx[j][1] = dkx[j][2] = dkx[j][3] = 0.f;
#pragma unroll 1
    for (int kk = 0; kk < V / 16; ++kk) {
      uint32_t a[4];
      load_a(a, sv, kLdV, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int j = 0; j < KH / 8; ++j) {
        uint32_t b0, b1;
        load_bt(b0, b1, ss, kLdV, d0 + 8 * j, 16 * kk, gq, tq);
        mma_16816(dkx[j], a, b0, b1);
      }
    }
#pragma unroll
    for (int j = 0; j < KH / 8; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int s = t0 + gq + 8 * r;
        const int64_t row = r0 + s;
        if (row >= r1) continue;
        const int d = d0 + 8 * j + 2 * tq;
        float intra[2], inter[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float bs = gb(s, d + c);
          intra[c] = p.scale * dki[j][2 * r + c] * __expf(gb(ref, d + c) - bs);
          inter[c] = dkx[j][2 * r + c] * __expf(gb(kBT - 1, d + c) - bs);
        }
        const float2 kv =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sk + s * kLdK + d));
        if (p.dk) {
          const float dd = p.scale * diagk[r];
          const float2 qv =
              __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(sq + s * kLdK + d));
          *reinterpret_cast<uint32_t*>(p.dk + (row * p.h + h) * K + d) =
              pack_bf16(intra[0] + inter[0] + dd * qv.x, intra[1] + inter[1] + dd * qv.y);
        }
        if (p.dgk) {
          *reinterpret_cast<float2*>(p.dgk + (row * p.h + h) * K + d) =
              make_float2(qdq[j][r].x - kv.x * intra[0], qdq[j][r].y - kv.y * intra[1]);
          *reinterpret_cast<float2*>(p.dgk2 + (row * p.h + h) * K + d) =
              make_float2(kv.x * inter[0], kv.y * inter[1]);
        }
      }
  }

  // ---- dv (rows s = t0.., value dims v0..) ----
  if (p.dv) {
    // The scores over the two key halves summed (scv: this warp's half, from the dk phase).
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[j][e] = scv[j][e];
    auto xat = [&](int j, int r) { return sx + (t0 + gq + 8 * r) * kLdX + 8 * j + 2 * tq; };
    if (half == 1) {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * blk)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            *reinterpret_cast<float2*>(xat(j, r)) = make_float2(sc[j][2 * r], sc[j][2 * r + 1]);
    }
    __syncthreads();
    if (half == 0) {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * blk)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const float2 o = *reinterpret_cast<const float2*>(xat(j, r));
            sc[j][2 * r] += o.x;
            sc[j][2 * r + 1] += o.y;
            *reinterpret_cast<float2*>(xat(j, r)) = make_float2(sc[j][2 * r], sc[j][2 * r + 1]);
          }
    }
    __syncthreads();
    if (half == 1) {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * blk)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const float2 o = *reinterpret_cast<const float2*>(xat(j, r));
            sc[j][2 * r] = o.x;
            sc[j][2 * r + 1] = o.y;
          }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int s = t0 + gq + (e >> 1) * 8, t = 8 * j + 2 * tq + (e & 1);
        sc[j][e] = t >= s ? p.scale * sc[j][e] : 0.f;
      }
    // (k_s exp(B - b_s)) dH, then the intra-chunk scores times dO.
    auto fkb = [&](int s, int d) {
      return ld_bf16(sk + s * kLdK + d) * __expf(gb(kBT - 1, d) - gb(s, d));
    };
    float dv[VH / 8][4];
#pragma unroll
    for (int j = 0; j < VH / 8; ++j) dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.f;
#pragma unroll 1
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t a[4];
      frag_a(a, fkb, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < VH / 16; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, ss, kLdV, 16 * kk, v0 + 16 * jj, lane);
        mma_16816(dv[2 * jj], a, bfr[0], bfr[1]);
        mma_16816(dv[2 * jj + 1], a, bfr[2], bfr[3]);
      }
    }
#pragma unroll 1
    for (int j = blk; j < 4; ++j) {
      float sj[2][4];
      pick_block(sj, sc, j);
      uint32_t a[4];
      c_to_a(a, sj, 0);
#pragma unroll
      for (int jj = 0; jj < VH / 16; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, sdo, kLdV, 16 * j, v0 + 16 * jj, lane);
        mma_16816(dv[2 * jj], a, bfr[0], bfr[1]);
        mma_16816(dv[2 * jj + 1], a, bfr[2], bfr[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = r0 + t0 + gq + 8 * r;
      if (row >= r1) continue;
      bf16* dst = p.dv + (row * p.h + h) * V + v0;
#pragma unroll
      for (int j = 0; j < VH / 8; ++j)
        *reinterpret_cast<uint32_t*>(dst + 8 * j + 2 * tq) =
            pack_bf16(dv[j][2 * r], dv[j][2 * r + 1]);
    }
  }
}

// dg of one chunk (per-key-dim gates): dg_u = dgs + Σ_{t≥u} dgk_t + Σ_{s<u} dgk2_s.
// One block per (chunk, head), thread d. (Scalar gates finish dg inside the dq/dk/dv kernel.)
__global__ void __launch_bounds__(kThreads) gla_chunk_bwd_kernel_dg(const Params p) {
  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  const int len = int(r1 - r0 < kBT ? r1 - r0 : kBT);
  const int64_t kd = p.kd;
  const float* dgs = p.dgs + (x * p.h + h) * kd;
  // Thread d: the exclusive prefix of k dk_inter in registers (loads independent of the sums,
  // so they are all in flight at once), then the suffix of q dq' - k dk_intra in batches of 16
  // rows whose loads are issued before any store. Same summation order as a plain loop.
  const int64_t stride = p.h * kd;
  for (int64_t d = threadIdx.x; d < kd; d += kThreads) {
    const int64_t base = (r0 * p.h + h) * kd + d;
    const float* __restrict__ ex = p.dgk2 + base;
    const float* __restrict__ qd = p.dgk + base;
    float* __restrict__ out = p.dg + base;
    float pre[kBT];
    float acc = 0.f;
#pragma unroll
    for (int u = 0; u < kBT; ++u) {
      const float e = u < len ? ex[u * stride] : 0.f;
      pre[u] = acc;
      acc += e;
    }
    float run = dgs[d];
#pragma unroll
    for (int b = kBT / 16 - 1; b >= 0; --b) {
      float a[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int u = 16 * b + i;
        a[i] = u < len ? qd[u * stride] : 0.f;
      }
#pragma unroll
      for (int i = 15; i >= 0; --i) {
        const int u = 16 * b + i;
        if (u < len) {
          run += a[i];
          out[u * stride] = run + pre[u];
        }
      }
    }
  }
}

template <int K, int V>
void launch_dqkv_t(const Params& p, cudaStream_t st) {
  constexpr int smem = dqkv_smem(K, V, false);
  auto kern = gla_chunk_bwd_kernel_dqkv<K, V>;
  kern::ensure_dynamic_smem(kern, smem);
  const dim3 grid(unsigned(p.max_chunks), unsigned(p.h));
  kern<<<grid, kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K>
void launch_dqkv_k(const Params& p, cudaStream_t st) {
  switch (p.vd) {
    case 64:
      return launch_dqkv_t<K, 64>(p, st);
    case 128:
      return launch_dqkv_t<K, 128>(p, st);
    case 192:
      return launch_dqkv_t<K, 192>(p, st);
    default:
      return launch_dqkv_t<K, 256>(p, st);
  }
}

template <int K, int V>
void launch_dqkv_kv_t(const Params& p, cudaStream_t st) {
  constexpr int smem = dqkv_smem(K, V, true);
  auto kern = gla_chunk_bwd_kernel_dqkv_kv<K, V>;
  kern::ensure_dynamic_smem(kern, smem);
  const dim3 grid(unsigned(p.max_chunks), unsigned(p.h));
  kern<<<grid, kThreadsKV, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K>
void launch_dqkv_kv_k(const Params& p, cudaStream_t st) {
  switch (p.vd) {
    case 64:
      return launch_dqkv_kv_t<K, 64>(p, st);
    case 128:
      return launch_dqkv_kv_t<K, 128>(p, st);
    case 192:
      return launch_dqkv_kv_t<K, 192>(p, st);
    default:
      return launch_dqkv_kv_t<K, 256>(p, st);
  }
}

template <bool KV>
void launch_dqkv(const Params& p, cudaStream_t st) {
  if constexpr (KV) {
    if (p.kd == 64)
      launch_dqkv_kv_k<64>(p, st);
    else if (p.kd == 96)
      launch_dqkv_kv_k<96>(p, st);
    else
      launch_dqkv_kv_k<128>(p, st);
  } else if (p.kd == 64) {
    launch_dqkv_k<64>(p, st);
  } else if (p.kd == 96) {
    launch_dqkv_k<96>(p, st);
  } else {
    launch_dqkv_k<128>(p, st);
  }
}

}  // namespace
}  // namespace gla_chunk

void gla_chunk_bwd_cuda(const GlaBwdArgs& a) {
  const int64_t b = a.q.size(0), t = a.q.size(1), h = a.q.size(2);
  const int64_t n = a.cu_seqlens.defined() ? a.cu_seqlens.numel() - 1 : b;
  const Device dev = a.q.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  const Tensor cu = a.cu_seqlens.defined() ? a.cu_seqlens.to(dev, DType::I64) : Tensor();
  const bool need_dg =
      a.dg.defined() && (a.gate == GlaGate::HeadScalar || a.gate == GlaGate::KeyVector);
  gla_chunk::Params p;
  p.q = a.q.data<bf16>();
  p.k = a.k.data<bf16>();
  p.v = a.v.data<bf16>();
  p.g = a.g.defined() ? a.g.data<float>() : nullptr;
  p.h0 = a.h0.defined() ? a.h0.data<float>() : nullptr;
  p.dout = a.dout.data<bf16>();
  p.dht = a.dht.defined() ? a.dht.data<float>() : nullptr;
  p.dq = a.dq.defined() ? a.dq.data<bf16>() : nullptr;
  p.dk = a.dk.defined() ? a.dk.data<bf16>() : nullptr;
  p.dv = a.dv.defined() ? a.dv.data<bf16>() : nullptr;
  p.dg = need_dg ? a.dg.data<float>() : nullptr;
  p.dh0 = a.dh0.defined() ? a.dh0.data<float>() : nullptr;
  p.n = n;
  p.h = h;
  p.kd = a.q.size(3);
  p.vd = a.v.size(3);
  p.gate = int(a.gate);
  p.scale = float(gla_scale(a.scale, p.kd));
  p.max_chunks =
      cu.defined() ? t / gla_chunk::kBT + n : b * ((t + gla_chunk::kBT - 1) / gla_chunk::kBT);
  Tensor index;  // packed batches only (seq_index.cuh)
  gla_chunk::set_index(p, cu, t, index, st);

  const bool kv = a.gate == GlaGate::KeyVector;
  Tensor hs, dhs, dgk, dgk2, dgs;
  const bool kept_states = a.hs.defined();  // the forward's chunk-start states
  if (p.max_chunks > 0) {
    if (kept_states && a.hs.numel() != p.max_chunks * h * p.kd * p.vd)
      SEQMIX_THROW_PLAIN(Value, "gla_bwd: 'hs' does not have the chunk-start states' shape");
    hs = kept_states ? a.hs : Tensor::empty({p.max_chunks, h, p.kd, p.vd}, DType::BF16, dev);
    dhs = Tensor::empty({p.max_chunks, h, p.kd, p.vd}, DType::BF16, dev);
    p.hs = hs.data<bf16>();
    p.dhs = dhs.data<bf16>();
  }
  if (need_dg && kv) {  // scalar gates keep their dg terms in shared memory
    dgk = Tensor::empty({b * t * h * p.kd}, DType::F32, dev);
    dgk2 = Tensor::empty({b * t * h * p.kd}, DType::F32, dev);
    dgs = Tensor::empty({p.max_chunks * h * p.kd}, DType::F32, dev);
    p.dgk = dgk.data<float>();
    p.dgk2 = dgk2.data<float>();
    p.dgs = dgs.data<float>();
  }
  Tensor gc;  // the forward's (a.gc: reused as is) or recomputed here
  if (a.gate == GlaGate::KeyVector || a.gate == GlaGate::HeadScalar) {
    if (a.gc.defined()) {
      gc = a.gc;
      p.gc = gc.data<float>();
    } else {
      gc = Tensor::empty({b * t * h * (kv ? p.kd : 1)}, DType::F32, dev);
      p.gc = gc.data<float>();
      gla_chunk::launch_cumsum(p, st);
    }
  }
  if (!kept_states) gla_chunk::launch_states(p, false, st);  // S at every chunk start
  gla_chunk::launch_states(p, true, st);                     // dH at every chunk end, dh0
  if (p.max_chunks > 0 && (p.dq || p.dk || p.dv || p.dg)) {
    if (kv)
      gla_chunk::launch_dqkv<true>(p, st);
    else
      gla_chunk::launch_dqkv<false>(p, st);
  }
  if (need_dg && kv && p.max_chunks > 0 && h > 0) {
    const dim3 grid{unsigned(p.max_chunks), unsigned(h)};
    gla_chunk::gla_chunk_bwd_kernel_dg<<<grid, gla_chunk::kThreads, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
}

}  // namespace seqmix
