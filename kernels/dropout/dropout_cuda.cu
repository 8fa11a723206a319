// CUDA dropout: one thread per element (grid-stride); the mask comes from Philox at (seed,
// offset, i), so it matches the CPU bit for bit and is never stored.
#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "kernels/dropout/dropout.h"
#include "kernels/dropout/dropout_funcs.h"

namespace seqmix {
namespace {
template <typename T>
__global__ void dropout_apply_kernel(const T* in, T* out, int64_t n, float p, acc_t<T> scale,
                                     uint64_t seed, uint64_t offset) {
  using A = acc_t<T>;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = from_acc<T>(dropout_detail::apply(to_acc<A>(in[i]), i, p, scale, seed, offset));
}
}  // namespace

void dropout_apply_cuda(const DropoutArgs& a) {
  const int64_t n = a.in.numel();
  if (n == 0) return;
  cudaStream_t st = cuda::current_stream(a.in.device().index);
  const int grid = int(std::clamp<int64_t>((n + 255) / 256, 1, int64_t(1) << 20));
  SEQMIX_DISPATCH_FLOAT(a.in.dtype(), "dropout", T, {
    using A = acc_t<T>;
    dropout_apply_kernel<T><<<grid, 256, 0, st>>>(a.in.data<T>(), a.out.data<T>(), n, float(a.p),
                                                  A(1) / (A(1) - A(float(a.p))), a.seed, a.offset);
    SEQMIX_LAUNCH_CHECK();
  });
}
}  // namespace seqmix
