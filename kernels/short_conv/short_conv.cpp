// Short causal depthwise conv: validation (shapes, dtypes, devices, contiguity, cu_seqlens
// values; errors name the operand), device dispatch, and the autograd node of short_conv(...)
// (saves x, weight, bias, state0; the backward recomputes the pre-activation from x).
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/function.h"
#include "core/check.h"
#include "core/ops/common.h"
#include "kernels/common/validate.h"
#include "kernels/short_conv/short_conv.h"

namespace seqmix {

namespace {
constexpr const char* kOp = "short_conv";

// Optional tensors (states, outputs, gradients) must match `shape`/`dtype`, be contiguous, on
// `dev`.
void check_like(const char* name, const Tensor& t, const Shape& shape, DType dtype, Device dev) {
  check_optional_like(kOp, name, t, shape, dtype, dev, "x");
}

// A parameter (weight, bias, or their gradients): f32 or x's dtype, contiguous, on `dev`.
void check_param(const char* name, const Tensor& t, const Shape& shape, DType x_dtype, Device dev) {
  if (!t.defined()) return;
  ops::check_shape(kOp, name, t, shape);
  SEQMIX_CHECK(t.dtype() == DType::F32 || t.dtype() == x_dtype,
               "{}: '{}' must be f32 or {}, got {}", kOp, name, dtype_name(x_dtype),
               dtype_name(t.dtype()));
  SEQMIX_CHECK(t.is_contiguous(), "{}: '{}' must be contiguous", kOp, name);
  SEQMIX_CHECK(t.device() == dev, "{}: '{}' is on {} but x is on {}", kOp, name, t.device().str(),
               dev.str());
}

// Checks the operands shared by forward and backward; returns the number of sequences N.
int64_t check_common(const Tensor& x, const Tensor& weight, const Tensor& bias,
                     const Tensor& state0, const Tensor& cu) {
  SEQMIX_CHECK(x.defined() && weight.defined(), "{}: x and weight are required", kOp);
  const Device dev = ops::common_device(kOp, {{"x", &x}, {"weight", &weight}});
  SEQMIX_CHECK(x.dim() == 3, "{}: 'x' must be 3-d [B, T, C], got {}", kOp, x.shape_str());
  SEQMIX_CHECK(is_floating(x.dtype()), "{}: 'x' must be floating, got {}", kOp,
               dtype_name(x.dtype()));
  SEQMIX_CHECK(x.is_contiguous(), "{}: 'x' must be contiguous", kOp);
  const int64_t b = x.size(0), t = x.size(1), c = x.size(2);
  SEQMIX_CHECK(
      weight.dim() == 2 && weight.size(0) == c && weight.size(1) >= 2 && weight.size(1) <= 4,
      "{}: 'weight' must be [C={}, W] with width W in 2..4, got {}", kOp, c, weight.shape_str());
  const int64_t w = weight.size(1);
  check_param("weight", weight, {c, w}, x.dtype(), dev);
  check_param("bias", bias, {c}, x.dtype(), dev);
  int64_t n = b;
  if (cu.defined()) n = check_cu_seqlens(kOp, cu, dev, b, t, "x");
  check_like("state0", state0, {n, w - 1, c}, x.dtype(), dev);
  return n;
}

void check_support(const ShortConvFwdArgs& f) {
  const Support s = short_conv_supports(f);
  SEQMIX_CHECK_KIND(Unsupported, s.ok, "{}: {}", kOp, s.why);
}
}  // namespace

Support short_conv_supports(const ShortConvFwdArgs& a) {
  if (!is_floating(a.x.dtype())) return Support::no("x must be floating");
  if (a.weight.dim() == 2 && (a.weight.size(1) < 2 || a.weight.size(1) > 4))
    return Support::no("the conv width must be 2..4, got " + std::to_string(a.weight.size(1)));
  if (!a.x.device().is_cuda()) return Support::yes();  // the reference takes every float dtype
#if !SEQMIX_WITH_CUDA
  return Support::no("seqmix was built without CUDA");
#else
  const DType t = a.x.dtype();
  if (t != DType::BF16 && t != DType::F32)
    return Support::no(std::string("CUDA short_conv takes bf16 or f32 inputs, got ") +
                       dtype_name(t));
  if (a.x.dim() == 3 && a.x.size(2) > int64_t(65535) * 32)
    return Support::no("CUDA short_conv takes at most 65535 * 32 channels (grid limit)");
  return Support::yes();
#endif
}

void short_conv_fwd(const ShortConvFwdArgs& a) {
  const int64_t n = check_common(a.x, a.weight, a.bias, a.state0, a.cu_seqlens);
  SEQMIX_CHECK(a.y.defined(), "{}: the output 'y' is required", kOp);
  const Device dev = a.x.device();
  const int64_t w = a.weight.size(1), c = a.x.size(2);
  check_like("y", a.y, a.x.shape(), a.x.dtype(), dev);
  check_like("state_t", a.state_t, {n, w - 1, c}, a.x.dtype(), dev);
  check_support(a);
  if (a.x.numel() > 0 || (a.state_t.defined() && a.state_t.numel() > 0)) {
    if (dev.is_cpu()) {
      short_conv_fwd_ref(a);
    } else {
#if SEQMIX_WITH_CUDA
      cuda::DeviceGuard g(dev.index);
      short_conv_fwd_cuda(a);
#endif
    }
  }
  a.y.bump_version();
  if (a.state_t.defined()) a.state_t.bump_version();
}

void short_conv_bwd(const ShortConvBwdArgs& a) {
  const int64_t n = check_common(a.x, a.weight, a.bias, a.state0, a.cu_seqlens);
  SEQMIX_CHECK(a.dy.defined(), "{}_bwd: 'dy' is required", kOp);
  const Device dev = a.x.device();
  const int64_t w = a.weight.size(1), c = a.x.size(2);
  check_like("dy", a.dy, a.x.shape(), a.x.dtype(), dev);
  check_like("dstate_t", a.dstate_t, {n, w - 1, c}, a.x.dtype(), dev);
  check_like("dx", a.dx, a.x.shape(), a.x.dtype(), dev);
  check_like("dstate0", a.dstate0, {n, w - 1, c}, a.x.dtype(), dev);
  check_param("dweight", a.dweight, {c, w}, a.x.dtype(), dev);
  check_param("dbias", a.dbias, {c}, a.x.dtype(), dev);
  ShortConvFwdArgs f;
  f.x = a.x;
  f.weight = a.weight;
  check_support(f);
  if (dev.is_cpu()) {
    short_conv_bwd_ref(a);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    short_conv_bwd_cuda(a);
#endif
  }
  for (const Tensor* t : {&a.dx, &a.dweight, &a.dbias, &a.dstate0})
    if (t->defined()) t->bump_version();
}

std::pair<Variable, Variable> short_conv(const Variable& x, const Variable& weight,
                                         const Variable& bias, const Variable& state0,
                                         const Tensor& cu_seqlens, bool silu,
                                         bool want_final_state) {
  SEQMIX_CHECK(x.defined() && weight.defined(), "{}: x and weight are required", kOp);
  ShortConvFwdArgs fa;
  fa.x = x.data().contiguous();
  fa.weight = weight.data().contiguous();
  fa.bias = bias.defined() ? bias.data().contiguous() : Tensor();
  fa.state0 = state0.defined() ? state0.data().contiguous() : Tensor();
  fa.cu_seqlens = cu_seqlens;
  fa.silu = silu;
  fa.y = fa.x.empty_like();
  if (want_final_state) {
    SEQMIX_CHECK(fa.x.dim() == 3 && fa.weight.dim() == 2, "{}: 'x' must be 3-d and 'weight' 2-d",
                 kOp);
    const int64_t n = cu_seqlens.defined() ? cu_seqlens.numel() - 1 : fa.x.size(0);
    fa.state_t =
        Tensor::empty({n, fa.weight.size(1) - 1, fa.x.size(2)}, fa.x.dtype(), fa.x.device());
  }
  short_conv_fwd(fa);
  std::vector<Tensor> outs{fa.y};
  if (want_final_state) outs.push_back(fa.state_t);
  std::vector<Variable> res = record_multi(
      "ShortConvBackward", {&x, &weight, &bias, &state0}, std::move(outs),
      [sx = SavedTensor(fa.x, "ShortConvBackward"),
       sw = SavedTensor(fa.weight, "ShortConvBackward"),
       sb = SavedTensor(fa.bias, "ShortConvBackward"),
       ss = SavedTensor(fa.state0, "ShortConvBackward"), cu = cu_seqlens, silu,
       wdt = weight.dtype(), bdt = bias.defined() ? bias.dtype() : DType::F32,
       xshape = x.shape()](const Node& self, TensorList& g) -> TensorList {
        ShortConvBwdArgs ba;
        ba.x = sx.get();
        ba.weight = sw.get();
        ba.bias = sb.get();
        ba.state0 = ss.get();
        ba.cu_seqlens = cu;
        ba.silu = silu;
        const Device dev = ba.x.device();
        ba.dy = g[0].defined() ? g[0].to(ba.x.dtype()).contiguous() : ba.x.zeros_like();
        if (g.size() > 1 && g[1].defined()) ba.dstate_t = g[1].to(ba.x.dtype()).contiguous();
        if (self.needs_input_grad(0)) ba.dx = ba.x.empty_like();
        if (self.needs_input_grad(1)) ba.dweight = Tensor::zeros(ba.weight.shape(), wdt, dev);
        if (self.needs_input_grad(2)) ba.dbias = Tensor::zeros({ba.x.size(2)}, bdt, dev);
        if (self.needs_input_grad(3)) ba.dstate0 = ba.state0.empty_like();
        short_conv_bwd(ba);
        return {ba.dx.defined() ? ba.dx.view(xshape) : Tensor(), ba.dweight, ba.dbias, ba.dstate0};
      });
  return {res[0], want_final_state ? res[1] : Variable()};
}

}  // namespace seqmix
