// Fused cross-entropy over logits, without materialising probabilities.
//   per row n with target t_n != ignore_index:  loss_n = lse(logits_n) - logits_n[t_n]
//   loss = sum_n loss_n / count   (mean; count = number of non-ignored rows)  or  sum_n loss_n
//   dlogits[n, v] = dloss * scale * (exp(logits[n, v] - lse_n) - [v == t_n])  (0 for ignored rows)
//   scale = 1 / count (mean) or 1 (sum)
// Layouts: logits [N, V] (rows contiguous; bf16/f16/f32/f64), targets [N] i64 or i32,
// lse [N] f32 (f64 for f64 logits), loss and count 0-d f32 (f64 for f64 logits), dlogits like
// logits (may alias logits: each element is read before it is written). The scalar loss and the
// count stay on the device: no host synchronisation in forward or backward.
// Targets outside [0, V) other than ignore_index: the CPU raises; the GPU writes NaN to that row's
// loss so the total is NaN (it cannot raise from a kernel without a host sync).
#pragma once
#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

enum class LossReduction { Mean, Sum };

struct CrossEntropyFwdArgs {
  Tensor logits;   // [N, V]
  Tensor targets;  // [N] i64 / i32
  Tensor lse;      // [N] out (saved for backward)
  Tensor loss;     // [] out
  Tensor count;    // [] out: number of rows not ignored
  int64_t ignore_index = -100;
  LossReduction reduction = LossReduction::Mean;
};

struct CrossEntropyBwdArgs {
  Tensor logits;   // [N, V]
  Tensor targets;  // [N]
  Tensor lse;      // [N] from the forward
  Tensor count;    // [] from the forward
  Tensor dloss;    // [] gradient of the loss
  Tensor dlogits;  // [N, V] out (may be logits itself)
  int64_t ignore_index = -100;
  LossReduction reduction = LossReduction::Mean;
};

Support cross_entropy_supports(const CrossEntropyFwdArgs& a);
void cross_entropy_fwd(const CrossEntropyFwdArgs& a);
void cross_entropy_bwd(const CrossEntropyBwdArgs& a);
void cross_entropy_fwd_ref(const CrossEntropyFwdArgs& a);
void cross_entropy_bwd_ref(const CrossEntropyBwdArgs& a);
void cross_entropy_fwd_cuda(const CrossEntropyFwdArgs& a);
void cross_entropy_bwd_cuda(const CrossEntropyBwdArgs& a);

// Differentiable: logits [..., V], targets [...]. Returns the 0-d loss (f32, f64 for f64 logits).
Variable cross_entropy(const Variable& logits, const Tensor& targets, int64_t ignore_index = -100,
                       LossReduction reduction = LossReduction::Mean);

}  // namespace seqmix
