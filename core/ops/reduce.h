// Reductions (no autograd), CPU and CUDA, floating dtypes. Accumulation is in fp32 on the GPU
// (fp64 for f64 tensors) and in fp64 on the CPU (the reference). Every reduction is deterministic:
// a fixed combination order for a given shape, no atomics.
#pragma once
#include <utility>

#include "core/tensor.h"

namespace seqmix::ops {

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, LogSumExp };
const char* reduce_op_name(ReduceOp op);

// Reduces `dim` (negative counts from the end). The result keeps x's dtype.
Tensor reduce(ReduceOp op, const Tensor& x, int64_t dim, bool keepdim = false);
// Reduces several dims at once.
Tensor reduce(ReduceOp op, const Tensor& x, const DimVec& dims, bool keepdim = false);
// Reduces every element to a 0-d tensor.
Tensor reduce_all(ReduceOp op, const Tensor& x);
// Max (or min) along dim with the index of the first extremum (i64). NaN counts as maximal.
std::pair<Tensor, Tensor> max_with_index(const Tensor& x, int64_t dim, bool keepdim = false);
std::pair<Tensor, Tensor> min_with_index(const Tensor& x, int64_t dim, bool keepdim = false);
// Sums x down to `shape` (the inverse of broadcasting `shape` to x's shape).
Tensor sum_to(const Tensor& x, const Shape& shape);

inline Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false) {
  return reduce(ReduceOp::Sum, x, dim, keepdim);
}
inline Tensor sum(const Tensor& x) {
  return reduce_all(ReduceOp::Sum, x);
}
inline Tensor mean(const Tensor& x) {
  return reduce_all(ReduceOp::Mean, x);
}

}  // namespace seqmix::ops
