// Picking one element along a dimension and its inverse (used by max backward and accuracy).
#pragma once
#include "core/tensor.h"

namespace seqmix::ops {

// x: [..., R, ...] (dim of size R); index: i64 with x's shape but size 1 at dim (values in
// [0, R)). Returns out of index's shape with out[..., 0, ...] = x[..., index, ...].
Tensor gather_dim(const Tensor& x, int64_t dim, const Tensor& index);
// The adjoint of gather_dim: a zero tensor of `shape` with src written at the indexed positions.
// Each output position receives at most one value (no accumulation, deterministic).
Tensor scatter_dim(const Shape& shape, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace seqmix::ops
