#include "core/ops/index.h"

#include "core/ops/common.h"
#include "core/ops/index_impl.h"

namespace seqmix::ops {

namespace impl {
namespace {
// Out-of-range indices are clamped away (skipped) rather than read out of bounds; the host
// check below rejects them on the CPU before we get here.
template <typename T>
void gather_t(const T* x, const int64_t* idx, T* out, int64_t outer, int64_t r, int64_t inner) {
#pragma omp parallel for if (outer * inner > (1 << 15)) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t k = idx[o * inner + i];
      out[o * inner + i] = (k >= 0 && k < r) ? x[(o * r + k) * inner + i] : T();
    }
}
template <typename T>
void scatter_t(T* out, const int64_t* idx, const T* src, int64_t outer, int64_t r, int64_t inner) {
#pragma omp parallel for if (outer * inner > (1 << 15)) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t k = idx[o * inner + i];
      if (k >= 0 && k < r) out[(o * r + k) * inner + i] = src[o * inner + i];
    }
}
}  // namespace

void gather_dim_cpu(DType t, const void* x, const int64_t* idx, void* out, int64_t outer, int64_t r,
                    int64_t inner) {
  SEQMIX_DISPATCH_ALL(
      t, "gather_dim", T,
      gather_t<T>(static_cast<const T*>(x), idx, static_cast<T*>(out), outer, r, inner));
}
void scatter_dim_cpu(DType t, void* out, const int64_t* idx, const void* src, int64_t outer,
                     int64_t r, int64_t inner) {
  SEQMIX_DISPATCH_ALL(
      t, "scatter_dim", T,
      scatter_t<T>(static_cast<T*>(out), idx, static_cast<const T*>(src), outer, r, inner));
}
}  // namespace impl

namespace {
void dims_of(const Shape& s, int d, int64_t* outer, int64_t* r, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < d; ++i) *outer *= s[i];
  for (int i = d + 1; i < s.size(); ++i) *inner *= s[i];
  *r = s[d];
}
Shape keep1(Shape s, int d) {
  s[d] = 1;
  return s;
}
}  // namespace

Tensor gather_dim(const Tensor& x_in, int64_t dim, const Tensor& index_in) {
  const Device dev = common_device("gather_dim", {{"x", &x_in}, {"index", &index_in}});
  check_dtype("gather_dim", "index", index_in, DType::I64);
  const int d = wrap_dim(dim, x_in.dim());
  check_shape("gather_dim", "index", index_in, keep1(x_in.shape(), d));
  const Tensor x = x_in.contiguous(), index = index_in.contiguous();
  int64_t outer, r, inner;
  dims_of(x.shape(), d, &outer, &r, &inner);
  Tensor out = Tensor::empty(index.shape(), x.dtype(), dev);
  if (dev.is_cpu()) {
    const int64_t* ip = index.data<int64_t>();
    for (int64_t i = 0; i < index.numel(); ++i)
      SEQMIX_CHECK(ip[i] >= 0 && ip[i] < r, "gather_dim: index {} out of range [0, {})", ip[i], r);
    impl::gather_dim_cpu(x.dtype(), x.data_ptr(), ip, out.data_ptr(), outer, r, inner);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::gather_dim_cuda(x.dtype(), x.data_ptr(), index.data<int64_t>(), out.data_ptr(), outer, r,
                          inner, stream_of(dev));
#endif
  }
  return out;
}

Tensor scatter_dim(const Shape& shape, int64_t dim, const Tensor& index_in, const Tensor& src_in) {
  const Device dev = common_device("scatter_dim", {{"index", &index_in}, {"src", &src_in}});
  check_dtype("scatter_dim", "index", index_in, DType::I64);
  const int d = wrap_dim(dim, shape.size());
  check_shape("scatter_dim", "index", index_in, keep1(shape, d));
  check_shape("scatter_dim", "src", src_in, keep1(shape, d));
  const Tensor index = index_in.contiguous(), src = src_in.contiguous();
  int64_t outer, r, inner;
  dims_of(shape, d, &outer, &r, &inner);
  Tensor out = Tensor::zeros(shape, src.dtype(), dev);
  if (dev.is_cpu()) {
    impl::scatter_dim_cpu(src.dtype(), out.data_ptr(), index.data<int64_t>(), src.data_ptr(), outer,
                          r, inner);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::scatter_dim_cuda(src.dtype(), out.data_ptr(), index.data<int64_t>(), src.data_ptr(),
                           outer, r, inner, stream_of(dev));
#endif
  }
  return out;
}

}  // namespace seqmix::ops
