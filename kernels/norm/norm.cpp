// RMSNorm / LayerNorm: validation, dispatch, autograd node.
#include "kernels/norm/norm.h"

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"

namespace seqmix {

namespace {
DType stat_dtype(DType x) {
  return x == DType::F64 ? DType::F64 : DType::F32;
}
const char* kind_name(NormKind k) {
  return k == NormKind::Rms ? "rms_norm" : "layer_norm";
}

void check_param(const char* op, const char* name, const Tensor& p, const Tensor& x) {
  if (!p.defined()) return;
  ops::check_shape(op, name, p, {x.size(-1)});
  SEQMIX_CHECK(p.dtype() == x.dtype() || p.dtype() == DType::F32,
               "{}: '{}' must be {} or f32, got {}", op, name, dtype_name(x.dtype()),
               dtype_name(p.dtype()));
  SEQMIX_CHECK(p.is_contiguous(), "{}: '{}' must be contiguous", op, name);
  SEQMIX_CHECK(p.device() == x.device(), "{}: '{}' is on {} but x is on {}", op, name,
               p.device().str(), x.device().str());
}
void check_rows(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  if (!t.defined()) return;
  ops::check_shape(op, name, t, x.shape());
  ops::check_dtype(op, name, t, x.dtype());
  SEQMIX_CHECK(t.is_contiguous(), "{}: '{}' must be contiguous", op, name);
}
void check_stat(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  if (!t.defined()) return;
  const int64_t c = x.size(-1), n = c ? x.numel() / c : 0;
  ops::check_shape(op, name, t, {n});
  ops::check_dtype(op, name, t, stat_dtype(x.dtype()));
}
}  // namespace

Support norm_supports(const NormFwdArgs& a) {
  if (!is_floating(a.x.dtype())) return Support::no("x must be floating");
  if (a.x.dim() == 0 || a.x.size(-1) == 0) return Support::no("the normalised dim is empty");
  if (a.x.dtype() == DType::F64 && ((a.weight.defined() && a.weight.dtype() != DType::F64) ||
                                    (a.bias.defined() && a.bias.dtype() != DType::F64)))
    return Support::no("f64 x needs f64 weight and bias");
  if (a.kind == NormKind::Rms && a.bias.defined()) return Support::no("rms_norm has no bias");
  return Support::yes();
}

void norm_fwd(const NormFwdArgs& a) {
  const char* op = kind_name(a.kind);
  SEQMIX_CHECK(a.x.defined() && a.y.defined(), "{}: x and y are required", op);
  const Support s = norm_supports(a);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", op, s.why);
  const Device dev = ops::common_device(op, {{"x", &a.x}, {"y", &a.y}});
  check_rows(op, "x", a.x, a.x);
  check_rows(op, "y", a.y, a.x);
  check_param(op, "weight", a.weight, a.x);
  check_param(op, "bias", a.bias, a.x);
  check_stat(op, "mean", a.mean, a.x);
  check_stat(op, "rstd", a.rstd, a.x);
  if (dev.is_cpu()) {
    norm_fwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    norm_fwd_cuda(a);
#endif
  }
  a.y.bump_version();
}

void norm_bwd(const NormBwdArgs& a) {
  const char* op = kind_name(a.kind);
  SEQMIX_CHECK(a.x.defined() && a.dy.defined() && a.rstd.defined(),
               "{}_bwd: x, dy and rstd are required", op);
  SEQMIX_CHECK(a.kind == NormKind::Rms || a.mean.defined(), "layer_norm_bwd: mean is required");
  const Device dev = ops::common_device(op, {{"x", &a.x}, {"dy", &a.dy}, {"rstd", &a.rstd}});
  check_rows(op, "dy", a.dy, a.x);
  check_rows(op, "dx", a.dx, a.x);
  check_param(op, "weight", a.weight, a.x);
  check_stat(op, "mean", a.mean, a.x);
  check_stat(op, "rstd", a.rstd, a.x);
  for (const auto& [name, t] : {std::pair{"dweight", &a.dweight}, std::pair{"dbias", &a.dbias}}) {
    if (!t->defined()) continue;
    ops::check_shape(op, name, *t, {a.x.size(-1)});
    SEQMIX_CHECK(t->device() == dev, "{}: '{}' is on {}", op, name, t->device().str());
    SEQMIX_CHECK((t->dtype() == DType::F32 || t->dtype() == a.x.dtype()) && t->is_contiguous(),
                 "{}: '{}' must be a contiguous {} or f32 tensor", op, name,
                 dtype_name(a.x.dtype()));
  }
  if (dev.is_cpu()) {
    norm_bwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    norm_bwd_cuda(a);
#endif
  }
  if (a.dx.defined()) a.dx.bump_version();
  if (a.dweight.defined()) a.dweight.bump_version();
  if (a.dbias.defined()) a.dbias.bump_version();
}

namespace {
Variable norm_op(NormKind kind, const Variable& x, const Variable& w, const Variable& b,
                 double eps) {
  const Tensor xc = x.data().contiguous();
  const int64_t c = xc.size(-1), n = c ? xc.numel() / c : 0;
  NormFwdArgs fa;
  fa.kind = kind;
  fa.x = xc;
  fa.weight = w.defined() ? w.data() : Tensor();
  fa.bias = b.defined() ? b.data() : Tensor();
  fa.y = xc.empty_like();
  fa.rstd = Tensor::empty({n}, stat_dtype(xc.dtype()), xc.device());
  if (kind == NormKind::Layer) fa.mean = Tensor::empty({n}, stat_dtype(xc.dtype()), xc.device());
  fa.eps = eps;
  norm_fwd(fa);
  return record(kind == NormKind::Rms ? "RmsNormBackward" : "LayerNormBackward", {&x, &w, &b}, fa.y,
                [kind, shape = x.shape(), sx = SavedTensor(xc, "NormBackward"),
                 sw = SavedTensor(fa.weight, "NormBackward"), mean = fa.mean, rstd = fa.rstd,
                 bias_dtype = b.defined() ? b.dtype() : DType::F32](const Node& self,
                                                                    TensorList& g) -> TensorList {
                  NormBwdArgs ba;
                  ba.kind = kind;
                  ba.x = sx.get();
                  ba.weight = sw.get();
                  ba.mean = mean;
                  ba.rstd = rstd;
                  ba.dy = g[0].contiguous();
                  const Device dev = ba.x.device();
                  if (self.needs_input_grad(0)) ba.dx = ba.x.empty_like();
                  if (self.needs_input_grad(1))
                    ba.dweight = Tensor::zeros(ba.weight.shape(), ba.weight.dtype(), dev);
                  if (self.needs_input_grad(2))
                    ba.dbias = Tensor::zeros({ba.x.size(-1)}, bias_dtype, dev);
                  norm_bwd(ba);
                  return {ba.dx.defined() ? ba.dx.view(shape) : Tensor(), ba.dweight, ba.dbias};
                });
}
}  // namespace

Variable rms_norm(const Variable& x, const Variable& weight, double eps) {
  return norm_op(NormKind::Rms, x, weight, Variable(), eps);
}
Variable layer_norm(const Variable& x, const Variable& weight, const Variable& bias, double eps) {
  return norm_op(NormKind::Layer, x, weight, bias, eps);
}

}  // namespace seqmix
