// softmax / log_softmax over the last dimension, fused forward and backward.
//   y = exp(x - lse(x))           (log: y = x - lse(x)),   lse over the last dim
//   dx = y (dy - sum(dy y))       (log: dx = dy - exp(y) sum(dy))
// Layouts: x, y, dy, dx: [N, C], rows contiguous (any leading shape flattens to N), one floating
// dtype for all; accumulation in fp32 (fp64 for f64). Activation grads are written (dx).
#pragma once
#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

struct SoftmaxFwdArgs {
  Tensor x;  // [..., C]
  Tensor y;  // [..., C] out
  bool log = false;
};

struct SoftmaxBwdArgs {
  Tensor y;   // forward output
  Tensor dy;  // [..., C]
  Tensor dx;  // [..., C] out (may alias dy)
  bool log = false;
};

Support softmax_supports(const SoftmaxFwdArgs& a);
void softmax_fwd(const SoftmaxFwdArgs& a);  // dispatches on device
void softmax_bwd(const SoftmaxBwdArgs& a);
void softmax_fwd_ref(const SoftmaxFwdArgs& a);  // CPU reference
void softmax_bwd_ref(const SoftmaxBwdArgs& a);
void softmax_fwd_cuda(const SoftmaxFwdArgs& a);
void softmax_bwd_cuda(const SoftmaxBwdArgs& a);

// Differentiable forms over dimension `dim` (the last by default; other dims go through a
// transposed contiguous copy).
Variable softmax(const Variable& x, int64_t dim = -1);
Variable log_softmax(const Variable& x, int64_t dim = -1);

}  // namespace seqmix
