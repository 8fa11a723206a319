// Copies between any devices and dtypes, fills, cat and stack.
#include "core/ops/copy.h"

#include "core/ops/common.h"
#include "core/ops/elementwise_impl.h"

#if SEQMIX_WITH_CUDA
#include <cuda_runtime_api.h>

#include "core/cuda/cuda_check.h"
#endif

namespace seqmix::ops {

namespace {

// Same-device copy through the elementwise machinery.
void copy_same_device(const Tensor& dst, const Tensor& src) {
  const ElemIter it = make_elem_iter(dst, {&src});
  const Device dev = dst.device();
  if (dev.is_cpu()) {
    impl::copy_cpu(dst.dtype(), src.dtype(), it, dst.data_ptr(), src.data_ptr());
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::copy_cuda(dst.dtype(), src.dtype(), it, dst.data_ptr(), src.data_ptr(), stream_of(dev));
#endif
  }
}

#if SEQMIX_WITH_CUDA
// Cross-device copy: cast and broadcast on the source device into a contiguous buffer of dst's
// shape and dtype, move the bytes, then scatter into dst's layout on the destination device.
void copy_cross_device(const Tensor& dst, const Tensor& src) {
  Tensor staged = src;
  if (src.dtype() != dst.dtype() || src.shape() != dst.shape() || !src.is_contiguous()) {
    staged = Tensor::empty(dst.shape(), dst.dtype(), src.device());
    copy_same_device(staged, src);
  }
  const bool direct = dst.is_contiguous();
  Tensor landing = direct ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  const size_t nbytes = dst.nbytes();
  if (nbytes > 0) {
    const Device sd = src.device(), dd = dst.device();
    if (sd.is_cpu()) {  // host -> device
      cuda::DeviceGuard g(dd.index);
      SEQMIX_CUDA_CHECK(cudaMemcpyAsync(landing.data_ptr(), staged.data_ptr(), nbytes,
                                        cudaMemcpyHostToDevice, stream_of(dd)));
      // From pageable memory the call returns once the bytes are staged, so the host buffer
      // may be freed as soon as it returns.
    } else if (dd.is_cpu()) {  // device -> host
      cuda::DeviceGuard g(sd.index);
      SEQMIX_CUDA_CHECK(cudaMemcpyAsync(landing.data_ptr(), staged.data_ptr(), nbytes,
                                        cudaMemcpyDeviceToHost, stream_of(sd)));
      cuda::synchronize(sd.index);
    } else {  // device -> other device
      cuda::synchronize(sd.index);
      cuda::DeviceGuard g(dd.index);
      SEQMIX_CUDA_CHECK(cudaMemcpyPeerAsync(landing.data_ptr(), dd.index, staged.data_ptr(),
                                            sd.index, nbytes, stream_of(dd)));
      cuda::synchronize(dd.index);
    }
  }
  if (!direct) copy_same_device(dst, landing);
}
#endif

}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  SEQMIX_CHECK(dst.defined() && src.defined(), "copy_: undefined operand");
  // Validate broadcast before any work.
  const Shape b = broadcast_shapes(dst.shape(), src.shape());
  SEQMIX_CHECK(b == dst.shape(), "copy_: source of shape {} cannot be broadcast to {}",
               src.shape_str(), dst.shape_str());
  if (dst.device() == src.device()) {
    copy_same_device(dst, src);
  } else {
#if SEQMIX_WITH_CUDA
    copy_cross_device(dst, src);
#else
    SEQMIX_THROW(Unsupported, "copy_: this build has no CUDA support");
#endif
  }
  dst.bump_version();
}

void fill_(const Tensor& dst, double value) {
  SEQMIX_CHECK(dst.defined(), "fill_: undefined tensor");
  const ElemIter it = make_elem_iter(dst, {});
  const Device dev = dst.device();
  if (dev.is_cpu()) {
    impl::fill_cpu(dst.dtype(), it, dst.data_ptr(), value);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::fill_cuda(dst.dtype(), it, dst.data_ptr(), value, stream_of(dev));
#endif
  }
  dst.bump_version();
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim_in) {
  SEQMIX_CHECK(!xs.empty(), "cat: no tensors given");
  const Tensor& x0 = xs[0];
  const int d = wrap_dim(dim_in, x0.dim());
  Shape shape = x0.shape();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    SEQMIX_CHECK(x.defined(), "cat: tensor {} is undefined", i);
    SEQMIX_CHECK(x.dim() == x0.dim(), "cat: tensor {} has {} dims, tensor 0 has {}", i, x.dim(),
                 x0.dim());
    SEQMIX_CHECK(x.dtype() == x0.dtype(), "cat: tensor {} is {}, tensor 0 is {}", i,
                 dtype_name(x.dtype()), dtype_name(x0.dtype()));
    SEQMIX_CHECK(x.device() == x0.device(), "cat: tensor {} is on {}, tensor 0 on {}", i,
                 x.device().str(), x0.device().str());
    for (int k = 0; k < x.dim(); ++k)
      SEQMIX_CHECK(k == d || x.shape()[k] == shape[k],
                   "cat: tensor {} has shape {}, incompatible with {} along dim {}", i,
                   x.shape_str(), shape.str(), k);
    total += x.shape()[d];
  }
  shape[d] = total;
  Tensor out = Tensor::empty(shape, x0.dtype(), x0.device());
  int64_t off = 0;
  for (const Tensor& x : xs) {
    const int64_t n = x.shape()[d];
    if (n > 0) copy_(out.narrow(d, off, n), x);
    off += n;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim_in) {
  SEQMIX_CHECK(!xs.empty(), "stack: no tensors given");
  const int d = wrap_dim(dim_in, xs[0].dim() + 1);
  std::vector<Tensor> us;
  us.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    SEQMIX_CHECK(xs[i].defined() && xs[i].shape() == xs[0].shape(),
                 "stack: tensor {} has shape {}, tensor 0 has {}", i, describe(xs[i]),
                 xs[0].shape_str());
    us.push_back(xs[i].unsqueeze(d));
  }
  return cat(us, d);
}

}  // namespace seqmix::ops
