// Differentiable generic operations on Variables. Each forward calls the tensor op of
// core/ops; its gradient rule sits next to it in autograd/ops/*.cpp. Fused operations (norms,
// softmax, cross-entropy, embedding, dropout, mixers) live in kernels/.
#pragma once
#include <vector>

#include "autograd/variable.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace seqmix {

// ---- elementwise (broadcasting; mixed floating dtypes compute in the wider one) ----
Variable add(const Variable& a, const Variable& b, double alpha = 1.0);  // a + alpha * b
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable add(const Variable& x, double s);
Variable mul(const Variable& x, double s);
Variable rsub(const Variable& x, double s);  // s - x
Variable rdiv(const Variable& x, double s);  // s / x
Variable neg(const Variable& x);
Variable exp(const Variable& x);
Variable log(const Variable& x);
Variable sqrt(const Variable& x);
Variable rsqrt(const Variable& x);
Variable pow(const Variable& x, double p);
Variable sigmoid(const Variable& x);
Variable logsigmoid(const Variable& x);
Variable silu(const Variable& x);
Variable gelu(const Variable& x, bool tanh_approximation = false);
Variable tanh(const Variable& x);
Variable softplus(const Variable& x);
Variable relu(const Variable& x);
Variable abs(const Variable& x);
// Any unary op of core/ops/elementwise.h.
Variable unary(ops::UnaryOp op, const Variable& x, double scalar = 0.0);

inline Variable operator+(const Variable& a, const Variable& b) {
  return add(a, b);
}
inline Variable operator-(const Variable& a, const Variable& b) {
  return sub(a, b);
}
inline Variable operator*(const Variable& a, const Variable& b) {
  return mul(a, b);
}
inline Variable operator/(const Variable& a, const Variable& b) {
  return div(a, b);
}
inline Variable operator-(const Variable& x) {
  return neg(x);
}
inline Variable operator*(const Variable& x, double s) {
  return mul(x, s);
}
inline Variable operator*(double s, const Variable& x) {
  return mul(x, s);
}
inline Variable operator+(const Variable& x, double s) {
  return add(x, s);
}

// ---- reductions ----
Variable sum(const Variable& x);
Variable sum(const Variable& x, int64_t dim, bool keepdim = false);
Variable sum(const Variable& x, const DimVec& dims, bool keepdim = false);
Variable mean(const Variable& x);
Variable mean(const Variable& x, int64_t dim, bool keepdim = false);
Variable max(const Variable& x);  // gradient goes to the first maximum
Variable max(const Variable& x, int64_t dim, bool keepdim = false);
Variable logsumexp(const Variable& x, int64_t dim, bool keepdim = false);

// ---- matrix product: [..., M, K] @ [..., K, N] ----
Variable matmul(const Variable& a, const Variable& b);

// ---- shape ----
Variable reshape(const Variable& x, const Shape& shape);
Variable view(const Variable& x, const Shape& shape);
Variable transpose(const Variable& x, int64_t d0, int64_t d1);
Variable permute(const Variable& x, const DimVec& dims);
Variable contiguous(const Variable& x);
Variable slice(const Variable& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Variable narrow(const Variable& x, int64_t dim, int64_t start, int64_t length);
// Consecutive pieces of x along dim with the given sizes (summing to x.size(dim)): views, like
// narrow, but one node whose backward writes every piece's gradient into one tensor (a cat of
// them; zeros only where a piece has no gradient) instead of one zero-filled full-size gradient
// per piece for the engine to add.
std::vector<Variable> split(const Variable& x, int64_t dim, const std::vector<int64_t>& sizes);
Variable select(const Variable& x, int64_t dim, int64_t index);
Variable unsqueeze(const Variable& x, int64_t dim);
Variable squeeze(const Variable& x, int64_t dim);
Variable expand(const Variable& x, const Shape& shape);
Variable flatten(const Variable& x, int64_t start = 0, int64_t end = -1);
Variable cat(const std::vector<Variable>& xs, int64_t dim);
Variable stack(const std::vector<Variable>& xs, int64_t dim);

// ---- dtype ----
Variable cast(const Variable& x, DType dtype);

}  // namespace seqmix
