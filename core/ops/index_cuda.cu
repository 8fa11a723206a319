// CUDA gather_dim / scatter_dim: one thread per (outer, inner) position. Out-of-range indices
// read as zero (gather) or are dropped (scatter) instead of touching memory out of bounds.
#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/dispatch.h"
#include "core/ops/index_impl.h"

namespace seqmix::ops::impl {
namespace {
template <typename T>
__global__ void gather_dim_kernel(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t r,
                                  int64_t inner) {
  const int64_t n = outer * inner, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += step) {
    const int64_t o = p / inner, i = p % inner, k = idx[p];
    out[p] = (k >= 0 && k < r) ? x[(o * r + k) * inner + i] : T();
  }
}
template <typename T>
__global__ void scatter_dim_kernel(T* out, const int64_t* idx, const T* src, int64_t outer,
                                   int64_t r, int64_t inner) {
  const int64_t n = outer * inner, step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += step) {
    const int64_t o = p / inner, i = p % inner, k = idx[p];
    if (k >= 0 && k < r) out[(o * r + k) * inner + i] = src[p];
  }
}
int grid_of(int64_t n) {
  return int(std::clamp<int64_t>((n + 255) / 256, 1, int64_t(1) << 20));
}
}  // namespace

void gather_dim_cuda(DType t, const void* x, const int64_t* idx, void* out, int64_t outer,
                     int64_t r, int64_t inner, cudaStream_t stream) {
  if (outer * inner == 0) return;
  SEQMIX_DISPATCH_ALL(t, "gather_dim", T, {
    gather_dim_kernel<T><<<grid_of(outer * inner), 256, 0, stream>>>(
        static_cast<const T*>(x), idx, static_cast<T*>(out), outer, r, inner);
    SEQMIX_LAUNCH_CHECK();
  });
}
void scatter_dim_cuda(DType t, void* out, const int64_t* idx, const void* src, int64_t outer,
                      int64_t r, int64_t inner, cudaStream_t stream) {
  if (outer * inner == 0) return;
  SEQMIX_DISPATCH_ALL(t, "scatter_dim", T, {
    scatter_dim_kernel<T><<<grid_of(outer * inner), 256, 0, stream>>>(
        static_cast<T*>(out), idx, static_cast<const T*>(src), outer, r, inner);
    SEQMIX_LAUNCH_CHECK();
  });
}
}  // namespace seqmix::ops::impl
