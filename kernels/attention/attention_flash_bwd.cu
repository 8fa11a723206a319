// CUDA attention backward, FlashAttention-2 style, deterministic (no floating-point atomics):
//   1. preprocess: Di = rowsum(dO * O) per (b, h, t), fp32.
//   2. dK/dV kernel: one block per 64-key tile of one kv head (4 warps x 16 keys). It loops over
//      the query heads of its GQA group and over the query tiles that see its keys; per tile:
//        S^T = K Q^T, P^T = exp2(S^T * c - lse2), dV += P^T dO, dP^T = V dO^T,
//        dS^T = P^T (dP^T - Di), dK += dS^T Q            (P^T, dS^T stay in registers)
//      dK, dV are accumulated in registers in a fixed order and written once (dK * scale).
//   3. dQ kernel: one block per 64-query tile of one head; loops over the key tiles it sees:
//        S = Q K^T, P, dP = dO V^T, dS = P (dP - Di), dQ += dS K; written once (dQ * scale).
//   bf16 in, fp32 accumulate (mma.sync m16n8k16), tiles in padded smem ([rows][D + 8] bf16).
// Layouts: q, o, dout, dq [B, T, H, D]; k, v, dk, dv [B, T, Hkv, D]; lse [B, H, T] f32.
// Grids: x = tile index (up to 2^31 - 1), y = heads, z = B.
#include <cuda_runtime.h>

#include <cmath>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/tensor.h"
#include "kernels/attention/attention_common.cuh"
#include "kernels/common/device_utils.cuh"
#include "kernels/common/launch.cuh"

namespace seqmix {
namespace attn {
namespace {

constexpr int kThreads = 128;

// ---- 1. Di = rowsum(dO * O): one warp per (b, t, h) row ----
template <typename T>
__global__ void __launch_bounds__(256)
    attention_flash_bwd_kernel_preprocess(const Params p, int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int64_t w0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t nw = (int64_t(gridDim.x) * blockDim.x) >> 5;
  const T* o = static_cast<const T*>(p.o);
  const T* dout = static_cast<const T*>(p.dout);
  for (int64_t r = w0; r < rows; r += nw) {  // r = (b * T + t) * H + h
    float s = 0.f;
    for (int64_t d = lane; d < p.d; d += 32)
      s += to_f32(o[r * p.d + d]) * to_f32(dout[r * p.d + d]);
    s = kern::warp_sum(s);
    if (lane == 0) {
      const int64_t h = r % p.h, bt = r / p.h, t = bt % p.t, b = bt / p.t;
      p.di[(b * p.h + h) * p.t + t] = s;
    }
  }
}

// ---- 2. dK / dV ----
constexpr int kBkKV = 64;  // keys per block
template <int D>
constexpr int kv_query_tile() {
  return D <= 64 ? 64 : 32;  // keeps dK + dV + S + dP accumulators within the register budget
}
template <int D>
constexpr int dkdv_smem_bytes() {
  return (2 * kBkKV + 2 * kv_query_tile<D>()) * (D + 8) * int(sizeof(bf16)) +
         2 * kv_query_tile<D>() * int(sizeof(float));
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_flash_bwd_kernel_dkdv(const Params p) {
  constexpr int kBq = kv_query_tile<D>();
  constexpr int kLd = D + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* s_k = reinterpret_cast<bf16*>(smem_raw);
  bf16* s_v = s_k + kBkKV * kLd;
  bf16* s_q = s_v + kBkKV * kLd;
  bf16* s_do = s_q + kBq * kLd;
  float* s_lse = reinterpret_cast<float*>(s_do + kBq * kLd);  // base-2, +inf past T
  float* s_di = s_lse + kBq;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int64_t g = blockIdx.y, b = blockIdx.z;
  const int64_t k0 = int64_t(blockIdx.x) * kBkKV;
  const int64_t q_stride = p.h * D, kv_stride = p.hkv * D;
  const int64_t kv_off = (b * p.t * p.hkv + g) * D;
  load_tile_async<kBkKV, D, kThreads>(s_k, static_cast<const bf16*>(p.k) + kv_off, k0, p.t,
                                      kv_stride);
  load_tile_async<kBkKV, D, kThreads>(s_v, static_cast<const bf16*>(p.v) + kv_off, k0, p.t,
                                      kv_stride);
  cp_async_commit();

  int64_t q_begin, q_end;
  query_range(p, k0, k0 + kBkKV, q_begin, q_end);
  const int64_t qt_begin = q_begin / kBq, qt_end = (q_end + kBq - 1) / kBq;
  const int64_t key[2] = {k0 + warp * 16 + gq, k0 + warp * 16 + gq + 8};

  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;

  for (int64_t h = g * p.group; h < (g + 1) * p.group; ++h) {
    const int64_t q_off = (b * p.t * p.h + h) * D;
    const float* lse = p.lse + (b * p.h + h) * p.t;
    const float* di = p.di + (b * p.h + h) * p.t;
    for (int64_t qt = qt_begin; qt < qt_end; ++qt) {
      const int64_t i0 = qt * kBq;
      load_tile_async<kBq, D, kThreads>(s_q, static_cast<const bf16*>(p.q) + q_off, i0, p.t,
                                        q_stride);
      load_tile_async<kBq, D, kThreads>(s_do, static_cast<const bf16*>(p.dout) + q_off, i0, p.t,
                                        q_stride);
      cp_async_commit();
      for (int r = threadIdx.x; r < kBq; r += kThreads) {
        const int64_t i = i0 + r;
        s_lse[r] = i < p.t ? lse[i] * kLog2e : INFINITY;
        s_di[r] = i < p.t ? di[i] : 0.f;
      }
      cp_async_wait<0>();
      __syncthreads();

      const bool edge = i0 + kBq > p.t || k0 + kBkKV > p.t || (p.causal && k0 + kBkKV - 1 > i0) ||
                        (p.window > 0 && k0 <= i0 + kBq - 1 - p.window);
      // S^T = K Q^T (16 keys x kBq queries per warp), then P^T.
      float pt[kBq / 8][4];
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n) pt[n][0] = pt[n][1] = pt[n][2] = pt[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[4];
        load_a(a, s_k, kLd, warp * 16, kk * 16, gq, tq);
#pragma unroll
        for (int n = 0; n < kBq / 8; ++n) {
          uint32_t b0, b1;
          load_bt(b0, b1, s_q, kLd, n * 8, kk * 16, gq, tq);
          mma_16816(pt[n], a, b0, b1);
        }
      }
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = n * 8 + 2 * tq + (e & 1);
          float x = exp2f(pt[n][e] * p.scale_log2 - s_lse[c]);
          if (edge && !visible(p, i0 + c, key[e >> 1])) x = 0.f;
          pt[n][e] = x;
        }
      }
      // dP^T = V dO^T.
      float dpt[kBq / 8][4];
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n) dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a[4];
        load_a(a, s_v, kLd, warp * 16, kk * 16, gq, tq);
#pragma unroll
        for (int n = 0; n < kBq / 8; ++n) {
          uint32_t b0, b1;
          load_bt(b0, b1, s_do, kLd, n * 8, kk * 16, gq, tq);
          mma_16816(dpt[n], a, b0, b1);
        }
      }
      // dV += P^T dO and dK += dS^T Q, with dS^T = P^T (dP^T - Di) (k = the kBq queries).
#pragma unroll
      for (int kk = 0; kk < kBq / 16; ++kk) {
        uint32_t ap[4], as[4];
        ap[0] = pack_bf16(pt[2 * kk][0], pt[2 * kk][1]);
        ap[1] = pack_bf16(pt[2 * kk][2], pt[2 * kk][3]);
        ap[2] = pack_bf16(pt[2 * kk + 1][0], pt[2 * kk + 1][1]);
        ap[3] = pack_bf16(pt[2 * kk + 1][2], pt[2 * kk + 1][3]);
        float ds[2][4];
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int n = 2 * kk + j;
            ds[j][e] = pt[n][e] * (dpt[n][e] - s_di[n * 8 + 2 * tq + (e & 1)]);
          }
        as[0] = pack_bf16(ds[0][0], ds[0][1]);
        as[1] = pack_bf16(ds[0][2], ds[0][3]);
        as[2] = pack_bf16(ds[1][0], ds[1][1]);
        as[3] = pack_bf16(ds[1][2], ds[1][3]);
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
          uint32_t bf[4];
          load_b_trans(bf, s_do, kLd, kk * 16, dn * 16, lane);
          mma_16816(dv[2 * dn], ap, bf[0], bf[1]);
          mma_16816(dv[2 * dn + 1], ap, bf[2], bf[3]);
          load_b_trans(bf, s_q, kLd, kk * 16, dn * 16, lane);
          mma_16816(dk[2 * dn], as, bf[0], bf[1]);
          mma_16816(dk[2 * dn + 1], as, bf[2], bf[3]);
        }
      }
      __syncthreads();  // every warp is done with Q / dO / lse / Di of this tile
    }
  }

  bf16* dk_base = static_cast<bf16*>(p.dk);
  bf16* dv_base = static_cast<bf16*>(p.dv);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= p.t) continue;
    const int64_t off = kv_off + key[r] * kv_stride;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      if (dk_base)
        *reinterpret_cast<uint32_t*>(dk_base + off + n * 8 + 2 * tq) =
            pack_bf16(dk[n][2 * r] * p.scale, dk[n][2 * r + 1] * p.scale);
      if (dv_base)
        *reinterpret_cast<uint32_t*>(dv_base + off + n * 8 + 2 * tq) =
            pack_bf16(dv[n][2 * r], dv[n][2 * r + 1]);
    }
  }
}

// ---- 3. dQ ----
constexpr int kBqQ = 64;  // queries per block (16 per warp)
constexpr int kBkQ = 64;  // keys per tile
template <int D>
constexpr int dq_smem_bytes() {
  return (2 * kBqQ + 2 * kBkQ) * (D + 8) * int(sizeof(bf16));
}

template <int D>
__global__ void __launch_bounds__(kThreads) attention_flash_bwd_kernel_dq(const Params p) {
  constexpr int kLd = D + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* s_q = reinterpret_cast<bf16*>(smem_raw);
  bf16* s_do = s_q + kBqQ * kLd;
  bf16* s_k = s_do + kBqQ * kLd;
  bf16* s_v = s_k + kBkQ * kLd;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int64_t n_qt = (p.t + kBqQ - 1) / kBqQ;
  const int64_t qt = p.causal ? n_qt - 1 - int64_t(blockIdx.x) : int64_t(blockIdx.x);
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / p.group;
  const int64_t q0 = qt * kBqQ;
  const int64_t q_stride = p.h * D, kv_stride = p.hkv * D;
  const int64_t q_off = (b * p.t * p.h + h) * D, kv_off = (b * p.t * p.hkv + g) * D;
  load_tile_async<kBqQ, D, kThreads>(s_q, static_cast<const bf16*>(p.q) + q_off, q0, p.t, q_stride);
  load_tile_async<kBqQ, D, kThreads>(s_do, static_cast<const bf16*>(p.dout) + q_off, q0, p.t,
                                     q_stride);
  cp_async_commit();

  const int64_t row[2] = {q0 + warp * 16 + gq, q0 + warp * 16 + gq + 8};
  float lse2[2], di[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool ok = row[r] < p.t;
    lse2[r] = ok ? p.lse[(b * p.h + h) * p.t + row[r]] * kLog2e : INFINITY;
    di[r] = ok ? p.di[(b * p.h + h) * p.t + row[r]] : 0.f;
  }

  int64_t k_begin, k_end;
  key_range(p, q0, q0 + kBqQ, k_begin, k_end);
  const int64_t kt_begin = k_begin / kBkQ, kt_end = (k_end + kBkQ - 1) / kBkQ;

  float dq[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int64_t kt = kt_begin; kt < kt_end; ++kt) {
    const int64_t k0 = kt * kBkQ;
    load_tile_async<kBkQ, D, kThreads>(s_k, static_cast<const bf16*>(p.k) + kv_off, k0, p.t,
                                       kv_stride);
    load_tile_async<kBkQ, D, kThreads>(s_v, static_cast<const bf16*>(p.v) + kv_off, k0, p.t,
                                       kv_stride);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    const bool edge = k0 + kBkQ > p.t || (p.causal && k0 + kBkQ - 1 > q0) ||
                      (p.window > 0 && k0 <= q0 + kBqQ - 1 - p.window);
    float s[kBkQ / 8][4], dp[kBkQ / 8][4];
#pragma unroll
    for (int n = 0; n < kBkQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t aq[4], ad[4];
      load_a(aq, s_q, kLd, warp * 16, kk * 16, gq, tq);
      load_a(ad, s_do, kLd, warp * 16, kk * 16, gq, tq);
#pragma unroll
      for (int n = 0; n < kBkQ / 8; ++n) {
        uint32_t b0, b1;
        load_bt(b0, b1, s_k, kLd, n * 8, kk * 16, gq, tq);
        mma_16816(s[n], aq, b0, b1);
        load_bt(b0, b1, s_v, kLd, n * 8, kk * 16, gq, tq);
        mma_16816(dp[n], ad, b0, b1);
      }
    }
    // dS = P (dP - Di), P = exp2(S c - lse2) (0 where masked).
#pragma unroll
    for (int n = 0; n < kBkQ / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1;
        float pv = exp2f(s[n][e] * p.scale_log2 - lse2[r]);
        if (edge && !visible(p, row[r], k0 + n * 8 + 2 * tq + (e & 1))) pv = 0.f;
        s[n][e] = pv * (dp[n][e] - di[r]);
      }
    }
    // dQ += dS K (k = the 64 keys of the tile).
#pragma unroll
    for (int kk = 0; kk < kBkQ / 16; ++kk) {
      uint32_t a[4];
      a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t bk[4];
        load_b_trans(bk, s_k, kLd, kk * 16, dn * 16, lane);
        mma_16816(dq[2 * dn], a, bk[0], bk[1]);
        mma_16816(dq[2 * dn + 1], a, bk[2], bk[3]);
      }
    }
    __syncthreads();  // every warp is done with K / V before the next tile load
  }

  bf16* dq_base = static_cast<bf16*>(p.dq) + q_off;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (row[r] >= p.t) continue;
    bf16* out = dq_base + row[r] * q_stride;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(out + n * 8 + 2 * tq) =
          pack_bf16(dq[n][2 * r] * p.scale, dq[n][2 * r + 1] * p.scale);
  }
}

template <int D>
void launch_bwd(const Params& p, cudaStream_t st) {
  if (p.dk || p.dv) {
    constexpr int smem = dkdv_smem_bytes<D>();
    kern::ensure_dynamic_smem(attention_flash_bwd_kernel_dkdv<D>, smem);
    const dim3 grid(unsigned((p.t + kBkKV - 1) / kBkKV), unsigned(p.hkv), unsigned(p.b));
    attention_flash_bwd_kernel_dkdv<D><<<grid, kThreads, smem, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
  if (p.dq) {
    constexpr int smem = dq_smem_bytes<D>();
    kern::ensure_dynamic_smem(attention_flash_bwd_kernel_dq<D>, smem);
    const dim3 grid(unsigned((p.t + kBqQ - 1) / kBqQ), unsigned(p.h), unsigned(p.b));
    attention_flash_bwd_kernel_dq<D><<<grid, kThreads, smem, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
}

}  // namespace

void bwd_preprocess(const Params& p, bool bf16_inputs, cudaStream_t st) {
  const int64_t rows = p.b * p.t * p.h;
  const int threads = 256;
  const int64_t blocks = (rows + threads / 32 - 1) / (threads / 32);
  const unsigned grid = unsigned(blocks < (int64_t(1) << 20) ? blocks : (int64_t(1) << 20));
  if (bf16_inputs)
    attention_flash_bwd_kernel_preprocess<bf16><<<grid, threads, 0, st>>>(p, rows);
  else
    attention_flash_bwd_kernel_preprocess<float><<<grid, threads, 0, st>>>(p, rows);
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace attn

void attention_bwd_cuda(const AttentionBwdArgs& a) {
  attn::Params p = attn::make_params(a.q, a.k, a.scale, a.causal, a.window);
  if (p.t == 0 || p.b == 0) return;
  if (!a.dq.defined() && !a.dk.defined() && !a.dv.defined()) return;
  p.q = a.q.data_ptr();
  p.k = a.k.data_ptr();
  p.v = a.v.data_ptr();
  p.o = const_cast<void*>(a.o.data_ptr());
  p.lse = a.lse.data<float>();
  p.dout = a.dout.data_ptr();
  p.dq = a.dq.defined() ? a.dq.data_ptr() : nullptr;
  p.dk = a.dk.defined() ? a.dk.data_ptr() : nullptr;
  p.dv = a.dv.defined() ? a.dv.data_ptr() : nullptr;
  const Device dev = a.q.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  // Di scratch from the stream-ordered caching allocator (freed back to this stream's pool).
  const Tensor di = Tensor::empty({p.b, p.h, p.t}, DType::F32, dev);
  p.di = di.data<float>();
  const bool bf = a.q.dtype() == DType::BF16;
  attn::bwd_preprocess(p, bf, st);
  if (!bf) {
    attn::simt_bwd(p, st);
  } else if (p.d == 64) {
    attn::launch_bwd<64>(p, st);
  } else if (p.d == 128) {
    attn::launch_bwd<128>(p, st);
  } else {
    SEQMIX_THROW_PLAIN(Unsupported, "attention_bwd: no CUDA kernel for this head dim");
  }
}

}  // namespace seqmix
