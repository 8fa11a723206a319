// CUDA random fills: one thread per group of four elements (one Philox block).
#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/dispatch.h"
#include "core/ops/random_funcs.h"
#include "core/ops/random_impl.h"

namespace seqmix::ops::impl {
namespace {
template <typename T>
__global__ void random_fill_kernel(int kind, T* dst, int64_t n, float a, float b, uint64_t seed,
                                   uint64_t offset) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    dst[i] = random_value<T>(kind, i, a, b, seed, offset);
}
}  // namespace

void random_fill_cuda(int kind, DType t, void* dst, int64_t n, float a, float b, uint64_t seed,
                      uint64_t offset, cudaStream_t stream) {
  if (n == 0) return;
  const int threads = 256;
  const int grid = int(std::clamp<int64_t>((n + threads - 1) / threads, 1, int64_t(1) << 20));
  SEQMIX_DISPATCH_FLOAT(t, "random", T, {
    random_fill_kernel<T>
        <<<grid, threads, 0, stream>>>(kind, static_cast<T*>(dst), n, a, b, seed, offset);
    SEQMIX_LAUNCH_CHECK();
  });
}
}  // namespace seqmix::ops::impl
