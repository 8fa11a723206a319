// CUDA short causal depthwise conv (widths 2..4 templated, bf16 / f32, fp32 accumulation).
//  forward:  a thread owns kSteps consecutive tokens x one vector of VEC channels (16-byte loads
//            when C and the pointers allow, else VEC = 1) and slides a register window of the
//            last W inputs along its tokens: x is read ~(1 + (W-1)/kSteps) times, y written once.
//            state_t is a tiny gather kernel.
//  backward: the same tiling; the thread recomputes z (for the SiLU derivative) and dz over its
//            tokens plus W-1 look-ahead tokens, writes dx by the transposed conv (+ dstate_t),
//            and keeps per-thread sums of dz * x_window (dweight) and dz (dbias). Those are
//            reduced over the block's token rows in shared memory in a fixed order into a
//            per-block partial [blocks, W + 1, C] (f32), then one thread per (c, i) adds the
//            partials in block order into dweight / dbias: deterministic, no atomics.
//            dstate0 (positions before each sequence start) is a small kernel per (n, c).
// Sequences: token p of the flat B*T axis belongs to sequence n = p / T, or, with cu_seqlens,
// the n found by binary search; inputs before a sequence's start come from state0 (or 0).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "kernels/common/device_utils.cuh"
#include "kernels/short_conv/short_conv.h"

namespace seqmix {
namespace {

constexpr int kSteps = 16;  // tokens per thread
constexpr int kBx = 32;     // threads over channel vectors
constexpr int kBy = 8;      // threads over token chunks
constexpr int kTokBlock = kSteps * kBy;

// Sequence boundaries over the flat token axis.
struct Seqs {
  const int64_t* cu = nullptr;  // [n + 1] or null: n sequences of length t
  int64_t n = 0, t = 0;
  __device__ __forceinline__ int64_t start(int64_t i) const { return cu ? cu[i] : i * t; }
  __device__ __forceinline__ int64_t end(int64_t i) const { return cu ? cu[i + 1] : i * t + t; }
  // The sequence holding token p (the last of several that end at the same offset is skipped:
  // the one with start <= p < end).
  __device__ __forceinline__ int64_t find(int64_t p) const {
    if (!cu) return p / t;
    int64_t lo = 0, hi = n - 1;  // largest i with cu[i] <= p
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) >> 1;
      if (cu[mid] <= p)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }
};

// A [C] or [C, W] parameter in T or f32.
template <typename T>
struct Param {
  const void* p = nullptr;
  bool f32 = false;
  __device__ __forceinline__ float at(int64_t i) const {
    return f32 ? static_cast<const float*>(p)[i] : to_acc<float>(static_cast<const T*>(p)[i]);
  }
};

template <typename T, int VEC>
__device__ __forceinline__ void load(const T* p, float (&v)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    const kern::Vec<T> u = *reinterpret_cast<const kern::Vec<T>*>(p);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = to_acc<float>(u.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = to_acc<float>(p[k]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void store(T* p, const float (&v)[VEC]) {
  if constexpr (VEC * sizeof(T) == 16) {
    kern::Vec<T> u;
#pragma unroll
    for (int k = 0; k < VEC; ++k) u.v[k] = from_acc<T>(v[k]);
    *reinterpret_cast<kern::Vec<T>*>(p) = u;
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) p[k] = from_acc<T>(v[k]);
  }
}

// xe at flat token p of sequence n starting at s0, channels [c, c + VEC).
template <typename T, int W, int VEC>
__device__ __forceinline__ void load_xe(const T* x, const T* state0, int64_t c_all, int64_t p,
                                        int64_t n, int64_t s0, int64_t c, float (&v)[VEC]) {
  if (p >= s0) {
    load<T, VEC>(x + p * c_all + c, v);
  } else if (state0) {
    load<T, VEC>(state0 + (n * (W - 1) + (W - 1) + (p - s0)) * c_all + c, v);
  } else {
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = 0.f;
  }
}

__device__ __forceinline__ float silu_f(float z) {
  return z / (1.f + __expf(-z));
}
__device__ __forceinline__ float dsilu_f(float z) {
  const float s = 1.f / (1.f + __expf(-z));
  return s + z * s * (1.f - s);
}

template <typename T, int W, int VEC>
__global__ void __launch_bounds__(kBx* kBy)
    short_conv_fwd_kernel(const T* __restrict__ x, Param<T> weight, Param<T> bias,
                          const T* __restrict__ state0, T* __restrict__ y, Seqs seqs,
                          int64_t tokens, int64_t c_all, bool silu) {
  const int64_t c = (int64_t(blockIdx.y) * kBx + threadIdx.x) * VEC;
  const int64_t t0 = (int64_t(blockIdx.x) * kBy + threadIdx.y) * kSteps;
  if (c >= c_all || t0 >= tokens) return;
  const int64_t t1 = min(t0 + kSteps, tokens);
  float w[W][VEC], b[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    b[k] = bias.p ? bias.at(c + k) : 0.f;
#pragma unroll
    for (int i = 0; i < W; ++i) w[i][k] = weight.at((c + k) * W + i);
  }
  int64_t n = seqs.find(t0), s0 = seqs.start(n), e = seqs.end(n);
  float win[W][VEC];
  for (int64_t t = t0; t < t1; ++t) {
    bool fill = t == t0;
    while (t >= e) {
      ++n;
      s0 = e;
      e = seqs.end(n);
      fill = true;
    }
    if (fill) {
#pragma unroll
      for (int i = 0; i < W - 1; ++i)
        load_xe<T, W, VEC>(x, state0, c_all, t - (W - 1) + i, n, s0, c, win[i]);
    }
    load<T, VEC>(x + t * c_all + c, win[W - 1]);
    float o[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      float z = b[k];
#pragma unroll
      for (int i = 0; i < W; ++i) z += w[i][k] * win[i][k];
      o[k] = silu ? silu_f(z) : z;
    }
    store<T, VEC>(y + t * c_all + c, o);
#pragma unroll
    for (int i = 0; i < W - 1; ++i)
#pragma unroll
      for (int k = 0; k < VEC; ++k) win[i][k] = win[i + 1][k];
  }
}

// state_t[n, k, c] = xe at position L - (W-1) + k of sequence n.
template <typename T>
__global__ void short_conv_state_kernel(const T* __restrict__ x, const T* __restrict__ state0,
                                        T* __restrict__ state_t, Seqs seqs, int w, int64_t c_all) {
  const int64_t total = seqs.n * (w - 1) * c_all;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = idx % c_all, k = (idx / c_all) % (w - 1), n = idx / (c_all * (w - 1));
    const int64_t s0 = seqs.start(n), len = seqs.end(n) - s0;
    const int64_t p = len - (w - 1) + k;  // relative to s0
    T v;
    if (p >= 0)
      v = x[(s0 + p) * c_all + c];
    else
      v = state0 ? state0[(n * (w - 1) + (w - 1) + p) * c_all + c] : from_acc<T>(0.f);
    state_t[idx] = v;
  }
}

template <typename T, int W, int VEC>
__global__ void __launch_bounds__(kBx* kBy)
    short_conv_bwd_kernel(const T* __restrict__ x, Param<T> weight, Param<T> bias,
                          const T* __restrict__ state0, const T* __restrict__ dy,
                          const T* __restrict__ dstate_t, T* __restrict__ dx,
                          float* __restrict__ partial, Seqs seqs, int64_t tokens, int64_t c_all,
                          bool silu) {
  // Per-block reduction buffer for one of the W + 1 parameter sums at a time.
  __shared__ float red[kBy][kBx * VEC];
  const int64_t c = (int64_t(blockIdx.y) * kBx + threadIdx.x) * VEC;
  const int64_t t0 = (int64_t(blockIdx.x) * kBy + threadIdx.y) * kSteps;
  const bool active = c < c_all && t0 < tokens;
  float pw[W + 1][VEC];  // pw[i]: sum dz * x_{t-W+1+i}; pw[W]: sum dz
#pragma unroll
  for (int i = 0; i <= W; ++i)
#pragma unroll
    for (int k = 0; k < VEC; ++k) pw[i][k] = 0.f;
  if (active) {
    const int64_t t1 = min(t0 + kSteps, tokens);
    float w[W][VEC], b[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      b[k] = bias.p ? bias.at(c + k) : 0.f;
#pragma unroll
      for (int i = 0; i < W; ++i) w[i][k] = weight.at((c + k) * W + i);
    }
    int64_t n = seqs.find(t0), s0 = seqs.start(n), e = seqs.end(n);
    float win[W][VEC];        // x at t-W+1 .. t
    float dzw[W][VEC];        // dz at t-W+1 .. t
    int64_t nid[W], nend[W];  // the sequence (and its end) of each dz slot; -1 = none
#pragma unroll
    for (int i = 0; i < W; ++i) {
      nid[i] = -1;
      nend[i] = 0;
#pragma unroll
      for (int k = 0; k < VEC; ++k) dzw[i][k] = 0.f;
    }
    for (int64_t t = t0; t < t1 + (W - 1); ++t) {
#pragma unroll
      for (int i = 0; i < W - 1; ++i) {
        nid[i] = nid[i + 1];
        nend[i] = nend[i + 1];
#pragma unroll
        for (int k = 0; k < VEC; ++k) dzw[i][k] = dzw[i + 1][k];
      }
      if (t < tokens) {
        bool fill = t == t0;
        while (t >= e) {
          ++n;
          s0 = e;
          e = seqs.end(n);
          fill = true;
        }
        if (fill) {
#pragma unroll
          for (int i = 0; i < W - 1; ++i)
            load_xe<T, W, VEC>(x, state0, c_all, t - (W - 1) + i, n, s0, c, win[i]);
        }
        load<T, VEC>(x + t * c_all + c, win[W - 1]);
        float g[VEC];
        load<T, VEC>(dy + t * c_all + c, g);
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
          float dz = g[k];
          if (silu) {
            float z = b[k];
#pragma unroll
            for (int i = 0; i < W; ++i) z += w[i][k] * win[i][k];
            dz *= dsilu_f(z);
          }
          dzw[W - 1][k] = dz;
          if (t < t1) {
#pragma unroll
            for (int i = 0; i < W; ++i) pw[i][k] += dz * win[i][k];
            pw[W][k] += dz;
          }
        }
        nid[W - 1] = n;
        nend[W - 1] = e;
#pragma unroll
        for (int i = 0; i < W - 1; ++i)
#pragma unroll
          for (int k = 0; k < VEC; ++k) win[i][k] = win[i + 1][k];
      } else {
        nid[W - 1] = -1;
#pragma unroll
        for (int k = 0; k < VEC; ++k) dzw[W - 1][k] = 0.f;
      }
      // dx_j for j = t - W + 1 (slot 0): sum_i w[i] dz_{j + W - 1 - i} within j's sequence.
      const int64_t j = t - (W - 1);
      if (dx && j >= t0) {
        float o[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) o[k] = 0.f;
#pragma unroll
        for (int i = 0; i < W; ++i) {
          if (nid[W - 1 - i] != nid[0]) continue;
#pragma unroll
          for (int k = 0; k < VEC; ++k) o[k] += w[i][k] * dzw[W - 1 - i][k];
        }
        const int64_t kk = j - (nend[0] - (W - 1));
        if (dstate_t && kk >= 0) {
          float d[VEC];
          load<T, VEC>(dstate_t + (nid[0] * (W - 1) + kk) * c_all + c, d);
#pragma unroll
          for (int k = 0; k < VEC; ++k) o[k] += d[k];
        }
        store<T, VEC>(dx + j * c_all + c, o);
      }
    }
  }
  if (!partial) return;
  // Fixed-order reduction over the block's token rows, one parameter sum at a time.
  const int64_t cb = int64_t(blockIdx.y) * kBx * VEC;
#pragma unroll
  for (int i = 0; i <= W; ++i) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) red[threadIdx.y][threadIdx.x * VEC + k] = pw[i][k];
    __syncthreads();
    for (int col = threadIdx.y * kBx + threadIdx.x; col < kBx * VEC; col += kBx * kBy) {
      if (cb + col < c_all) {
        float s = 0.f;
#pragma unroll
        for (int r = 0; r < kBy; ++r) s += red[r][col];
        partial[(int64_t(blockIdx.x) * (W + 1) + i) * c_all + cb + col] = s;
      }
    }
    __syncthreads();
  }
}

// dst[c, i] (i < W: dweight, layout [C, W]) or dst[c] (i == W: dbias) += sum over blocks in order.
template <typename T>
__global__ void short_conv_param_finalize_kernel(const float* __restrict__ partial, int64_t blocks,
                                                 int w, int64_t c_all, void* dweight,
                                                 bool dweight_f32, void* dbias, bool dbias_f32) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= (w + 1) * c_all) return;
  const int i = int(idx / c_all);
  const int64_t c = idx % c_all;
  void* dst = i < w ? dweight : dbias;
  if (!dst) return;
  const bool f32 = i < w ? dweight_f32 : dbias_f32;
  const int64_t at = i < w ? c * w + i : c;
  float s = 0.f;
  for (int64_t blk = 0; blk < blocks; ++blk) s += partial[(blk * (w + 1) + i) * c_all + c];
  if (f32) {
    float* d = static_cast<float*>(dst);
    d[at] += s;
  } else {
    T* d = static_cast<T*>(dst);
    d[at] = from_acc<T>(to_acc<float>(d[at]) + s);
  }
}

// dstate0[n, k, c] = sum_i w[i] dz_{k - (W-1) + W - 1 - i} over steps inside the sequence, plus
// dstate_t where position k - (W-1) is among the sequence's last W - 1 inputs.
template <typename T, int W>
__global__ void short_conv_dstate0_kernel(const T* __restrict__ x, Param<T> weight, Param<T> bias,
                                          const T* __restrict__ state0, const T* __restrict__ dy,
                                          const T* __restrict__ dstate_t, T* __restrict__ dstate0,
                                          Seqs seqs, int64_t c_all, bool silu) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= seqs.n * c_all) return;
  const int64_t n = idx / c_all, c = idx % c_all;
  const int64_t s0 = seqs.start(n), len = seqs.end(n) - s0;
  float w[W];
#pragma unroll
  for (int i = 0; i < W; ++i) w[i] = weight.at(c * W + i);
  const float b = bias.p ? bias.at(c) : 0.f;
  // xe[p + W - 1] for p in [-(W-1), W-1); dz for q in [0, W-1).
  float xe[2 * W - 2], dz[W - 1];
#pragma unroll
  for (int p = -(W - 1); p < W - 1; ++p) {
    float v;
    if (p >= 0)
      v = p < len ? to_acc<float>(x[(s0 + p) * c_all + c]) : 0.f;
    else
      v = state0 ? to_acc<float>(state0[(n * (W - 1) + (W - 1) + p) * c_all + c]) : 0.f;
    xe[p + W - 1] = v;
  }
#pragma unroll
  for (int q = 0; q < W - 1; ++q) {
    float d = 0.f;
    if (q < len) {
      d = to_acc<float>(dy[(s0 + q) * c_all + c]);
      if (silu) {
        float z = b;
#pragma unroll
        for (int i = 0; i < W; ++i) z += w[i] * xe[q + i];
        d *= dsilu_f(z);
      }
    }
    dz[q] = d;
  }
#pragma unroll
  for (int k = 0; k < W - 1; ++k) {
    const int p = k - (W - 1);
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < W; ++i) {
      const int q = p + W - 1 - i;
      if (q >= 0) s += w[i] * dz[q];  // q <= W - 2; dz is 0 past the sequence end
    }
    const int64_t kk = p - (len - (W - 1));
    if (dstate_t && kk >= 0) s += to_acc<float>(dstate_t[(n * (W - 1) + kk) * c_all + c]);
    dstate0[(n * (W - 1) + k) * c_all + c] = from_acc<T>(s);
  }
}

template <typename T>
Param<T> param(const Tensor& t) {
  Param<T> p;
  if (t.defined()) {
    p.p = t.data_ptr();
    p.f32 = t.dtype() == DType::F32;
  }
  return p;
}

Seqs seqs_of(const Tensor& x, const Tensor& cu) {
  Seqs s;
  s.t = x.size(1);
  if (cu.defined()) {
    s.cu = cu.data<int64_t>();
    s.n = cu.size(0) - 1;
  } else {
    s.n = x.size(0);
  }
  return s;
}

// Calls f.template operator()<W, VEC>() for the runtime width and vector size.
template <typename T, typename F>
void dispatch(int64_t w, bool vec, F&& f) {
  constexpr int V = int(16 / sizeof(T));
  if (vec) {
    if (w == 2)
      f.template operator()<2, V>();
    else if (w == 3)
      f.template operator()<3, V>();
    else
      f.template operator()<4, V>();
  } else {
    if (w == 2)
      f.template operator()<2, 1>();
    else if (w == 3)
      f.template operator()<3, 1>();
    else
      f.template operator()<4, 1>();
  }
}

template <typename T>
bool can_vectorise(int64_t c, std::initializer_list<const Tensor*> ts) {
  if (c % int64_t(16 / sizeof(T)) != 0) return false;
  for (const Tensor* t : ts)
    if (t->defined() && !kern::aligned16(t->data_ptr())) return false;
  return true;
}

dim3 grid_for(int64_t tokens, int64_t c, int vec) {
  const int64_t cvecs = (c + vec - 1) / vec;
  return dim3(unsigned((tokens + kTokBlock - 1) / kTokBlock), unsigned((cvecs + kBx - 1) / kBx));
}

template <typename T>
void fwd_impl(const ShortConvFwdArgs& a) {
  const int64_t tokens = a.x.size(0) * a.x.size(1), c = a.x.size(2), w = a.weight.size(1);
  const Seqs seqs = seqs_of(a.x, a.cu_seqlens);
  cudaStream_t st = cuda::current_stream(a.x.device().index);
  const T* s0 = a.state0.defined() ? a.state0.data<T>() : nullptr;
  if (tokens > 0 && c > 0) {
    const bool vec = can_vectorise<T>(c, {&a.x, &a.y, &a.state0});
    dispatch<T>(w, vec, [&]<int W, int VEC>() {
      short_conv_fwd_kernel<T, W, VEC><<<grid_for(tokens, c, VEC), dim3(kBx, kBy), 0, st>>>(
          a.x.data<T>(), param<T>(a.weight), param<T>(a.bias), s0, a.y.data<T>(), seqs, tokens, c,
          a.silu);
      SEQMIX_LAUNCH_CHECK();
    });
  }
  if (a.state_t.defined() && a.state_t.numel() > 0) {
    const int64_t total = a.state_t.numel();
    const unsigned blocks = unsigned(std::min<int64_t>((total + 255) / 256, 65535));
    short_conv_state_kernel<T>
        <<<blocks, 256, 0, st>>>(a.x.data<T>(), s0, a.state_t.data<T>(), seqs, int(w), c);
    SEQMIX_LAUNCH_CHECK();
  }
}

template <typename T>
void bwd_impl(const ShortConvBwdArgs& a) {
  const int64_t tokens = a.x.size(0) * a.x.size(1), c = a.x.size(2), w = a.weight.size(1);
  const Seqs seqs = seqs_of(a.x, a.cu_seqlens);
  const Device dev = a.x.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  const T* s0 = a.state0.defined() ? a.state0.data<T>() : nullptr;
  const T* dst = a.dstate_t.defined() ? a.dstate_t.data<T>() : nullptr;
  const bool params = a.dweight.defined() || a.dbias.defined();
  if (tokens > 0 && c > 0 && (a.dx.defined() || params)) {
    const bool vec = can_vectorise<T>(c, {&a.x, &a.dy, &a.dx, &a.state0, &a.dstate_t});
    dispatch<T>(w, vec, [&]<int W, int VEC>() {
      const dim3 grid = grid_for(tokens, c, VEC);
      Tensor partial;
      if (params) partial = Tensor::empty({int64_t(grid.x), W + 1, c}, DType::F32, dev);
      short_conv_bwd_kernel<T, W, VEC><<<grid, dim3(kBx, kBy), 0, st>>>(
          a.x.data<T>(), param<T>(a.weight), param<T>(a.bias), s0, a.dy.data<T>(), dst,
          a.dx.defined() ? a.dx.data<T>() : nullptr, params ? partial.data<float>() : nullptr, seqs,
          tokens, c, a.silu);
      SEQMIX_LAUNCH_CHECK();
      if (params) {
        const int64_t total = (W + 1) * c;
        short_conv_param_finalize_kernel<T><<<unsigned((total + 255) / 256), 256, 0, st>>>(
            partial.data<float>(), int64_t(grid.x), W, c,
            a.dweight.defined() ? a.dweight.data_ptr() : nullptr,
            a.dweight.defined() && a.dweight.dtype() == DType::F32,
            a.dbias.defined() ? a.dbias.data_ptr() : nullptr,
            a.dbias.defined() && a.dbias.dtype() == DType::F32);
        SEQMIX_LAUNCH_CHECK();
      }
    });
  }
  if (a.dstate0.defined() && a.dstate0.numel() > 0) {
    const int64_t total = seqs.n * c;
    dispatch<T>(w, false, [&]<int W, int VEC>() {
      short_conv_dstate0_kernel<T, W><<<unsigned((total + 127) / 128), 128, 0, st>>>(
          a.x.data<T>(), param<T>(a.weight), param<T>(a.bias), s0, a.dy.data<T>(), dst,
          a.dstate0.data<T>(), seqs, c, a.silu);
      SEQMIX_LAUNCH_CHECK();
    });
  }
}

}  // namespace

// supports() admits only bf16 and f32 on CUDA.
void short_conv_fwd_cuda(const ShortConvFwdArgs& a) {
  if (a.x.dtype() == DType::BF16)
    fwd_impl<bf16>(a);
  else
    fwd_impl<float>(a);
}

void short_conv_bwd_cuda(const ShortConvBwdArgs& a) {
  if (a.x.dtype() == DType::BF16)
    bwd_impl<bf16>(a);
  else
    bwd_impl<float>(a);
}

}  // namespace seqmix
