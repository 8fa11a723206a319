// CUDA cross-entropy. Forward: one block per row computes lse in one online pass over the
// logits (16-byte vector loads when the row allows), then row losses are summed by a single
// block in row order (deterministic) into the loss and the count. Backward: one block per row
// writes (softmax - onehot) * dloss / count, reading dloss and count from device memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "kernels/common/device_utils.cuh"
#include "kernels/cross_entropy/cross_entropy.h"

namespace seqmix {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float exp_(float x) {
  return expf(x);
}
__device__ __forceinline__ double exp_(double x) {
  return exp(x);
}
__device__ __forceinline__ float log_(float x) {
  return logf(x);
}
__device__ __forceinline__ double log_(double x) {
  return log(x);
}

template <typename A>
struct Online {
  A m = A(-INFINITY), s = A(0);
  __device__ __forceinline__ void push(A v) {
    if (v > m) {
      s = s * exp_(m - v) + A(1);
      m = v;
    } else if (v != A(-INFINITY)) {
      s += exp_(v - m);
    }
  }
};

// Calls f(j, value) for every element of a row, vectorised when possible.
template <typename T, typename F>
__device__ __forceinline__ void for_row(const T* row, int64_t v, bool vec, F&& f) {
  using A = acc_t<T>;
  if (vec) {
    constexpr int N = kern::Vec<T>::N;
    const auto* rv = reinterpret_cast<const kern::Vec<T>*>(row);
    for (int64_t k = threadIdx.x; k < v / N; k += blockDim.x) {
      const kern::Vec<T> x = rv[k];
#pragma unroll
      for (int i = 0; i < N; ++i) f(k * N + i, to_acc<A>(x.v[i]));
    }
  } else {
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) f(j, to_acc<A>(row[j]));
  }
}

template <typename T, typename I, typename S>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_fwd_kernel_rows(const T* __restrict__ x, const I* __restrict__ t,
                                  S* __restrict__ lse, S* __restrict__ row_loss, int64_t n,
                                  int64_t v, int64_t ignore_index, bool vec) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * v;
    Online<A> o;
    for_row(xr, v, vec, [&](int64_t, A val) { o.push(val); });
    const A gm = kern::block_max(o.m, smem);
    const A gs = kern::block_sum(o.m == A(-INFINITY) ? A(0) : o.s * exp_(o.m - gm), smem);
    if (threadIdx.x == 0) {
      const A l = gm + log_(gs);
      lse[r] = S(l);
      const int64_t tr = int64_t(t[r]);
      S loss;
      if (tr == ignore_index)
        loss = S(0);
      else if (tr < 0 || tr >= v)
        loss = S(NAN);  // invalid target: make the total loss NaN
      else
        loss = S(l - to_acc<A>(xr[tr]));
      row_loss[r] = loss;
    }
    __syncthreads();
  }
}

template <typename I, typename S>
__global__ void __launch_bounds__(1024)
    cross_entropy_fwd_kernel_total(const S* __restrict__ row_loss, const I* __restrict__ t,
                                   int64_t n, int64_t ignore_index, bool mean, S* loss, S* count) {
  __shared__ S smem[32];
  S sum = S(0), cnt = S(0);
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
    sum += row_loss[r];
    cnt += int64_t(t[r]) != ignore_index ? S(1) : S(0);
  }
  sum = kern::block_sum(sum, smem);
  cnt = kern::block_sum(cnt, smem);
  if (threadIdx.x == 0) {
    *count = cnt;
    *loss = mean ? sum / cnt : sum;
  }
}

template <typename T, typename I, typename S>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_bwd_kernel(const T* x, const I* __restrict__ t, const S* __restrict__ lse,
                             const S* __restrict__ count, const S* __restrict__ dloss, T* dx,
                             int64_t n, int64_t v, int64_t ignore_index, bool mean, bool vec) {
  using A = acc_t<T>;
  const A scale = A(*dloss) / (mean ? A(*count) : A(1));
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * v;
    T* dr = dx + r * v;
    const int64_t tr = int64_t(t[r]);
    const bool ignored = tr == ignore_index;
    const A l = A(lse[r]);
    if (vec) {
      constexpr int N = kern::Vec<T>::N;
      const auto* rv = reinterpret_cast<const kern::Vec<T>*>(xr);
      auto* dv = reinterpret_cast<kern::Vec<T>*>(dr);
      for (int64_t k = threadIdx.x; k < v / N; k += blockDim.x) {
        const kern::Vec<T> xin = rv[k];
        kern::Vec<T> out;
#pragma unroll
        for (int i = 0; i < N; ++i) {
          const int64_t j = k * N + i;
          const A p = exp_(to_acc<A>(xin.v[i]) - l);
          out.v[i] = from_acc<T>(ignored ? A(0) : scale * (p - (j == tr ? A(1) : A(0))));
        }
        dv[k] = out;
      }
    } else {
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
        const A p = exp_(to_acc<A>(xr[j]) - l);
        dr[j] = from_acc<T>(ignored ? A(0) : scale * (p - (j == tr ? A(1) : A(0))));
      }
    }
  }
}

int grid_for(int64_t n) {
  return int(std::clamp<int64_t>(n, 1, int64_t(1) << 20));
}

template <typename T>
bool can_vectorize(const void* p, int64_t v) {
  return kern::aligned16(p) && v % kern::Vec<T>::N == 0;
}

}  // namespace

void cross_entropy_fwd_cuda(const CrossEntropyFwdArgs& a) {
  const int64_t n = a.logits.size(0), v = a.logits.size(1);
  const Device dev = a.logits.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  SEQMIX_DISPATCH_FLOAT(a.logits.dtype(), "cross_entropy", T, {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    SEQMIX_DISPATCH_INDEX(a.targets.dtype(), "cross_entropy", I, {
      Tensor row_loss = Tensor::empty({std::max<int64_t>(n, 1)}, a.lse.dtype(), dev);
      const bool vec = can_vectorize<T>(a.logits.data_ptr(), v);
      if (n > 0) {
        cross_entropy_fwd_kernel_rows<T, I, S><<<grid_for(n), kThreads, 0, st>>>(
            a.logits.data<T>(), a.targets.data<I>(), a.lse.data<S>(), row_loss.data<S>(), n, v,
            a.ignore_index, vec);
        SEQMIX_LAUNCH_CHECK();
      }
      cross_entropy_fwd_kernel_total<I, S><<<1, 1024, 0, st>>>(
          row_loss.data<S>(), a.targets.data<I>(), n, a.ignore_index,
          a.reduction == LossReduction::Mean, a.loss.data<S>(), a.count.data<S>());
      SEQMIX_LAUNCH_CHECK();
    });
  });
}

void cross_entropy_bwd_cuda(const CrossEntropyBwdArgs& a) {
  const int64_t n = a.logits.size(0), v = a.logits.size(1);
  if (n == 0) return;
  cudaStream_t st = cuda::current_stream(a.logits.device().index);
  SEQMIX_DISPATCH_FLOAT(a.logits.dtype(), "cross_entropy_bwd", T, {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    SEQMIX_DISPATCH_INDEX(a.targets.dtype(), "cross_entropy_bwd", I, {
      const bool vec =
          can_vectorize<T>(a.logits.data_ptr(), v) && can_vectorize<T>(a.dlogits.data_ptr(), v);
      cross_entropy_bwd_kernel<T, I, S><<<grid_for(n), kThreads, 0, st>>>(
          a.logits.data<T>(), a.targets.data<I>(), a.lse.data<S>(), a.count.data<S>(),
          a.dloss.data<S>(), a.dlogits.data<T>(), n, v, a.ignore_index,
          a.reduction == LossReduction::Mean, vec);
      SEQMIX_LAUNCH_CHECK();
    });
  });
}

}  // namespace seqmix
