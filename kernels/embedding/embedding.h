// Embedding lookup with a deterministic backward.
//   out[n, :] = weight[idx[n], :]                       (cast to out's dtype)
//   dweight[v, :] += sum_{n : idx[n] = v} dout[n, :]    (summed in increasing n, no atomics)
// Layouts: weight [V, C] (floating, rows contiguous), indices [N] i64 / i32 (any leading shape
// flattens to N), out / dout [N, C] floating (any dtype; f32 master weights with bf16 activations
// is the usual case), dweight [V, C] f32 or weight's dtype, accumulated.
// Out-of-range indices: the CPU raises; the GPU writes NaN rows in the forward (loud, no host
// sync) and ignores them in the backward.
#pragma once
#include <optional>

#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

struct EmbeddingFwdArgs {
  Tensor weight;   // [V, C]
  Tensor indices;  // [N]
  Tensor out;      // [N, C] out
};

struct EmbeddingBwdArgs {
  Tensor indices;  // [N]
  Tensor dout;     // [N, C]
  Tensor dweight;  // [V, C] accumulated
};

Support embedding_supports(const EmbeddingFwdArgs& a);
void embedding_fwd(const EmbeddingFwdArgs& a);
void embedding_bwd(const EmbeddingBwdArgs& a);
void embedding_fwd_ref(const EmbeddingFwdArgs& a);
void embedding_bwd_ref(const EmbeddingBwdArgs& a);
void embedding_fwd_cuda(const EmbeddingFwdArgs& a);
void embedding_bwd_cuda(const EmbeddingBwdArgs& a);

// Differentiable: indices [...] -> [..., C] in `out_dtype` (weight's dtype by default).
Variable embedding(const Variable& weight, const Tensor& indices,
                   std::optional<DType> out_dtype = std::nullopt);

}  // namespace seqmix
