// CUDA softmax / log_softmax over rows: one block per row (grid-stride over rows). Forward makes
// one online pass (running max and rescaled sum per thread, merged across the block) and one
// write pass; backward one reduction pass and one write pass. Rows stay in L2 between passes.
#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "kernels/common/device_utils.cuh"
#include "kernels/softmax/softmax.h"

namespace seqmix {
namespace {

template <typename A>
__device__ __forceinline__ A exp_(A x);
template <>
__device__ __forceinline__ float exp_(float x) {
  return expf(x);
}
template <>
__device__ __forceinline__ double exp_(double x) {
  return exp(x);
}

template <typename T>
__global__ void softmax_rows_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                                        int64_t c, bool log) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * c;
    T* yr = y + r * c;
    A m = A(-INFINITY), s = A(0);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A v = to_acc<A>(xr[j]);
      if (v > m) {
        s = s * exp_(m - v) + A(1);
        m = v;
      } else if (v != A(-INFINITY)) {
        s += exp_(v - m);  // NaN propagates here
      }
    }
    const A gm = kern::block_max(m, smem);
    const A gs = kern::block_sum(m == A(-INFINITY) ? A(0) : s * exp_(m - gm), smem);
    const A lse = gm + (sizeof(A) == 8 ? A(::log(double(gs))) : A(logf(float(gs))));
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A v = to_acc<A>(xr[j]) - lse;
      yr[j] = from_acc<T>(log ? v : exp_(v));
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void softmax_rows_bwd_kernel(const T* __restrict__ y, const T* dy, T* dx, int64_t n,
                                        int64_t c, bool log) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* yr = y + r * c;
    const T* gr = dy + r * c;
    T* dr = dx + r * c;
    A s = A(0);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A g = to_acc<A>(gr[j]);
      s += log ? g : g * to_acc<A>(yr[j]);
    }
    s = kern::block_sum(s, smem);
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const A yv = to_acc<A>(yr[j]), g = to_acc<A>(gr[j]);
      dr[j] = from_acc<T>(log ? g - exp_(yv) * s : yv * (g - s));
    }
    __syncthreads();
  }
}

int threads_for(int64_t c) {
  return c <= 128 ? 32 : c <= 1024 ? 128 : c <= 4096 ? 256 : 512;
}
int grid_for(int64_t n) {
  return int(std::clamp<int64_t>(n, 1, int64_t(1) << 20));
}

}  // namespace

void softmax_fwd_cuda(const SoftmaxFwdArgs& a) {
  const int64_t c = a.x.size(-1), n = c ? a.x.numel() / c : 0;
  if (n == 0) return;
  cudaStream_t st = cuda::current_stream(a.x.device().index);
  SEQMIX_DISPATCH_FLOAT(a.x.dtype(), "softmax", T, {
    softmax_rows_fwd_kernel<T>
        <<<grid_for(n), threads_for(c), 0, st>>>(a.x.data<T>(), a.y.data<T>(), n, c, a.log);
    SEQMIX_LAUNCH_CHECK();
  });
}

void softmax_bwd_cuda(const SoftmaxBwdArgs& a) {
  const int64_t c = a.y.size(-1), n = c ? a.y.numel() / c : 0;
  if (n == 0) return;
  cudaStream_t st = cuda::current_stream(a.y.device().index);
  SEQMIX_DISPATCH_FLOAT(a.y.dtype(), "softmax_bwd", T, {
    softmax_rows_bwd_kernel<T><<<grid_for(n), threads_for(c), 0, st>>>(
        a.y.data<T>(), a.dy.data<T>(), a.dx.data<T>(), n, c, a.log);
    SEQMIX_LAUNCH_CHECK();
  });
}

}  // namespace seqmix
