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
//   separate small kernel, so no floating-point atomics anywhere (bitwise deterministic).
// Kernels: the states kernels of gla_chunk_fwd.cu (forward recompute of S, reverse for dH),
// dqkv (one block per chunk and head, the whole V in shared memory, warp w owns rows
// [16w, 16w + 16)), dg (cumulative sums per chunk).
// Per-key-dim gates use the same in-sub-chunk reference point as the forward (see there).
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "kernels/gla/gla_common.cuh"

namespace seqmix {
namespace gla_chunk {
namespace {

// Per-key-dim gates: the in-chunk products that feed dg (dA k̃ for dq, dAᵀ q̃ for dk) are taken in
// split bf16 (hi·hi + lo·hi + hi·lo, three mma, ~16 mantissa bits) because dg sums them with
// opposite signs: q dq - k dk cancels pair by pair inside the chunk, and plain bf16 products
// leave ~0.5-1% relative error in dg (measured on an H100 with this switch off; o, ht, dq, dk, dv,
// dh0 were within 5e-3 either way). Scalar gates sum dg over K and pass without it.
constexpr bool kSplitIntra = true;

// acc[16 x K] += (rows of the 16x64 score tile, k-block j) · B, B[k = row of the chunk][n = key
// dim] = f(k, n), in split bf16.
template <int K, class F>
__device__ __forceinline__ void split_product(float (&acc)[K / 8][4], const float (&sc)[8][4],
                                              int j, const F& f, int gq, int tq) {
  uint32_t ahi[4], alo[4];
  c_to_a_split(ahi, alo, sc, j);
#pragma unroll
  for (int n = 0; n < K / 8; ++n) {
    uint32_t bh0, bh1, bl0, bl1;
    frag_b_split(bh0, bh1, bl0, bl1, f, 16 * j, 8 * n, gq, tq);
    mma_16816(acc[n], ahi, bh0, bh1);
    mma_16816(acc[n], alo, bh0, bh1);
    mma_16816(acc[n], ahi, bl0, bl1);
  }
}

template <int K, int V, bool KV>
__global__ void __launch_bounds__(kThreads) gla_chunk_bwd_kernel_dqkv(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8, kLdB = K + 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sq = reinterpret_cast<bf16*>(sb + (KV ? kBT * kLdB : kBT));
  bf16* sk = sq + kBT * kLdK;
  bf16* sv = sk + kBT * kLdK;
  bf16* sdo = sv + kBT * kLdV;
  bf16* ss = sdo + kBT * kLdV;

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = p.seq[n] + (x - p.chunks[n]) * kBT, r1 = p.seq[n + 1];
  load_gate<K, KV, true>(sb, p, h, r0, r1);
  load_tile<K, true>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V, true>(sv, p.v + h * V, r0, r1, p.h * V);
  load_tile<V, true>(sdo, p.dout + h * V, r0, r1, p.h * V);
  cp_async_commit();
  load_state<K, V>(ss, p.hs + (x * p.h + h) * K * V, V);
  cp_async_wait<0>();
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp, ref = t0 + 7;
  auto gb = [&](int t, int d) { return KV ? sb[t * kLdB + d] : sb[t]; };
  auto sdecay = [&](int t, int s) { return KV ? 1.f : __expf(sb[t] - sb[s]); };
  // k_s exp(r - b_s) and q_t exp(b_t - r) (per-key-dim gates; raw for scalar gates).
  auto fk = [&](int s, int d) {
    const float v = ld_bf16(sk + s * kLdK + d);
    return KV ? v * __expf(gb(ref, d) - gb(s, d)) : v;
  };
  auto fq = [&](int t, int d) {
    const float v = ld_bf16(sq + t * kLdK + d);
    return KV ? v * __expf(gb(t, d) - gb(ref, d)) : v;
  };

  float sc[8][4];
  float acc[K / 8][4];
  // Scalar gates: exp(b_t) and exp(B - b_t) of this thread's rows t0 + gq (+8).
  float erow[2], erow_b[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int t = t0 + gq + 8 * r;
    erow[r] = KV ? 1.f : __expf(sb[t]);
    erow_b[r] = KV ? 1.f : __expf(sb[kBT - 1] - sb[t]);
  }
  // Scalar gates: the per-row sums of q dq' (dq phase), k dk'_intra and k dk_inter (dk phase) are
  // all dg needs, so dgk / dgk2 hold one value per (row, head) instead of per key dim.
  float row_qdq[2] = {0.f, 0.f}, row_kin[2] = {0.f, 0.f}, row_kex[2] = {0.f, 0.f};
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
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j <= warp) {
        if constexpr (KV && kSplitIntra) {
          split_product<K>(acc, sc, j, fk, gq, tq);
        } else {
          uint32_t a[4];
          c_to_a(a, sc, j);
#pragma unroll
          for (int jj = 0; jj < K / 16; ++jj) {
            uint32_t bfr[4];
            if constexpr (KV) {
              frag_b(bfr[0], bfr[1], fk, 16 * j, 16 * jj, gq, tq);
              frag_b(bfr[2], bfr[3], fk, 16 * j, 16 * jj + 8, gq, tq);
            } else {
              load_b(bfr, sk, kLdK, 16 * j, 16 * jj, lane);
            }
            mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
            mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
          }
        }
      }
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
      for (int e = 0; e < 4; ++e) {
        const int t = t0 + gq + (e >> 1) * 8, d = 8 * j + 2 * tq + (e & 1);
        const float intra = KV ? acc[j][e] * __expf(gb(t, d) - gb(ref, d)) : acc[j][e];
        acc[j][e] = p.scale * (intra + tmp[e] * (KV ? __expf(gb(t, d)) : erow[e >> 1]));
      }
    }
    if (!KV && p.dgk) {  // scalar gates: Σ_d q dq' per row (zero-filled rows give 0)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int t = t0 + gq + 8 * r;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < K / 8; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c)
            sum += ld_bf16(sq + t * kLdK + 8 * j + 2 * tq + c) * acc[j][2 * r + c];
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
      if (KV && p.dgk) {
        float* dst = p.dgk + (row * p.h + h) * K;
#pragma unroll
        for (int j = 0; j < K / 8; ++j) {
          const int d = 8 * j + 2 * tq;
          *reinterpret_cast<float2*>(dst + d) =
              make_float2(ld_bf16(sq + t * kLdK + d) * acc[j][2 * r],
                          ld_bf16(sq + t * kLdK + d + 1) * acc[j][2 * r + 1]);
        }
      }
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

  __syncthreads();  // every warp is done with S
  load_state<K, V>(ss, p.dhs + (x * p.h + h) * K * V, V);
  __syncthreads();
  // exp(B) Σ_v S ⊙ dH per key dim: warp w takes rows w, w + 4, ..., lanes split V.
  // A sequence's first chunk takes S from h0 and its last chunk dH from dht, both fp32: where one
  // chunk is the whole sequence (T <= 64) this term is most of dg, and the bf16-stored copies
  // alone cost ~2^-9 relative error there.
  const bool first_chunk = x == p.chunks[n], last_chunk = r0 + kBT >= r1;
  const float* s32 = first_chunk && p.h0 ? p.h0 + (n * p.h + h) * K * V : nullptr;
  const float* dh32 = last_chunk && p.dht ? p.dht + (n * p.h + h) * K * V : nullptr;
  if (p.dgs && (s32 || dh32)) {
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
      if (lane == 0) p.dgs[(x * p.h + h) * K + d] = __expf(gb(kBT - 1, d)) * sum;
    }
  } else if (p.dgs) {
    // S comes from global memory (L2): the loads of kB rows are issued before they are used.
    const bf16* src = p.hs + (x * p.h + h) * K * V;
    constexpr int kRows = K / 4, kPer = V / 64, kB = 8;
    static_assert(kRows % kB == 0, "rows per warp in batches of kB");
#pragma unroll 1
    for (int i0 = 0; i0 < kRows; i0 += kB) {
      __nv_bfloat162 hv[kB][kPer];
#pragma unroll
      for (int i = 0; i < kB; ++i)
#pragma unroll
        for (int c = 0; c < kPer; ++c)
          hv[i][c] = *reinterpret_cast<const __nv_bfloat162*>(src + (warp + 4 * (i0 + i)) * V +
                                                              2 * lane + 64 * c);
#pragma unroll
      for (int i = 0; i < kB; ++i) {
        const int d = warp + 4 * (i0 + i);
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
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j >= warp) {
        if constexpr (KV && kSplitIntra) {
          split_product<K>(acc, sc, j, fq, gq, tq);
        } else {
          uint32_t a[4];
          c_to_a(a, sc, j);
#pragma unroll
          for (int jj = 0; jj < K / 16; ++jj) {
            uint32_t bfr[4];
            if constexpr (KV) {
              frag_b(bfr[0], bfr[1], fq, 16 * j, 16 * jj, gq, tq);
              frag_b(bfr[2], bfr[3], fq, 16 * j, 16 * jj + 8, gq, tq);
            } else {
              load_b(bfr, sq, kLdK, 16 * j, 16 * jj, lane);
            }
            mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
            mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
          }
        }
      }
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
      // Stored per 8 key dims: dk = intra + inter + diagonal; dg scratch k intra, k inter.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int s = t0 + gq + 8 * r;
        const int64_t row = r0 + s;
        if (row >= r1) continue;
        const int d = 8 * j + 2 * tq;
        float intra[2], inter[2], kv[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float raw = acc[j][2 * r + c];
          intra[c] = p.scale * (KV ? raw * __expf(gb(ref, d + c) - gb(s, d + c)) : raw);
          inter[c] = tmp[2 * r + c] * (KV ? __expf(gb(kBT - 1, d + c) - gb(s, d + c)) : erow_b[r]);
          kv[c] = ld_bf16(sk + s * kLdK + d + c);
        }
        if (p.dk) {
          const float dd = p.scale * diag[r];
          *reinterpret_cast<uint32_t*>(p.dk + (row * p.h + h) * K + d) =
              pack_bf16(intra[0] + inter[0] + dd * ld_bf16(sq + s * kLdK + d),
                        intra[1] + inter[1] + dd * ld_bf16(sq + s * kLdK + d + 1));
        }
        if (KV && p.dgk) {
          *reinterpret_cast<float2*>(p.dgk3 + (row * p.h + h) * K + d) =
              make_float2(kv[0] * intra[0], kv[1] * intra[1]);
          *reinterpret_cast<float2*>(p.dgk2 + (row * p.h + h) * K + d) =
              make_float2(kv[0] * inter[0], kv[1] * inter[1]);
        }
        if (!KV && p.dgk) {
          row_kin[r] += kv[0] * intra[0] + kv[1] * intra[1];
          row_kex[r] += kv[0] * inter[0] + kv[1] * inter[1];
        }
      }
    }
    if (!KV && p.dgk) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float a = row_kin[r], b = row_kex[r];
        a += __shfl_xor_sync(0xffffffffu, a, 1);
        a += __shfl_xor_sync(0xffffffffu, a, 2);
        b += __shfl_xor_sync(0xffffffffu, b, 1);
        b += __shfl_xor_sync(0xffffffffu, b, 2);
        const int64_t row = r0 + t0 + gq + 8 * r;
        if (tq == 0 && row < r1) {
          p.dgk[row * p.h + h] = row_qdq[r] - a;
          p.dgk2[row * p.h + h] = b;
        }
      }
    }
  }

  // ---- dv (rows s = t0..) ----
  if (p.dv) {
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
    auto fqt = [&](int d, int t) { return fq(t, d); };
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t a[4];
      if constexpr (KV)
        frag_a(a, fk, t0, 16 * kk, gq, tq);
      else
        load_a(a, sk, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (j >= 2 * warp) {
          uint32_t b0, b1;
          if constexpr (KV)
            frag_b(b0, b1, fqt, 16 * kk, 8 * j, gq, tq);
          else
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
    // (k_s exp(B - b_s)) dH
    auto fkb = [&](int s, int d) {
      return ld_bf16(sk + s * kLdK + d) * __expf(gb(kBT - 1, d) - gb(s, d));
    };
    // V in parts of at most 128 columns (the scores are shared by the parts).
    constexpr int kVP = V <= 128 ? V : V / 2;
#pragma unroll 1
    for (int vp = 0; vp < V; vp += kVP) {
      float dv[kVP / 8][4];
#pragma unroll
      for (int j = 0; j < kVP / 8; ++j) dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.f;
        // Inter-chunk part (k_s exp(B - b_s)) dH first: scalar gates multiply the rows afterwards.
#pragma unroll
      for (int kk = 0; kk < K / 16; ++kk) {
        uint32_t a[4];
        if constexpr (KV)
          frag_a(a, fkb, t0, 16 * kk, gq, tq);
        else
          load_a(a, sk, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
        for (int jj = 0; jj < kVP / 16; ++jj) {
          uint32_t bfr[4];
          load_b(bfr, ss, kLdV, 16 * kk, vp + 16 * jj, lane);
          mma_16816(dv[2 * jj], a, bfr[0], bfr[1]);
          mma_16816(dv[2 * jj + 1], a, bfr[2], bfr[3]);
        }
      }
      if constexpr (!KV) {
#pragma unroll
        for (int j = 0; j < kVP / 8; ++j) {
          dv[j][0] *= erow_b[0];
          dv[j][1] *= erow_b[0];
          dv[j][2] *= erow_b[1];
          dv[j][3] *= erow_b[1];
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j >= warp) {
          uint32_t a[4];
          c_to_a(a, sc, j);
#pragma unroll
          for (int jj = 0; jj < kVP / 16; ++jj) {
            uint32_t bfr[4];
            load_b(bfr, sdo, kLdV, 16 * j, vp + 16 * jj, lane);
            mma_16816(dv[2 * jj], a, bfr[0], bfr[1]);
            mma_16816(dv[2 * jj + 1], a, bfr[2], bfr[3]);
          }
        }
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
}

// dg of one chunk: dg_u = dgs + Σ_{t≥u} dgk_t + Σ_{s<u} dgk2_s (summed over K for HeadScalar).
// One block per (chunk, head); KeyVector: thread d; HeadScalar: row sums, then thread 0 scans.
template <bool KV>
__global__ void __launch_bounds__(kThreads) gla_chunk_bwd_kernel_dg(const Params p) {
  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = p.seq[n] + (x - p.chunks[n]) * kBT, r1 = p.seq[n + 1];
  const int len = int(r1 - r0 < kBT ? r1 - r0 : kBT);
  const int64_t kd = p.kd;
  const float* dgs = p.dgs + (x * p.h + h) * kd;
  if constexpr (KV) {
    // Thread d: the exclusive prefix of k dk_inter in registers (loads independent of the sums,
    // so they are all in flight at once), then the suffix of q dq' - k dk_intra in batches of 16
    // rows whose loads are issued before any store. Same summation order as a plain loop.
    const int64_t stride = p.h * kd;
    for (int64_t d = threadIdx.x; d < kd; d += kThreads) {
      const int64_t base = (r0 * p.h + h) * kd + d;
      const float* __restrict__ ex = p.dgk2 + base;
      const float* __restrict__ qd = p.dgk + base;
      const float* __restrict__ ki = p.dgk3 + base;
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
        float a[16], c[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          const int u = 16 * b + i;
          a[i] = u < len ? qd[u * stride] : 0.f;
          c[i] = u < len ? ki[u * stride] : 0.f;
        }
#pragma unroll
        for (int i = 15; i >= 0; --i) {
          const int u = 16 * b + i;
          if (u < len) {
            run += a[i] - c[i];
            out[u * stride] = run + pre[u];
          }
        }
      }
    }
  } else {
    __shared__ float s1[kBT], s2[kBT], s0;
    const int u = threadIdx.x;
    if (u < len) {  // dgk / dgk2 hold per-row sums over K for scalar gates
      s1[u] = p.dgk[(r0 + u) * p.h + h];
      s2[u] = p.dgk2[(r0 + u) * p.h + h];
    }
    if (threadIdx.x == kThreads - 1) {
      float a = 0.f;
      for (int64_t d = 0; d < kd; ++d) a += dgs[d];
      s0 = a;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float run = s0;
      for (int w = len - 1; w >= 0; --w) {
        run += s1[w];
        s1[w] = run;
      }
      float pre = 0.f;
      for (int w = 0; w < len; ++w) {
        p.dg[(r0 + w) * p.h + h] = s1[w] + pre;
        pre += s2[w];
      }
    }
  }
}

template <int K, int V, bool KV>
void launch_dqkv_t(const Params& p, cudaStream_t st) {
  constexpr int smem = dqkv_smem(K, V, KV);
  auto kern = gla_chunk_bwd_kernel_dqkv<K, V, KV>;
  SEQMIX_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(unsigned(p.max_chunks), unsigned(p.h));
  kern<<<grid, kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K, bool KV>
void launch_dqkv_k(const Params& p, cudaStream_t st) {
  switch (p.vd) {
    case 64:
      return launch_dqkv_t<K, 64, KV>(p, st);
    case 128:
      return launch_dqkv_t<K, 128, KV>(p, st);
    case 192:
      return launch_dqkv_t<K, 192, KV>(p, st);
    default:
      return launch_dqkv_t<K, 256, KV>(p, st);
  }
}

template <bool KV>
void launch_dqkv(const Params& p, cudaStream_t st) {
  if (p.kd == 64)
    launch_dqkv_k<64, KV>(p, st);
  else if (p.kd == 96)
    launch_dqkv_k<96, KV>(p, st);
  else
    launch_dqkv_k<128, KV>(p, st);
}

}  // namespace
}  // namespace gla_chunk

void gla_chunk_bwd_cuda(const GlaBwdArgs& a) {
  const int64_t b = a.q.size(0), t = a.q.size(1), h = a.q.size(2);
  const int64_t n = a.cu_seqlens.defined() ? a.cu_seqlens.numel() - 1 : b;
  const Device dev = a.q.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  const Tensor cu = a.cu_seqlens.defined() ? a.cu_seqlens.to(dev, DType::I64) : Tensor();
  Tensor index = Tensor::empty({2 * (n + 1)}, DType::I64, dev);
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
  int64_t* idx = index.data<int64_t>();
  p.seq = idx;
  p.chunks = idx + n + 1;
  gla_chunk::build_index(cu, b, t, n, idx, idx + n + 1, st);

  const bool kv = a.gate == GlaGate::KeyVector;
  Tensor hs, dhs, dgk, dgk2, dgk3, dgs;
  if (p.max_chunks > 0) {
    hs = Tensor::empty({p.max_chunks, h, p.kd, p.vd}, DType::BF16, dev);
    dhs = Tensor::empty({p.max_chunks, h, p.kd, p.vd}, DType::BF16, dev);
    p.hs = hs.data<bf16>();
    p.dhs = dhs.data<bf16>();
  }
  if (need_dg) {
    const int64_t per_row = kv ? p.kd : 1;  // scalar gates keep per-row sums over K
    dgk = Tensor::empty({b * t * h * per_row}, DType::F32, dev);
    dgk2 = Tensor::empty({b * t * h * per_row}, DType::F32, dev);
    if (kv) {
      dgk3 = Tensor::empty({b * t * h * per_row}, DType::F32, dev);
      p.dgk3 = dgk3.data<float>();
    }
    dgs = Tensor::empty({p.max_chunks * h * p.kd}, DType::F32, dev);
    p.dgk = dgk.data<float>();
    p.dgk2 = dgk2.data<float>();
    p.dgs = dgs.data<float>();
  }
  Tensor gc;
  if (a.gate == GlaGate::KeyVector || a.gate == GlaGate::HeadScalar) {
    gc = Tensor::empty({b * t * h * (a.gate == GlaGate::KeyVector ? p.kd : 1)}, DType::F32, dev);
    p.gc = gc.data<float>();
    gla_chunk::launch_cumsum(p, st);
  }
  gla_chunk::launch_states(p, false, st);  // S at every chunk start
  gla_chunk::launch_states(p, true, st);   // dH at every chunk end, dh0
  if (p.max_chunks > 0 && (p.dq || p.dk || p.dv || p.dgk)) {
    if (kv)
      gla_chunk::launch_dqkv<true>(p, st);
    else
      gla_chunk::launch_dqkv<false>(p, st);
  }
  if (need_dg && p.max_chunks > 0 && h > 0) {
    const dim3 grid{unsigned(p.max_chunks), unsigned(h)};
    if (kv)
      gla_chunk::gla_chunk_bwd_kernel_dg<true><<<grid, gla_chunk::kThreads, 0, st>>>(p);
    else
      gla_chunk::gla_chunk_bwd_kernel_dg<false><<<grid, gla_chunk::kThreads, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
}

}  // namespace seqmix
