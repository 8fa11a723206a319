// CUDA attention for f32 inputs: a simple SIMT correctness path (no tensor cores), D <= 256.
//   forward: one warp per query row, lanes split D (8 values per lane at most), online softmax
//            over the visible keys, fp32 throughout.
//   backward (after the shared Di = rowsum(dO * O) preprocess):
//     dQ: one warp per query row: dq = scale * sum_j p_ij (dO_i . v_j - Di) k_j
//     dK/dV: one warp per key row of one kv head, looping over its group's query heads and the
//            queries that see it: dv_j = sum p_ij dO_i, dk_j = scale * sum dS_ij q_i.
//   Every output row is owned by one warp and summed in a fixed order: deterministic.
// Layouts as in attention.h; lse [B, H, T] f32. Grid: x = row groups of 4, y = heads, z = B.
#include <cuda_runtime.h>

#include <cmath>

#include "core/cuda/cuda_check.h"
#include "kernels/attention/attention_common.cuh"
#include "kernels/common/device_utils.cuh"

namespace seqmix::attn {
namespace {

constexpr int kWarps = 4;
constexpr int kPer = 8;  // values per lane: D <= 32 * kPer

__device__ __forceinline__ void load_row(float (&x)[kPer], const float* row, int64_t d, int lane) {
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int64_t i = lane + 32 * c;
    x[c] = i < d ? row[i] : 0.f;
  }
}
__device__ __forceinline__ float dot_row(const float (&x)[kPer], const float* row, int64_t d,
                                         int lane) {
  float s = 0.f;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int64_t i = lane + 32 * c;
    if (i < d) s += x[c] * row[i];
  }
  return kern::warp_sum(s);
}
__device__ __forceinline__ void store_row(float* row, const float (&x)[kPer], float scale,
                                          int64_t d, int lane) {
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int64_t i = lane + 32 * c;
    if (i < d) row[i] = x[c] * scale;
  }
}

__global__ void __launch_bounds__(kWarps * 32) attention_simt_fwd_kernel(const Params p) {
  const int lane = threadIdx.x & 31;
  const int64_t i = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (i >= p.t) return;
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / p.group;
  const float* q = static_cast<const float*>(p.q) + ((b * p.t + i) * p.h + h) * p.d;
  const float* k = static_cast<const float*>(p.k) + (b * p.t * p.hkv + g) * p.d;
  const float* v = static_cast<const float*>(p.v) + (b * p.t * p.hkv + g) * p.d;
  const int64_t kv_stride = p.hkv * p.d;
  float qr[kPer], acc[kPer];
  load_row(qr, q, p.d, lane);
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.f;
  int64_t j0, j1;
  key_range(p, i, i + 1, j0, j1);
  float m = -INFINITY, l = 0.f;
  for (int64_t j = j0; j < j1; ++j) {
    const float s = dot_row(qr, k + j * kv_stride, p.d, lane) * p.scale;
    const float m_new = fmaxf(m, s);
    const float alpha = expf(m - m_new), e = expf(s - m_new);
    l = l * alpha + e;
    const float* vj = v + j * kv_stride;
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int64_t x = lane + 32 * c;
      if (x < p.d) acc[c] = acc[c] * alpha + e * vj[x];
    }
    m = m_new;
  }
  store_row(static_cast<float*>(p.o) + ((b * p.t + i) * p.h + h) * p.d, acc, 1.f / l, p.d, lane);
  if (p.lse && lane == 0) p.lse[(b * p.h + h) * p.t + i] = m + logf(l);
}

__global__ void __launch_bounds__(kWarps * 32) attention_simt_bwd_kernel_dq(const Params p) {
  const int lane = threadIdx.x & 31;
  const int64_t i = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (i >= p.t) return;
  const int64_t h = blockIdx.y, b = blockIdx.z, g = h / p.group;
  const int64_t row = ((b * p.t + i) * p.h + h) * p.d;
  const float* k = static_cast<const float*>(p.k) + (b * p.t * p.hkv + g) * p.d;
  const float* v = static_cast<const float*>(p.v) + (b * p.t * p.hkv + g) * p.d;
  const int64_t kv_stride = p.hkv * p.d;
  float qr[kPer], dor[kPer], dq[kPer];
  load_row(qr, static_cast<const float*>(p.q) + row, p.d, lane);
  load_row(dor, static_cast<const float*>(p.dout) + row, p.d, lane);
#pragma unroll
  for (int c = 0; c < kPer; ++c) dq[c] = 0.f;
  const float lse = p.lse[(b * p.h + h) * p.t + i], di = p.di[(b * p.h + h) * p.t + i];
  int64_t j0, j1;
  key_range(p, i, i + 1, j0, j1);
  for (int64_t j = j0; j < j1; ++j) {
    const float* kj = k + j * kv_stride;
    const float pr = expf(dot_row(qr, kj, p.d, lane) * p.scale - lse);
    const float ds = pr * (dot_row(dor, v + j * kv_stride, p.d, lane) - di);
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int64_t x = lane + 32 * c;
      if (x < p.d) dq[c] += ds * kj[x];
    }
  }
  store_row(static_cast<float*>(p.dq) + row, dq, p.scale, p.d, lane);
}

__global__ void __launch_bounds__(kWarps * 32) attention_simt_bwd_kernel_dkdv(const Params p) {
  const int lane = threadIdx.x & 31;
  const int64_t j = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (j >= p.t) return;
  const int64_t g = blockIdx.y, b = blockIdx.z;
  const int64_t krow = ((b * p.t + j) * p.hkv + g) * p.d;
  float kr[kPer], vr[kPer], dk[kPer], dv[kPer];
  load_row(kr, static_cast<const float*>(p.k) + krow, p.d, lane);
  load_row(vr, static_cast<const float*>(p.v) + krow, p.d, lane);
#pragma unroll
  for (int c = 0; c < kPer; ++c) dk[c] = dv[c] = 0.f;
  int64_t i0, i1;
  query_range(p, j, j + 1, i0, i1);
  for (int64_t h = g * p.group; h < (g + 1) * p.group; ++h) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t row = ((b * p.t + i) * p.h + h) * p.d;
      const float* qi = static_cast<const float*>(p.q) + row;
      const float* doi = static_cast<const float*>(p.dout) + row;
      const float lse = p.lse[(b * p.h + h) * p.t + i], di = p.di[(b * p.h + h) * p.t + i];
      const float pr = expf(dot_row(kr, qi, p.d, lane) * p.scale - lse);
      const float ds = pr * (dot_row(vr, doi, p.d, lane) - di);
#pragma unroll
      for (int c = 0; c < kPer; ++c) {
        const int64_t x = lane + 32 * c;
        if (x < p.d) {
          dv[c] += pr * doi[x];
          dk[c] += ds * qi[x];
        }
      }
    }
  }
  if (p.dk) store_row(static_cast<float*>(p.dk) + krow, dk, p.scale, p.d, lane);
  if (p.dv) store_row(static_cast<float*>(p.dv) + krow, dv, 1.f, p.d, lane);
}

dim3 grid_for(const Params& p, int64_t heads) {
  return dim3(unsigned((p.t + kWarps - 1) / kWarps), unsigned(heads), unsigned(p.b));
}

}  // namespace

void simt_fwd(const Params& p, cudaStream_t st) {
  attention_simt_fwd_kernel<<<grid_for(p, p.h), kWarps * 32, 0, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

void simt_bwd(const Params& p, cudaStream_t st) {
  if (p.dk || p.dv) {
    attention_simt_bwd_kernel_dkdv<<<grid_for(p, p.hkv), kWarps * 32, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
  if (p.dq) {
    attention_simt_bwd_kernel_dq<<<grid_for(p, p.h), kWarps * 32, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
}

}  // namespace seqmix::attn
