// CUDA kernels of the optimizer: the global gradient norm (two deterministic passes, no atomics)
// and the fused multi-tensor AdamW update (one launch per step over a device chunk table).
//  grad_norm_partials_kernel: one 256-thread block per chunk; per-thread fp64 sums over a fixed
//      stride (float4 loads when the chunk is 16-byte aligned), then a fixed warp/block tree.
//  grad_norm_finalize_kernel: one 1024-thread block sums the partials (fixed stride + tree) and
//      writes norm, scale and the non-finite flag.
//  adamw_multi_tensor_kernel: one 256-thread block per chunk, float4 when p, g, m, v are aligned;
//      every block reads the non-finite flag and returns when it is set; block 0 advances the
//      double-buffered applied-step counter. Math in optim_kernels.h (shared with the CPU).
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "kernels/common/device_utils.cuh"
#include "train/optim/optim_kernels.h"

namespace seqmix::optim_detail {
namespace {

constexpr int kNormThreads = 256;
constexpr int kFinalThreads = 1024;
constexpr int kAdamThreads = 256;

__global__ void __launch_bounds__(kNormThreads)
    grad_norm_partials_kernel(const NormChunk* __restrict__ chunks, double* __restrict__ partials) {
  __shared__ double smem[32];
  const NormChunk c = chunks[blockIdx.x];
  double s = 0.0;
  int64_t start = 0;
  if (kern::aligned16(c.g)) {
    const auto* g4 = reinterpret_cast<const float4*>(c.g);
    const int64_t n4 = c.n / 4;
    for (int64_t k = threadIdx.x; k < n4; k += blockDim.x) {
      const float4 x = g4[k];
      s += double(x.x) * double(x.x);
      s += double(x.y) * double(x.y);
      s += double(x.z) * double(x.z);
      s += double(x.w) * double(x.w);
    }
    start = n4 * 4;
  }
  for (int64_t i = start + threadIdx.x; i < c.n; i += blockDim.x) {
    const double x = c.g[i];
    s += x * x;
  }
  s = kern::block_sum(s, smem);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kFinalThreads)
    grad_norm_finalize_kernel(const double* __restrict__ partials, int64_t nchunks, double max_norm,
                              float* norm, float* scale, int32_t* nonfinite) {
  __shared__ double smem[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < nchunks; i += blockDim.x) s += partials[i];
  s = kern::block_sum(s, smem);
  if (threadIdx.x == 0) {
    const double nrm = sqrt(s);
    *norm = float(nrm);
    *nonfinite = isfinite(s) ? 0 : 1;
    *scale = max_norm > 0 ? float(fmin(1.0, max_norm / (nrm + 1e-6))) : 1.0f;
  }
}

__device__ __forceinline__ void adamw4(float4& p, const float4& g, float4& m, float4& v, float sc,
                                       float bc1, float bc2, float wd, const AdamWScalars& s) {
  adamw_element(p.x, g.x, m.x, v.x, sc, bc1, bc2, wd, s);
  adamw_element(p.y, g.y, m.y, v.y, sc, bc1, bc2, wd, s);
  adamw_element(p.z, g.z, m.z, v.z, sc, bc1, bc2, wd, s);
  adamw_element(p.w, g.w, m.w, v.w, sc, bc1, bc2, wd, s);
}

__global__ void __launch_bounds__(kAdamThreads)
    adamw_multi_tensor_kernel(const AdamWChunk* __restrict__ chunks, int64_t nchunks,
                              AdamWScalars s, const float* __restrict__ scale,
                              const int32_t* __restrict__ nonfinite,
                              const int64_t* __restrict__ count_in,
                              int64_t* __restrict__ count_out) {
  const bool skip = nonfinite != nullptr && *nonfinite != 0;
  const int64_t applied = *count_in;
  if (blockIdx.x == 0 && threadIdx.x == 0) *count_out = applied + (skip ? 0 : 1);
  if (skip || blockIdx.x >= nchunks) return;
  const int64_t t = applied + 1;
  const float bc1 = float(1.0 - pow_int(s.beta1_d, t));
  const float bc2 = float(1.0 - pow_int(s.beta2_d, t));
  const float sc = scale != nullptr ? *scale : 1.0f;
  const AdamWChunk c = chunks[blockIdx.x];
  const float wd = c.decay ? s.weight_decay : 0.0f;
  int64_t start = 0;
  if (c.vec) {
    auto* p4 = reinterpret_cast<float4*>(c.p);
    const auto* g4 = reinterpret_cast<const float4*>(c.g);
    auto* m4 = reinterpret_cast<float4*>(c.m);
    auto* v4 = reinterpret_cast<float4*>(c.v);
    const int64_t n4 = c.n / 4;
    for (int64_t k = threadIdx.x; k < n4; k += blockDim.x) {
      float4 p = p4[k], m = m4[k], v = v4[k];
      const float4 g = g4[k];
      adamw4(p, g, m, v, sc, bc1, bc2, wd, s);
      p4[k] = p;
      m4[k] = m;
      v4[k] = v;
    }
    start = n4 * 4;
  }
  for (int64_t i = start + threadIdx.x; i < c.n; i += blockDim.x) {
    float p = c.p[i], m = c.m[i], v = c.v[i];
    adamw_element(p, c.g[i], m, v, sc, bc1, bc2, wd, s);
    c.p[i] = p;
    c.m[i] = m;
    c.v[i] = v;
  }
}

}  // namespace

void grad_norm_partials_cuda(const NormChunk* chunks, int64_t nchunks, double* partials,
                             cudaStream_t stream) {
  if (nchunks == 0) return;
  grad_norm_partials_kernel<<<unsigned(nchunks), kNormThreads, 0, stream>>>(chunks, partials);
  SEQMIX_LAUNCH_CHECK();
}

void grad_norm_finalize_cuda(const double* partials, int64_t nchunks, double max_norm, float* norm,
                             float* scale, int32_t* nonfinite, cudaStream_t stream) {
  grad_norm_finalize_kernel<<<1, kFinalThreads, 0, stream>>>(partials, nchunks, max_norm, norm,
                                                             scale, nonfinite);
  SEQMIX_LAUNCH_CHECK();
}

void adamw_step_cuda(const AdamWChunk* chunks, int64_t nchunks, const AdamWScalars& s,
                     const float* scale, const int32_t* nonfinite, const int64_t* count_in,
                     int64_t* count_out, cudaStream_t stream) {
  const unsigned grid = unsigned(nchunks > 0 ? nchunks : 1);
  adamw_multi_tensor_kernel<<<grid, kAdamThreads, 0, stream>>>(chunks, nchunks, s, scale, nonfinite,
                                                               count_in, count_out);
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace seqmix::optim_detail
