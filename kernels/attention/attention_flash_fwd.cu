// CUDA attention forward, FlashAttention-2 style (bf16 in, fp32 accumulate, mma.sync m16n8k16):
//   one block = 64 queries of one (b, h), 4 warps x 16 query rows; Q fragments stay in registers;
//   loop over 64-key tiles of the kv head h / (H / Hkv) inside the causal / window band only:
//     S = Q K^T (registers), online softmax in base 2 (m, l per row), O += P V with P in registers.
//   K and V tiles are cp.async'ed into padded smem ([64][D + 8] bf16: conflict-free fragment
//   loads); V(j) loads while S(j) is computed, K(j+1) while P V(j) is.
//   o = O / l, lse = ln 2 * (m + log2 l).
// Layouts: q, o [B, T, H, D] bf16; k, v [B, T, Hkv, D] bf16; lse [B, H, T] f32. D in {64, 128}.
// Grid: x = query tiles (heaviest causal tiles first), y = H, z = B.
// Also the host entry points attention_fwd_cuda / make_params.
#include <cuda_runtime.h>

#include <cmath>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "kernels/attention/attention_common.cuh"
#include "kernels/common/launch.cuh"

namespace seqmix {
namespace attn {
namespace {

constexpr int kThreads = 128;
constexpr int kBr = 64;  // queries per block (16 per warp)
constexpr int kBc = 64;  // keys per tile

template <int D>
constexpr int fwd_smem_bytes() {
  return (kBr + 2 * kBc) * (D + 8) * int(sizeof(bf16));
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_flash_fwd_kernel(const Params p) {
  constexpr int kLd = D + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* s_q = reinterpret_cast<bf16*>(smem_raw);
  bf16* s_k = s_q + kBr * kLd;
  bf16* s_v = s_k + kBc * kLd;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int64_t n_qt = (p.t + kBr - 1) / kBr;
  const int64_t qt = p.causal ? n_qt - 1 - int64_t(blockIdx.x) : int64_t(blockIdx.x);
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / p.group;
  const int64_t q0 = qt * kBr;
  const int64_t q_stride = p.h * D, kv_stride = p.hkv * D;
  const bf16* q_base = static_cast<const bf16*>(p.q) + (b * p.t * p.h + h) * D;
  const bf16* k_base = static_cast<const bf16*>(p.k) + (b * p.t * p.hkv + g) * D;
  const bf16* v_base = static_cast<const bf16*>(p.v) + (b * p.t * p.hkv + g) * D;

  int64_t k_begin, k_end;
  key_range(p, q0, q0 + kBr, k_begin, k_end);
  const int64_t kt_begin = k_begin / kBc, kt_end = (k_end + kBc - 1) / kBc;

  load_tile_async<kBr, D, kThreads>(s_q, q_base, q0, p.t, q_stride);
  load_tile_async<kBc, D, kThreads>(s_k, k_base, kt_begin * kBc, p.t, kv_stride);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) load_a(qf[kk], s_q, kLd, warp * 16, kk * 16, gq, tq);

  float acc[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  const int64_t row[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};

  for (int64_t kt = kt_begin; kt < kt_end; ++kt) {
    const int64_t k0 = kt * kBc;
    load_tile_async<kBc, D, kThreads>(s_v, v_base, k0, p.t, kv_stride);
    cp_async_commit();
    cp_async_wait<1>();  // K(kt) has landed
    __syncthreads();

    float s[kBc / 8][4];
#pragma unroll
    for (int n = 0; n < kBc / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int n = 0; n < kBc / 8; ++n) {
        uint32_t b0, b1;
        load_bt(b0, b1, s_k, kLd, n * 8, kk * 16, gq, tq);
        mma_16816(s[n], qf[kk], b0, b1);
      }
    }

    // Scale into the base-2 domain, mask, online softmax. Masking is needed only on tiles that
    // touch the diagonal, the window edge or the end of the sequence.
    const bool edge = k0 + kBc > p.t || (p.causal && k0 + kBc - 1 > q0) ||
                      (p.window > 0 && k0 <= q0 + kBr - 1 - p.window);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        float x = s[n][e] * p.scale_log2;
        if (edge && !visible(p, row[r], k0 + n * 8 + 2 * tq + (e & 1))) x = -INFINITY;
        s[n][e] = x;
        mx[r] = fmaxf(mx[r], x);
      }
    }
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float m_new = fmaxf(m_run[r], mx[r]);
      m_use[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing visible yet stays 0
      alpha[r] = exp2f(m_run[r] - m_use[r]);
      m_run[r] = m_new;
    }
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int n = 0; n < kBc / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float x = exp2f(s[n][e] - m_use[e >> 1]);
        s[n][e] = x;
        rs[e >> 1] += x;
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_run[r] = l_run[r] * alpha[r] + rs[r];
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }

    cp_async_wait<0>();  // V(kt) has landed
    __syncthreads();     // and every warp is done with K(kt)
    if (kt + 1 < kt_end) {
      load_tile_async<kBc, D, kThreads>(s_k, k_base, k0 + kBc, p.t, kv_stride);
      cp_async_commit();
    }
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t a[4];
      a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t bv[4];
        load_b_trans(bv, s_v, kLd, kk * 16, dn * 16, lane);
        mma_16816(acc[2 * dn], a, bv[0], bv[1]);
        mma_16816(acc[2 * dn + 1], a, bv[2], bv[3]);
      }
    }
    __syncthreads();  // every warp is done with V(kt) before the next V load
  }

  // Finish: row sums over the quad, normalise, store.
  bf16* o_base = static_cast<bf16*>(p.o) + (b * p.t * p.h + h) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
    if (row[r] >= p.t) continue;
    const float inv = 1.f / l_run[r];
    bf16* orow = o_base + row[r] * q_stride;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(orow + n * 8 + 2 * tq) =
          pack_bf16(acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
    if (p.lse && tq == 0) p.lse[(b * p.h + h) * p.t + row[r]] = (m_run[r] + log2f(l_run[r])) * kLn2;
  }
}

template <int D>
void launch_fwd(const Params& p, cudaStream_t st) {
  constexpr int smem = fwd_smem_bytes<D>();
  kern::ensure_dynamic_smem(attention_flash_fwd_kernel<D>, smem);
  const dim3 grid(unsigned((p.t + kBr - 1) / kBr), unsigned(p.h), unsigned(p.b));
  attention_flash_fwd_kernel<D><<<grid, kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace

Params make_params(const Tensor& q, const Tensor& k, double scale, bool causal, int64_t window) {
  Params p;
  p.b = q.size(0);
  p.t = q.size(1);
  p.h = q.size(2);
  p.d = q.size(3);
  p.hkv = k.size(2);
  p.group = p.h / p.hkv;
  p.window = window;
  p.causal = causal;
  const double s = attention_scale(scale, p.d);
  p.scale = float(s);
  p.scale_log2 = float(s * 1.4426950408889634);
  return p;
}

}  // namespace attn

void attention_fwd_cuda(const AttentionFwdArgs& a) {
  attn::Params p = attn::make_params(a.q, a.k, a.scale, a.causal, a.window);
  if (p.t == 0 || p.b == 0) return;
  p.q = a.q.data_ptr();
  p.k = a.k.data_ptr();
  p.v = a.v.data_ptr();
  p.o = a.o.data_ptr();
  p.lse = a.lse.defined() ? a.lse.data<float>() : nullptr;
  cudaStream_t st = cuda::current_stream(a.q.device().index);
  if (a.q.dtype() == DType::F32) {
    attn::simt_fwd(p, st);
  } else if (p.d == 64) {
    attn::launch_fwd<64>(p, st);
  } else if (p.d == 128) {
    attn::launch_fwd<128>(p, st);
  } else {
    SEQMIX_THROW_PLAIN(Unsupported, "attention: no CUDA kernel for this head dim");
  }
}

}  // namespace seqmix
