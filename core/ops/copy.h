// Copies, casts and fills (no autograd), CPU and CUDA, every dtype.
#pragma once
#include "core/tensor.h"

namespace seqmix::ops {

// dst[...] = cast(src[...]); src is broadcast to dst's shape; any strides on both sides; any
// pair of dtypes (floats to ints truncate toward zero). Copies between CPU and CUDA stage through
// a contiguous buffer. Bumps dst's version.
void copy_(const Tensor& dst, const Tensor& src);
// Every element of dst = value (converted to dst's dtype). Bumps dst's version.
void fill_(const Tensor& dst, double value);
// Concatenation along `dim` (all inputs share dtype, device and the other dims).
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
// Stacks equally-shaped tensors along a new dimension `dim`.
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

}  // namespace seqmix::ops
