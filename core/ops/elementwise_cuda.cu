// CUDA elementwise kernels: one generic grid-stride kernel over an ElemIter with four modes
// (strided with per-element index math; contiguous scalar; contiguous with 16-byte vector loads
// when every pointer is 16-byte aligned; rows of 16-byte vectors with one index computation per
// vector, for strided and broadcast operands whose innermost dim allows it), instantiated per
// (op, dtype) from the shared formulas.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/cuda/cuda_check.h"
#include "core/dispatch.h"
#include "core/ops/convert.h"
#include "core/ops/elementwise_functors.h"
#include "core/ops/elementwise_impl.h"

namespace seqmix::ops::impl {
namespace {

constexpr int kThreads = 256;
// The paths of plan_elementwise_cuda (core/ops/iter.h), as kernel arguments (the element path,
// ElemPath::Strided, is the remaining case of the strided kernel).
constexpr int kContig = int(ElemPath::Contig), kVector = int(ElemPath::Vector),
              kRows = int(ElemPath::Rows);

template <typename T>
struct alignas(16) Vec16 {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

int grid_for(int64_t work) {
  const int64_t b = (work + kThreads - 1) / kThreads;
  return int(std::clamp<int64_t>(b, 1, int64_t(1) << 20));
}

template <int NIN, typename T>
struct InPtrs {
  const T* p[NIN];
};

// out[i] = f(in_0[i], ..., in_{NIN-1}[i]) in the computation type. Two kernels per (op, dtype):
// STRIDED = false serves kVector and kContig, STRIDED = true serves kRows and kStrided, so the
// registers that kRows needs (a row of vectors per input plus NIN + 1 offsets) are not reserved
// by the contiguous launches, which are the common case.
// kRows (see plan_elementwise_cuda): one index computation per 16-byte vector; an input whose bit
// in `bcast` is set is broadcast along the innermost dim (one scalar per row).
template <bool STRIDED, int NIN, typename T, typename F>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(ElemIter it, int mode, int bcast, T* out, InPtrs<NIN, T> in, F f) {
  using A = acc_t<T>;
  const int64_t n = it.numel;
  const int64_t step = int64_t(gridDim.x) * kThreads;
  const int64_t tid = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if constexpr (!STRIDED) {
    if (mode == kVector) {
      constexpr int V = Vec16<T>::N;
      const int64_t nvec = n / V;
      for (int64_t v = tid; v < nvec; v += step) {
        Vec16<T> src[NIN];
#pragma unroll
        for (int k = 0; k < NIN; ++k) src[k] = reinterpret_cast<const Vec16<T>*>(in.p[k])[v];
        Vec16<T> dst;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          A a[NIN];
#pragma unroll
          for (int k = 0; k < NIN; ++k) a[k] = to_acc<A>(src[k].v[j]);
          dst.v[j] = from_acc<T>(f(a));
        }
        reinterpret_cast<Vec16<T>*>(out)[v] = dst;
      }
      for (int64_t i = nvec * V + tid; i < n; i += step) {
        A a[NIN];
#pragma unroll
        for (int k = 0; k < NIN; ++k) a[k] = to_acc<A>(in.p[k][i]);
        out[i] = from_acc<T>(f(a));
      }
    } else {
      for (int64_t i = tid; i < n; i += step) {
        A a[NIN];
#pragma unroll
        for (int k = 0; k < NIN; ++k) a[k] = to_acc<A>(in.p[k][i]);
        out[i] = from_acc<T>(f(a));
      }
    }
  } else {
    if (mode == kRows) {
      constexpr int V = Vec16<T>::N;
      const int64_t nvec = n / V;
      for (int64_t v = tid; v < nvec; v += step) {
        int64_t off[NIN + 1];
        it.offsets<NIN + 1>(v * V, off);
        A a[NIN][V];
#pragma unroll
        for (int k = 0; k < NIN; ++k) {
          if ((bcast >> k) & 1) {
            const A x = to_acc<A>(in.p[k][off[k + 1]]);
#pragma unroll
            for (int j = 0; j < V; ++j) a[k][j] = x;
          } else {
            const Vec16<T> x = *reinterpret_cast<const Vec16<T>*>(in.p[k] + off[k + 1]);
#pragma unroll
            for (int j = 0; j < V; ++j) a[k][j] = to_acc<A>(x.v[j]);
          }
        }
        Vec16<T> dst;
#pragma unroll
        for (int j = 0; j < V; ++j) {
          A x[NIN];
#pragma unroll
          for (int k = 0; k < NIN; ++k) x[k] = a[k][j];
          dst.v[j] = from_acc<T>(f(x));
        }
        *reinterpret_cast<Vec16<T>*>(out + off[0]) = dst;
      }
    } else {
      for (int64_t i = tid; i < n; i += step) {
        int64_t off[NIN + 1];
        it.offsets<NIN + 1>(i, off);
        A a[NIN];
#pragma unroll
        for (int k = 0; k < NIN; ++k) a[k] = to_acc<A>(in.p[k][off[k + 1]]);
        out[off[0]] = from_acc<T>(f(a));
      }
    }
  }
}

template <UnaryOp OP, typename A>
struct UnaryFwdF {
  A s;
  __device__ A operator()(const A* a) const { return fn::Unary<OP, A>::fwd(a[0], s); }
};
template <UnaryOp OP, typename A>
struct UnaryBwdF {
  A s;
  __device__ A operator()(const A* a) const { return fn::Unary<OP, A>::bwd(a[0], a[1], s); }
};
template <BinaryOp OP, typename A>
struct BinaryF {
  A alpha;
  __device__ A operator()(const A* a) const { return fn::Binary<OP, A>::f(a[0], a[1], alpha); }
};

template <int NIN, typename T, typename F>
void launch(const ElemIter& it, T* out, InPtrs<NIN, T> in, F f, cudaStream_t stream) {
  if (it.numel == 0) return;
  const void* ptrs[NIN + 1] = {out};
  for (int k = 0; k < NIN; ++k) ptrs[k + 1] = in.p[k];
  const ElemPlan plan = plan_elementwise_cuda(it, int(sizeof(T)), ptrs);
  const int mode = int(plan.path), bcast = plan.bcast;
  const int64_t work = mode == kVector ? it.numel / Vec16<T>::N + 1
                       : mode == kRows ? it.numel / Vec16<T>::N
                                       : it.numel;
  if (mode == kVector || mode == kContig)
    elementwise_kernel<false, NIN, T, F>
        <<<grid_for(work), kThreads, 0, stream>>>(it, mode, bcast, out, in, f);
  else
    elementwise_kernel<true, NIN, T, F>
        <<<grid_for(work), kThreads, 0, stream>>>(it, mode, bcast, out, in, f);
  SEQMIX_LAUNCH_CHECK();
}

// ---- copies and fills ----

template <typename D, typename S>
__global__ void __launch_bounds__(kThreads) cast_kernel(ElemIter it, D* dst, const S* src) {
  const int64_t step = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < it.numel; i += step) {
    if (it.contiguous) {
      dst[i] = convert<D>(src[i]);
    } else {
      int64_t off[2];
      it.offsets<2>(i, off);
      dst[off[0]] = convert<D>(src[off[1]]);
    }
  }
}

// Same-dtype strided copy, by element width.
template <typename W>
__global__ void __launch_bounds__(kThreads) strided_copy_kernel(ElemIter it, W* dst, const W* src) {
  const int64_t step = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < it.numel; i += step) {
    int64_t off[2];
    it.offsets<2>(i, off);
    dst[off[0]] = src[off[1]];
  }
}

template <typename W>
__global__ void __launch_bounds__(kThreads) fill_kernel(ElemIter it, W* dst, W value) {
  const int64_t step = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < it.numel; i += step) {
    if (it.contiguous) {
      dst[i] = value;
    } else {
      int64_t off[1];
      it.offsets<1>(i, off);
      dst[off[0]] = value;
    }
  }
}

// Same-dtype strided copy whose innermost dimension is unit-stride in both operands, a whole
// number of 16-byte vectors long and 16-byte aligned (so is every other stride): one 16-byte
// vector per thread and one index computation per vector (per element, the index arithmetic of
// strided_copy_kernel limits it: 12.6M bf16 of a broadcast took 78 us on an H100).
template <typename W>
__global__ void __launch_bounds__(kThreads)
    strided_copy_vec16_kernel(ElemIter it, W* dst, const W* src) {
  constexpr int kV = 16 / int(sizeof(W));
  const int64_t nvec = it.numel / kV;
  const int64_t step = int64_t(gridDim.x) * kThreads;
  for (int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x; j < nvec; j += step) {
    int64_t off[2];
    it.offsets<2>(j * kV, off);
    *reinterpret_cast<uint4*>(dst + off[0]) = *reinterpret_cast<const uint4*>(src + off[1]);
  }
}

// Whether strided_copy_vec16_kernel can run `it` (element width w).
bool vec16_rows(const ElemIter& it, const void* dst, const void* src, int64_t w) {
  if (it.ndim < 1 || !aligned16(dst) || !aligned16(src) || 16 % w != 0) return false;
  const int last = it.ndim - 1;
  if (it.strides[0][last] != 1 || it.strides[1][last] != 1 || (it.sizes[last] * w) % 16 != 0)
    return false;
  for (int d = 0; d < last; ++d)
    for (int k = 0; k < 2; ++k)
      if ((it.strides[k][d] * w) % 16 != 0) return false;
  return true;
}

// Contiguous copy in 16-byte vectors, four independent loads in flight per thread before the
// stores (memory-level parallelism for HBM).
constexpr int kCopyUnroll = 4;
__global__ void __launch_bounds__(kThreads)
    copy_vec16_kernel(uint4* __restrict__ dst, const uint4* __restrict__ src, int64_t nvec) {
  const int64_t step = int64_t(gridDim.x) * kThreads * kCopyUnroll;
  for (int64_t base = int64_t(blockIdx.x) * kThreads * kCopyUnroll + threadIdx.x; base < nvec;
       base += step) {
    uint4 r[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int64_t i = base + int64_t(u) * kThreads;
      if (i < nvec) r[u] = src[i];
    }
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int64_t i = base + int64_t(u) * kThreads;
      if (i < nvec) dst[i] = r[u];
    }
  }
}

template <typename W>
W bits_of(double value, DType t) {
  W w{};
  SEQMIX_DISPATCH_ALL(t, "fill", T, {
    static_assert(sizeof(T) <= 8);
    if constexpr (sizeof(T) == sizeof(W)) {
      const T v = convert<T>(value);
      std::memcpy(&w, &v, sizeof(W));
    }
  });
  return w;
}

}  // namespace

void unary_cuda(UnaryOp op, DType t, const ElemIter& it, void* y, const void* x, double s,
                cudaStream_t stream) {
  SEQMIX_DISPATCH_FLOAT(t, "unary", T, {
    using A = acc_t<T>;
    InPtrs<1, T> in{{static_cast<const T*>(x)}};
    SEQMIX_DISPATCH_UNARY_OP(
        op, launch<1, T>(it, static_cast<T*>(y), in, UnaryFwdF<OP, A>{A(s)}, stream));
  });
}

void unary_backward_cuda(UnaryOp op, DType t, const ElemIter& it, void* dx, const void* x,
                         const void* dy, double s, cudaStream_t stream) {
  SEQMIX_DISPATCH_FLOAT(t, "unary_backward", T, {
    using A = acc_t<T>;
    InPtrs<2, T> in{{static_cast<const T*>(x), static_cast<const T*>(dy)}};
    SEQMIX_DISPATCH_UNARY_OP(
        op, launch<2, T>(it, static_cast<T*>(dx), in, UnaryBwdF<OP, A>{A(s)}, stream));
  });
}

void binary_cuda(BinaryOp op, DType t, const ElemIter& it, void* c, const void* a, const void* b,
                 double alpha, cudaStream_t stream) {
  SEQMIX_DISPATCH_FLOAT(t, "binary", T, {
    using A = acc_t<T>;
    InPtrs<2, T> in{{static_cast<const T*>(a), static_cast<const T*>(b)}};
    SEQMIX_DISPATCH_BINARY_OP(
        op, launch<2, T>(it, static_cast<T*>(c), in, BinaryF<OP, A>{A(alpha)}, stream));
  });
}

void copy_bytes_cuda(void* dst, const void* src, size_t nbytes, cudaStream_t stream) {
  if (nbytes == 0) return;
  if (aligned16(dst) && aligned16(src) && nbytes % 16 == 0) {
    const int64_t nvec = int64_t(nbytes / 16);
    const int64_t blocks = (nvec + kThreads * kCopyUnroll - 1) / (kThreads * kCopyUnroll);
    copy_vec16_kernel<<<int(std::clamp<int64_t>(blocks, 1, int64_t(1) << 20)), kThreads, 0,
                        stream>>>(static_cast<uint4*>(dst), static_cast<const uint4*>(src), nvec);
    SEQMIX_LAUNCH_CHECK();
  } else {
    SEQMIX_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream));
  }
}

void copy_cuda(DType dst_t, DType src_t, const ElemIter& it, void* dst, const void* src,
               cudaStream_t stream) {
  if (it.numel == 0) return;
  if (dst_t == src_t) {
    if (it.contiguous) {
      copy_bytes_cuda(dst, src, size_t(it.numel) * dtype_size(dst_t), stream);
      return;
    }
    const int64_t w = int64_t(dtype_size(dst_t));
    const bool vec = vec16_rows(it, dst, src, w);
    const int g = grid_for(vec ? it.numel * w / 16 : it.numel);
    // The element width as an unsigned integer type W (8 bytes for every larger width).
    const auto launch_w = [&](auto tag) {
      using W = decltype(tag);
      W* d = static_cast<W*>(dst);
      const W* s = static_cast<const W*>(src);
      if (vec)
        strided_copy_vec16_kernel<<<g, kThreads, 0, stream>>>(it, d, s);
      else
        strided_copy_kernel<<<g, kThreads, 0, stream>>>(it, d, s);
    };
    switch (w) {
      case 1:
        launch_w(uint8_t{});
        break;
      case 2:
        launch_w(uint16_t{});
        break;
      case 4:
        launch_w(uint32_t{});
        break;
      default:
        launch_w(uint64_t{});
        break;
    }
    SEQMIX_LAUNCH_CHECK();
    return;
  }
  SEQMIX_DISPATCH_ALL(dst_t, "copy", D, {
    SEQMIX_DISPATCH_ALL(src_t, "copy", S, {
      cast_kernel<D, S><<<grid_for(it.numel), kThreads, 0, stream>>>(it, static_cast<D*>(dst),
                                                                     static_cast<const S*>(src));
      SEQMIX_LAUNCH_CHECK();
    });
  });
}

void fill_cuda(DType t, const ElemIter& it, void* dst, double value, cudaStream_t stream) {
  if (it.numel == 0) return;
  const int g = grid_for(it.numel);
  switch (dtype_size(t)) {
    case 1:
      fill_kernel<<<g, kThreads, 0, stream>>>(it, static_cast<uint8_t*>(dst),
                                              bits_of<uint8_t>(value, t));
      break;
    case 2:
      fill_kernel<<<g, kThreads, 0, stream>>>(it, static_cast<uint16_t*>(dst),
                                              bits_of<uint16_t>(value, t));
      break;
    case 4:
      fill_kernel<<<g, kThreads, 0, stream>>>(it, static_cast<uint32_t*>(dst),
                                              bits_of<uint32_t>(value, t));
      break;
    default:
      fill_kernel<<<g, kThreads, 0, stream>>>(it, static_cast<uint64_t*>(dst),
                                              bits_of<uint64_t>(value, t));
      break;
  }
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace seqmix::ops::impl
