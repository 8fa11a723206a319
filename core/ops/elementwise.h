// Elementwise tensor operations (no autograd). CPU and CUDA, every floating dtype; inputs are
// broadcast (numpy rules) and may have any strides; outputs are new contiguous tensors unless an
// `_out` / in-place form is used. Computation happens in float (double for f64 tensors).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace seqmix::ops {

enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Sqrt,
  Rsqrt,
  Pow,  // x ^ scalar
  Sigmoid,
  LogSigmoid,
  Silu,
  GeluErf,   // 0.5 x (1 + erf(x / sqrt 2))
  GeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  Tanh,
  Softplus,  // log(1 + e^x), linear above x = 20 (as PyTorch)
  Relu,
  Abs,
  AddScalar,   // x + scalar
  MulScalar,   // x * scalar
  RSubScalar,  // scalar - x
  RDivScalar,  // scalar / x
};
inline constexpr int kNumUnaryOps = 19;
const char* unary_op_name(UnaryOp op);

enum class BinaryOp : uint8_t {
  Add,  // a + alpha * b
  Sub,  // a - b
  Mul,  // a * b
  Div,  // a / b
};
const char* binary_op_name(BinaryOp op);

// y = f(x)
Tensor unary(UnaryOp op, const Tensor& x, double scalar = 0.0);
// out = f(x); out may be x itself (in place). Bumps out's version.
void unary_out(UnaryOp op, const Tensor& out, const Tensor& x, double scalar = 0.0);
// dx = dy * f'(x): the fused backward of `unary`, recomputing what it needs from x.
Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& dy, double scalar = 0.0);

// c = a (op) b with broadcasting; mixed floating dtypes compute in the wider one.
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha = 1.0);
// out = a (op) b; out must have the broadcast shape and may alias a or b. Bumps out's version.
void binary_out(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b,
                double alpha = 1.0);

// Shorthands.
inline Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0) {
  return binary(BinaryOp::Add, a, b, alpha);
}
inline Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Sub, a, b);
}
inline Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Mul, a, b);
}
inline Tensor div(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Div, a, b);
}
inline Tensor neg(const Tensor& x) {
  return unary(UnaryOp::Neg, x);
}
inline Tensor exp(const Tensor& x) {
  return unary(UnaryOp::Exp, x);
}
inline Tensor log(const Tensor& x) {
  return unary(UnaryOp::Log, x);
}
inline Tensor sqrt(const Tensor& x) {
  return unary(UnaryOp::Sqrt, x);
}
inline Tensor mul_scalar(const Tensor& x, double s) {
  return unary(UnaryOp::MulScalar, x, s);
}
inline Tensor add_scalar(const Tensor& x, double s) {
  return unary(UnaryOp::AddScalar, x, s);
}
// In place: a += alpha * b (b broadcast to a); a *= s.
inline void add_(const Tensor& a, const Tensor& b, double alpha = 1.0) {
  binary_out(BinaryOp::Add, a, a, b, alpha);
}
inline void mul_(const Tensor& a, double s) {
  unary_out(UnaryOp::MulScalar, a, a, s);
}

}  // namespace seqmix::ops
