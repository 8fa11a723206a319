// softmax / log_softmax: validation, dispatch and the autograd node (saves y only).
#include "kernels/softmax/softmax.h"

#include "autograd/function.h"
#include "autograd/functions.h"
#include "core/check.h"
#include "core/ops/common.h"

namespace seqmix {

Support softmax_supports(const SoftmaxFwdArgs& a) {
  if (!is_floating(a.x.dtype())) return Support::no("softmax needs a floating dtype");
  if (a.x.dim() == 0) return Support::no("softmax needs at least one dimension");
  return Support::yes();
}

namespace {
void check_rows(const char* op, const char* name, const Tensor& t, const Tensor& like) {
  ops::check_shape(op, name, t, like.shape());
  ops::check_dtype(op, name, t, like.dtype());
  SEQMIX_CHECK(t.is_contiguous(), "{}: '{}' must be contiguous", op, name);
}
}  // namespace

void softmax_fwd(const SoftmaxFwdArgs& a) {
  const Device dev = ops::common_device("softmax", {{"x", &a.x}, {"y", &a.y}});
  const Support s = softmax_supports(a);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "softmax: {}", s.why);
  check_rows("softmax", "x", a.x, a.x);
  check_rows("softmax", "y", a.y, a.x);
  if (dev.is_cpu()) {
    softmax_fwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    softmax_fwd_cuda(a);
#endif
  }
  a.y.bump_version();
}

void softmax_bwd(const SoftmaxBwdArgs& a) {
  const Device dev = ops::common_device("softmax_bwd", {{"y", &a.y}, {"dy", &a.dy}, {"dx", &a.dx}});
  check_rows("softmax_bwd", "y", a.y, a.y);
  check_rows("softmax_bwd", "dy", a.dy, a.y);
  check_rows("softmax_bwd", "dx", a.dx, a.y);
  if (dev.is_cpu()) {
    softmax_bwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    softmax_bwd_cuda(a);
#endif
  }
  a.dx.bump_version();
}

namespace {
Variable softmax_impl(const Variable& x_in, int64_t dim, bool log) {
  const int d = wrap_dim(dim, x_in.dim());
  const bool last = d == x_in.dim() - 1;
  const Variable x = last ? x_in : transpose(x_in, d, -1);
  const Tensor xc = x.data().contiguous();
  SoftmaxFwdArgs fa{xc, Tensor::empty(xc.shape(), xc.dtype(), xc.device()), log};
  softmax_fwd(fa);
  Variable y = record(
      log ? "LogSoftmaxBackward" : "SoftmaxBackward", {&x}, fa.y,
      [log, sy = SavedTensor(fa.y, "SoftmaxBackward")](const Node&, TensorList& g) -> TensorList {
        const Tensor& yv = sy.get();
        SoftmaxBwdArgs ba{yv, g[0].contiguous(), Tensor::empty(yv.shape(), yv.dtype(), yv.device()),
                          log};
        softmax_bwd(ba);
        return {ba.dx};
      });
  return last ? y : transpose(y, d, -1);
}
}  // namespace

Variable softmax(const Variable& x, int64_t dim) {
  return softmax_impl(x, dim, false);
}
Variable log_softmax(const Variable& x, int64_t dim) {
  return softmax_impl(x, dim, true);
}

}  // namespace seqmix
