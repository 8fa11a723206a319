// Elementwise ops and their gradients.
//   add:  da = g,        db = alpha g       (summed back over broadcast dims)
//   sub:  da = g,        db = -g
//   mul:  da = g b,      db = g a
//   div:  da = g / b,    db = -(g / b) (a / b)
//   unary f: dx = g f'(x), one fused kernel (ops::unary_backward) that recomputes f' from x.
#include "core/ops/elementwise.h"
#include "autograd/function.h"
#include "autograd/functions.h"
#include "core/check.h"
#include "core/ops/reduce.h"

namespace seqmix {

Tensor fit_grad(const Tensor& g, const InputMeta& meta) {
  Tensor r = ops::sum_to(g, meta.shape);
  return r.dtype() == meta.dtype ? r : r.to(meta.dtype);
}

Variable add(const Variable& a, const Variable& b, double alpha) {
  Tensor out = ops::add(a.data(), b.data(), alpha);
  return record("AddBackward", {&a, &b}, std::move(out),
                [ma = InputMeta(a.data()), mb = InputMeta(b.data()), alpha](
                    const Node& self, TensorList& g) -> TensorList {
                  Tensor ga, gb;
                  if (self.needs_input_grad(0)) ga = fit_grad(g[0], ma);
                  if (self.needs_input_grad(1))
                    gb = fit_grad(alpha == 1.0 ? g[0] : ops::mul_scalar(g[0], alpha), mb);
                  return {ga, gb};
                });
}

Variable sub(const Variable& a, const Variable& b) {
  Tensor out = ops::sub(a.data(), b.data());
  return record("SubBackward", {&a, &b}, std::move(out),
                [ma = InputMeta(a.data()), mb = InputMeta(b.data())](const Node& self,
                                                                     TensorList& g) -> TensorList {
                  Tensor ga, gb;
                  if (self.needs_input_grad(0)) ga = fit_grad(g[0], ma);
                  if (self.needs_input_grad(1)) gb = fit_grad(ops::neg(g[0]), mb);
                  return {ga, gb};
                });
}

Variable mul(const Variable& a, const Variable& b) {
  Tensor out = ops::mul(a.data(), b.data());
  // da needs b and db needs a: save each only when the other side needs a gradient.
  return record("MulBackward", {&a, &b}, std::move(out),
                [ma = InputMeta(a.data()), mb = InputMeta(b.data()),
                 sa = b.requires_grad() ? SavedTensor(a.data(), "MulBackward") : SavedTensor(),
                 sb = a.requires_grad() ? SavedTensor(b.data(), "MulBackward") : SavedTensor()](
                    const Node& self, TensorList& g) -> TensorList {
                  Tensor ga, gb;
                  if (self.needs_input_grad(0)) ga = fit_grad(ops::mul(g[0], sb.get()), ma);
                  if (self.needs_input_grad(1)) gb = fit_grad(ops::mul(g[0], sa.get()), mb);
                  return {ga, gb};
                });
}

Variable div(const Variable& a, const Variable& b) {
  Tensor out = ops::div(a.data(), b.data());
  Tensor out_saved = b.requires_grad() ? out : Tensor();
  return record(
      "DivBackward", {&a, &b}, std::move(out),
      [ma = InputMeta(a.data()), mb = InputMeta(b.data()),
       sb = SavedTensor(b.data(), "DivBackward"),
       so = SavedTensor(out_saved, "DivBackward")](const Node& self, TensorList& g) -> TensorList {
        Tensor ga, gb;
        const Tensor g_over_b = ops::div(g[0], sb.get());
        if (self.needs_input_grad(0)) ga = fit_grad(g_over_b, ma);
        if (self.needs_input_grad(1)) gb = fit_grad(ops::neg(ops::mul(g_over_b, so.get())), mb);
        return {ga, gb};
      });
}

Variable unary(ops::UnaryOp op, const Variable& x, double scalar) {
  Tensor out = ops::unary(op, x.data(), scalar);
  // Ops whose derivative does not depend on x save nothing.
  const bool linear = op == ops::UnaryOp::Neg || op == ops::UnaryOp::AddScalar ||
                      op == ops::UnaryOp::MulScalar || op == ops::UnaryOp::RSubScalar;
  return record("UnaryBackward", {&x}, std::move(out),
                [op, scalar, linear, sx = SavedTensor(x.data(), ops::unary_op_name(op))](
                    const Node&, TensorList& g) -> TensorList {
                  if (linear) {
                    switch (op) {
                      case ops::UnaryOp::AddScalar:
                        return {g[0]};
                      case ops::UnaryOp::MulScalar:
                        return {ops::mul_scalar(g[0], scalar)};
                      default:
                        return {ops::neg(g[0])};
                    }
                  }
                  return {ops::unary_backward(op, sx.get(), g[0], scalar)};
                });
}

Variable add(const Variable& x, double s) {
  return unary(ops::UnaryOp::AddScalar, x, s);
}
Variable mul(const Variable& x, double s) {
  return unary(ops::UnaryOp::MulScalar, x, s);
}
Variable rsub(const Variable& x, double s) {
  return unary(ops::UnaryOp::RSubScalar, x, s);
}
Variable rdiv(const Variable& x, double s) {
  return unary(ops::UnaryOp::RDivScalar, x, s);
}
Variable neg(const Variable& x) {
  return unary(ops::UnaryOp::Neg, x);
}
Variable exp(const Variable& x) {
  return unary(ops::UnaryOp::Exp, x);
}
Variable log(const Variable& x) {
  return unary(ops::UnaryOp::Log, x);
}
Variable sqrt(const Variable& x) {
  return unary(ops::UnaryOp::Sqrt, x);
}
Variable rsqrt(const Variable& x) {
  return unary(ops::UnaryOp::Rsqrt, x);
}
Variable pow(const Variable& x, double p) {
  return unary(ops::UnaryOp::Pow, x, p);
}
Variable sigmoid(const Variable& x) {
  return unary(ops::UnaryOp::Sigmoid, x);
}
Variable logsigmoid(const Variable& x) {
  return unary(ops::UnaryOp::LogSigmoid, x);
}
Variable silu(const Variable& x) {
  return unary(ops::UnaryOp::Silu, x);
}
Variable gelu(const Variable& x, bool tanh_approximation) {
  return unary(tanh_approximation ? ops::UnaryOp::GeluTanh : ops::UnaryOp::GeluErf, x);
}
Variable tanh(const Variable& x) {
  return unary(ops::UnaryOp::Tanh, x);
}
Variable softplus(const Variable& x) {
  return unary(ops::UnaryOp::Softplus, x);
}
Variable relu(const Variable& x) {
  return unary(ops::UnaryOp::Relu, x);
}
Variable abs(const Variable& x) {
  return unary(ops::UnaryOp::Abs, x);
}

Variable cast(const Variable& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  Tensor out = x.data().to(dtype);
  return record(
      "CastBackward", {&x}, std::move(out),
      [from = x.dtype()](const Node&, TensorList& g) -> TensorList { return {g[0].to(from)}; });
}

}  // namespace seqmix
