// Inverted dropout from the counter-based Philox generator:
//   keep_i = U(seed, offset, i) >= p,   y_i = keep_i ? x_i / (1 - p) : 0
// The mask is never stored: the backward regenerates it from (seed, offset), and CPU and GPU
// draw identical masks. x, y: same shape and floating dtype, contiguous; i is the linear index.
#pragma once
#include <cstdint>

#include "autograd/variable.h"
#include "core/ops/random.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

struct DropoutArgs {
  Tensor in;   // x (forward) or dy (backward)
  Tensor out;  // y (forward) or dx (backward); may alias in
  double p = 0.0;
  uint64_t seed = 0;
  uint64_t offset = 0;
};

// Forward and backward are the same masked scaling.
void dropout_apply(const DropoutArgs& a);
void dropout_apply_ref(const DropoutArgs& a);
void dropout_apply_cuda(const DropoutArgs& a);

// Differentiable; identity when !training or p == 0. Draws (seed, offset) from gen.
Variable dropout(const Variable& x, double p, Generator& gen, bool training = true);

}  // namespace seqmix
