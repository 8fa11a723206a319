// CUDA RMSNorm / LayerNorm.
//  forward:  one warp per row (4 rows per 128-thread block, grid-stride), 16-byte loads when the
//            row allows; passes over the row: [mean], variance, write (rows stay in L1/L2).
//  backward: dx with one warp per row (two passes); dw/db as a column reduction of dy*xh and dy
//            over fixed row chunks into an fp32 partial [chunks, C], then one thread per column
//            adds the chunks in order into dw/db (deterministic, no atomics).
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "kernels/common/device_utils.cuh"
#include "kernels/norm/norm.h"

namespace seqmix {
namespace {

constexpr int kWarps = 4;

// A [C] parameter in the row dtype T or in f32 (null = absent).
template <typename T>
struct ParamPtr {
  const void* p = nullptr;
  bool f32 = false;
  __device__ __forceinline__ acc_t<T> at(int64_t j, acc_t<T> absent) const {
    if (!p) return absent;
    return f32 ? acc_t<T>(static_cast<const float*>(p)[j])
               : to_acc<acc_t<T>>(static_cast<const T*>(p)[j]);
  }
};

__device__ __forceinline__ float rsqrt_(float x) {
  return rsqrtf(x);
}
__device__ __forceinline__ double rsqrt_(double x) {
  return 1.0 / sqrt(x);
}

// Calls f(j, x_j) over the row for this lane (vectorised when possible).
template <typename T, typename F>
__device__ __forceinline__ void lane_row(const T* row, int64_t c, bool vec, int lane, F&& f) {
  using A = acc_t<T>;
  if (vec) {
    constexpr int N = kern::Vec<T>::N;
    const auto* rv = reinterpret_cast<const kern::Vec<T>*>(row);
    for (int64_t k = lane; k < c / N; k += 32) {
      const kern::Vec<T> v = rv[k];
#pragma unroll
      for (int i = 0; i < N; ++i) f(k * N + i, to_acc<A>(v.v[i]));
    }
  } else {
    for (int64_t j = lane; j < c; j += 32) f(j, to_acc<A>(row[j]));
  }
}

template <typename T, typename S>
__global__ void __launch_bounds__(kWarps * 32)
    norm_fwd_kernel(bool layer, const T* __restrict__ x, ParamPtr<T> w, ParamPtr<T> b,
                    T* __restrict__ y, S* __restrict__ mean_out, S* __restrict__ rstd_out,
                    int64_t n, int64_t c, acc_t<T> eps, bool vec) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warp0 = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t nwarps = int64_t(gridDim.x) * kWarps;
  for (int64_t r = warp0; r < n; r += nwarps) {
    const T* xr = x + r * c;
    A mu = A(0);
    if (layer) {
      A s = A(0);
      lane_row(xr, c, vec, lane, [&](int64_t, A v) { s += v; });
      mu = kern::warp_sum(s) / A(c);
    }
    A ss = A(0);
    lane_row(xr, c, vec, lane, [&](int64_t, A v) { ss += (v - mu) * (v - mu); });
    const A rs = rsqrt_(kern::warp_sum(ss) / A(c) + eps);
    T* yr = y + r * c;
    if (vec) {
      constexpr int N = kern::Vec<T>::N;
      const auto* rv = reinterpret_cast<const kern::Vec<T>*>(xr);
      auto* yv = reinterpret_cast<kern::Vec<T>*>(yr);
      for (int64_t k = lane; k < c / N; k += 32) {
        const kern::Vec<T> v = rv[k];
        kern::Vec<T> o;
#pragma unroll
        for (int i = 0; i < N; ++i) {
          const int64_t j = k * N + i;
          o.v[i] = from_acc<T>((to_acc<A>(v.v[i]) - mu) * rs * w.at(j, A(1)) + b.at(j, A(0)));
        }
        yv[k] = o;
      }
    } else {
      for (int64_t j = lane; j < c; j += 32)
        yr[j] = from_acc<T>((to_acc<A>(xr[j]) - mu) * rs * w.at(j, A(1)) + b.at(j, A(0)));
    }
    if (lane == 0) {
      if (mean_out) mean_out[r] = S(mu);
      if (rstd_out) rstd_out[r] = S(rs);
    }
  }
}

template <typename T, typename S>
__global__ void __launch_bounds__(kWarps * 32)
    norm_bwd_dx_kernel(bool layer, const T* __restrict__ x, ParamPtr<T> w,
                       const S* __restrict__ mean, const S* __restrict__ rstd,
                       const T* __restrict__ dy, T* __restrict__ dx, int64_t n, int64_t c) {
  using A = acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warp0 = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t nwarps = int64_t(gridDim.x) * kWarps;
  for (int64_t r = warp0; r < n; r += nwarps) {
    const T* xr = x + r * c;
    const T* gr = dy + r * c;
    const A mu = layer ? A(mean[r]) : A(0), rs = A(rstd[r]);
    A sg = A(0), sgx = A(0);
    for (int64_t j = lane; j < c; j += 32) {
      const A xh = (to_acc<A>(xr[j]) - mu) * rs;
      const A g = to_acc<A>(gr[j]) * w.at(j, A(1));
      sg += g;
      sgx += g * xh;
    }
    sg = layer ? kern::warp_sum(sg) / A(c) : A(0);
    sgx = kern::warp_sum(sgx) / A(c);
    T* dr = dx + r * c;
    for (int64_t j = lane; j < c; j += 32) {
      const A xh = (to_acc<A>(xr[j]) - mu) * rs;
      const A g = to_acc<A>(gr[j]) * w.at(j, A(1));
      dr[j] = from_acc<T>(rs * (g - sg - xh * sgx));
    }
  }
}

constexpr int kColX = 32, kColY = 8;

// partial_w[chunk, c] = sum over rows of the chunk of dy * xh; partial_b likewise of dy.
template <typename T, typename S>
__global__ void __launch_bounds__(kColX* kColY)
    norm_bwd_dparam_kernel(bool layer, const T* __restrict__ x, const S* __restrict__ mean,
                           const S* __restrict__ rstd, const T* __restrict__ dy,
                           S* __restrict__ partial_w, S* __restrict__ partial_b, int64_t n,
                           int64_t c, int64_t rows_per_chunk) {
  using A = acc_t<T>;
  __shared__ A sw[kColY][kColX + 1];
  __shared__ A sb[kColY][kColX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = int64_t(blockIdx.x) * kColX + tx;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n;
  A aw = A(0), ab = A(0);
  if (col < c) {
    for (int64_t r = r0 + ty; r < r1; r += kColY) {
      const A mu = layer ? A(mean[r]) : A(0);
      const A g = to_acc<A>(dy[r * c + col]);
      aw += g * (to_acc<A>(x[r * c + col]) - mu) * A(rstd[r]);
      ab += g;
    }
  }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && col < c) {
#pragma unroll
    for (int k = 1; k < kColY; ++k) {
      aw += sw[k][tx];
      ab += sb[k][tx];
    }
    partial_w[int64_t(blockIdx.y) * c + col] = S(aw);
    partial_b[int64_t(blockIdx.y) * c + col] = S(ab);
  }
}

// dst[c] += sum_k partial[k, c] for k in order. dst is f32 or T.
template <typename T, typename S>
__global__ void norm_bwd_finalize_kernel(const S* __restrict__ partial, int64_t chunks, int64_t c,
                                         void* dst, bool dst_f32) {
  const int64_t col = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= c || !dst) return;
  S s = S(0);
  for (int64_t k = 0; k < chunks; ++k) s += partial[k * c + col];
  if (dst_f32) {
    float* d = static_cast<float*>(dst);
    d[col] = float(S(d[col]) + s);
  } else {
    T* d = static_cast<T*>(dst);
    d[col] = from_acc<T>(acc_t<T>(S(to_acc<acc_t<T>>(d[col])) + s));
  }
}

template <typename T>
ParamPtr<T> param(const Tensor& t) {
  ParamPtr<T> p;
  if (t.defined()) {
    p.p = t.data_ptr();
    p.f32 = t.dtype() == DType::F32;
  }
  return p;
}

int warp_grid(int64_t n) {
  return int(std::clamp<int64_t>((n + kWarps - 1) / kWarps, 1, int64_t(1) << 20));
}

}  // namespace

void norm_fwd_cuda(const NormFwdArgs& a) {
  const int64_t c = a.x.size(-1), n = a.x.numel() / c;
  if (n == 0) return;
  cudaStream_t st = cuda::current_stream(a.x.device().index);
  SEQMIX_DISPATCH_FLOAT(a.x.dtype(), "norm", T, {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const bool vec = kern::aligned16(a.x.data_ptr()) && kern::aligned16(a.y.data_ptr()) &&
                     c % kern::Vec<T>::N == 0;
    norm_fwd_kernel<T, S><<<warp_grid(n), kWarps * 32, 0, st>>>(
        a.kind == NormKind::Layer, a.x.data<T>(), param<T>(a.weight), param<T>(a.bias),
        a.y.data<T>(), a.mean.defined() ? a.mean.data<S>() : nullptr,
        a.rstd.defined() ? a.rstd.data<S>() : nullptr, n, c, acc_t<T>(a.eps), vec);
    SEQMIX_LAUNCH_CHECK();
  });
}

void norm_bwd_cuda(const NormBwdArgs& a) {
  const int64_t c = a.x.size(-1), n = a.x.numel() / c;
  if (n == 0) return;
  const Device dev = a.x.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  const bool layer = a.kind == NormKind::Layer;
  SEQMIX_DISPATCH_FLOAT(a.x.dtype(), "norm_bwd", T, {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const S* mean = layer ? a.mean.data<S>() : nullptr;
    if (a.dx.defined()) {
      norm_bwd_dx_kernel<T, S><<<warp_grid(n), kWarps * 32, 0, st>>>(
          layer, a.x.data<T>(), param<T>(a.weight), mean, a.rstd.data<S>(), a.dy.data<T>(),
          a.dx.data<T>(), n, c);
      SEQMIX_LAUNCH_CHECK();
    }
    if (a.dweight.defined() || a.dbias.defined()) {
      const int64_t rows_per_chunk = 256;
      const int64_t chunks = std::min<int64_t>((n + rows_per_chunk - 1) / rows_per_chunk, 65535);
      const int64_t rpc = (n + chunks - 1) / chunks;
      Tensor partial = Tensor::empty({2, chunks, c}, a.rstd.dtype(), dev);
      S* pw = partial.data<S>();
      S* pb = pw + chunks * c;
      norm_bwd_dparam_kernel<T, S>
          <<<dim3(unsigned((c + kColX - 1) / kColX), unsigned(chunks)), dim3(kColX, kColY), 0,
             st>>>(layer, a.x.data<T>(), mean, a.rstd.data<S>(), a.dy.data<T>(), pw, pb, n, c, rpc);
      SEQMIX_LAUNCH_CHECK();
      const int threads = 256;
      const unsigned blocks = unsigned((c + threads - 1) / threads);
      if (a.dweight.defined()) {
        norm_bwd_finalize_kernel<T, S><<<blocks, threads, 0, st>>>(
            pw, chunks, c, a.dweight.data_ptr(), a.dweight.dtype() == DType::F32);
        SEQMIX_LAUNCH_CHECK();
      }
      if (a.dbias.defined()) {
        norm_bwd_finalize_kernel<T, S><<<blocks, threads, 0, st>>>(
            pb, chunks, c, a.dbias.data_ptr(), a.dbias.dtype() == DType::F32);
        SEQMIX_LAUNCH_CHECK();
      }
    }
  });
}

}  // namespace seqmix
