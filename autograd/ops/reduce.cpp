// Reductions and their gradients.
//   sum:        dx = g broadcast back over the reduced dims
//   mean:       dx = g / n broadcast back
//   max:        dx = g at the (first) arg-max, 0 elsewhere
//   logsumexp:  dx = g exp(x - lse)
#include <algorithm>

#include "autograd/function.h"
#include "autograd/functions.h"
#include "core/check.h"
#include "core/ops/index.h"

namespace seqmix {

namespace {
// g has the reduced shape (with or without the kept dims); expand it back to `shape`.
Tensor expand_back(const Tensor& g, const Shape& shape, const DimVec& dims, bool keepdim) {
  Tensor t = g;
  if (!keepdim) {
    DimVec sorted = dims;
    for (int i = 0; i < sorted.size(); ++i) sorted[i] = wrap_dim(sorted[i], shape.size());
    std::sort(sorted.begin(), sorted.end());
    for (int64_t d : sorted) t = t.unsqueeze(d);
  }
  return t.expand(shape);
}

}  // namespace

Variable sum(const Variable& x, const DimVec& dims, bool keepdim) {
  Tensor out = ops::reduce(ops::ReduceOp::Sum, x.data(), dims, keepdim);
  return record("SumBackward", {&x}, std::move(out),
                [shape = x.shape(), dims, keepdim](const Node&, TensorList& g) -> TensorList {
                  return {expand_back(g[0], shape, dims, keepdim)};
                });
}
Variable sum(const Variable& x, int64_t dim, bool keepdim) {
  return sum(x, DimVec{dim}, keepdim);
}
Variable sum(const Variable& x) {
  Tensor out = ops::reduce_all(ops::ReduceOp::Sum, x.data());
  return record("SumBackward", {&x}, std::move(out),
                [shape = x.shape()](const Node&, TensorList& g) -> TensorList {
                  return {g[0].expand(shape)};
                });
}

Variable mean(const Variable& x, int64_t dim, bool keepdim) {
  Tensor out = ops::reduce(ops::ReduceOp::Mean, x.data(), dim, keepdim);
  const int64_t n = x.data().dim() == 0 ? 1 : x.size(dim);
  return record(
      "MeanBackward", {&x}, std::move(out),
      [shape = x.shape(), dim, keepdim, n](const Node&, TensorList& g) -> TensorList {
        return {expand_back(ops::mul_scalar(g[0], 1.0 / double(n)), shape, DimVec{dim}, keepdim)};
      });
}
Variable mean(const Variable& x) {
  Tensor out = ops::reduce_all(ops::ReduceOp::Mean, x.data());
  const int64_t n = x.numel();
  return record("MeanBackward", {&x}, std::move(out),
                [shape = x.shape(), n](const Node&, TensorList& g) -> TensorList {
                  return {ops::mul_scalar(g[0], 1.0 / double(n)).expand(shape)};
                });
}

Variable max(const Variable& x, int64_t dim, bool keepdim) {
  auto [vals, idx] = ops::max_with_index(x.data(), dim, keepdim);
  const int d = wrap_dim(dim, x.dim());
  return record(
      "MaxBackward", {&x}, std::move(vals),
      [shape = x.shape(), d, keepdim, idx = idx](const Node&, TensorList& g) -> TensorList {
        Tensor gk = keepdim ? g[0] : g[0].unsqueeze(d);
        Tensor ik = keepdim ? idx : idx.unsqueeze(d);
        return {ops::scatter_dim(shape, d, ik, gk.contiguous())};
      });
}
Variable max(const Variable& x) {
  Variable flat = reshape(x, {x.numel()});
  return max(flat, 0, false);
}

Variable logsumexp(const Variable& x, int64_t dim, bool keepdim) {
  Tensor out = ops::reduce(ops::ReduceOp::LogSumExp, x.data(), dim, keepdim);
  const int d = wrap_dim(dim, x.dim());
  Tensor lse = keepdim ? out : out.unsqueeze(d);
  return record(
      "LogSumExpBackward", {&x}, std::move(out),
      [d, keepdim, sx = SavedTensor(x.data(), "LogSumExpBackward"),
       sl = SavedTensor(lse, "LogSumExpBackward")](const Node&, TensorList& g) -> TensorList {
        Tensor gk = keepdim ? g[0] : g[0].unsqueeze(d);
        Tensor p = ops::exp(ops::sub(sx.get(), sl.get()));
        return {ops::mul(p, gk)};
      });
}

}  // namespace seqmix
