// CPU elementwise kernels: the formulas of elementwise_functors.h over an ElemIter, OpenMP-parallel
// for large tensors.
#include <cstring>

#include "core/dispatch.h"
#include "core/ops/convert.h"
#include "core/ops/elementwise_functors.h"
#include "core/ops/elementwise_impl.h"

namespace seqmix::ops::impl {
namespace {

constexpr int64_t kParallelGrain = 1 << 15;

// Calls f(i, off) for every linear index with the operand offsets.
template <int N, typename F>
void for_each(const ElemIter& it, F&& f) {
  const int64_t n = it.numel;
  if (it.contiguous) {
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      int64_t off[N];
      for (int k = 0; k < N; ++k) off[k] = i;
      f(off);
    }
  } else {
#pragma omp parallel for if (n > kParallelGrain) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      int64_t off[N];
      it.offsets<N>(i, off);
      f(off);
    }
  }
}

template <UnaryOp OP, typename T>
void unary_t(const ElemIter& it, T* y, const T* x, double s) {
  using A = acc_t<T>;
  const A sa = A(s);
  for_each<2>(it, [&](const int64_t* o) {
    y[o[0]] = from_acc<T>(fn::Unary<OP, A>::fwd(to_acc<A>(x[o[1]]), sa));
  });
}

template <UnaryOp OP, typename T>
void unary_bwd_t(const ElemIter& it, T* dx, const T* x, const T* dy, double s) {
  using A = acc_t<T>;
  const A sa = A(s);
  for_each<3>(it, [&](const int64_t* o) {
    dx[o[0]] = from_acc<T>(fn::Unary<OP, A>::bwd(to_acc<A>(x[o[1]]), to_acc<A>(dy[o[2]]), sa));
  });
}

template <BinaryOp OP, typename T>
void binary_t(const ElemIter& it, T* c, const T* a, const T* b, double alpha) {
  using A = acc_t<T>;
  const A al = A(alpha);
  for_each<3>(it, [&](const int64_t* o) {
    c[o[0]] = from_acc<T>(fn::Binary<OP, A>::f(to_acc<A>(a[o[1]]), to_acc<A>(b[o[2]]), al));
  });
}

}  // namespace

void unary_cpu(UnaryOp op, DType t, const ElemIter& it, void* y, const void* x, double s) {
  SEQMIX_DISPATCH_FLOAT(t, "unary", T, {
    SEQMIX_DISPATCH_UNARY_OP(op,
                             unary_t<OP, T>(it, static_cast<T*>(y), static_cast<const T*>(x), s));
  });
}

void unary_backward_cpu(UnaryOp op, DType t, const ElemIter& it, void* dx, const void* x,
                        const void* dy, double s) {
  SEQMIX_DISPATCH_FLOAT(t, "unary_backward", T, {
    SEQMIX_DISPATCH_UNARY_OP(op,
                             unary_bwd_t<OP, T>(it, static_cast<T*>(dx), static_cast<const T*>(x),
                                                static_cast<const T*>(dy), s));
  });
}

void binary_cpu(BinaryOp op, DType t, const ElemIter& it, void* c, const void* a, const void* b,
                double alpha) {
  SEQMIX_DISPATCH_FLOAT(t, "binary", T, {
    SEQMIX_DISPATCH_BINARY_OP(op, binary_t<OP, T>(it, static_cast<T*>(c), static_cast<const T*>(a),
                                                  static_cast<const T*>(b), alpha));
  });
}

void copy_cpu(DType dst_t, DType src_t, const ElemIter& it, void* dst, const void* src) {
  if (dst_t == src_t && it.contiguous) {
    std::memmove(dst, src, size_t(it.numel) * dtype_size(dst_t));
    return;
  }
  SEQMIX_DISPATCH_ALL(dst_t, "copy", D, {
    SEQMIX_DISPATCH_ALL(src_t, "copy", S, {
      D* d = static_cast<D*>(dst);
      const S* s = static_cast<const S*>(src);
      for_each<2>(it, [&](const int64_t* o) { d[o[0]] = convert<D>(s[o[1]]); });
    });
  });
}

void fill_cpu(DType t, const ElemIter& it, void* dst, double value) {
  SEQMIX_DISPATCH_ALL(t, "fill", T, {
    const T v = convert<T>(value);
    T* d = static_cast<T*>(dst);
    for_each<1>(it, [&](const int64_t* o) { d[o[0]] = v; });
  });
}

}  // namespace seqmix::ops::impl
