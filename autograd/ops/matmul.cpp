// Matrix product and its gradient:  C = A B  ->  dA = dC B^T,  dB = A^T dC, each summed over
// the batch dims that were broadcast. Transposes are views; cuBLASLt consumes them directly.
// When B is shared across A's batch (a 2-d weight), dB is one GEMM over the flattened batch.
#include "core/ops/matmul.h"
#include "autograd/function.h"
#include "autograd/functions.h"
#include "core/check.h"

namespace seqmix {

Variable matmul(const Variable& a, const Variable& b) {
  Tensor out = ops::matmul(a.data(), b.data());
  return record("MatmulBackward", {&a, &b}, std::move(out),
                [ma = InputMeta(a.data()), mb = InputMeta(b.data()),
                 sa = b.requires_grad() ? SavedTensor(a.data(), "MatmulBackward") : SavedTensor(),
                 sb = a.requires_grad() ? SavedTensor(b.data(), "MatmulBackward") : SavedTensor()](
                    const Node& self, TensorList& g) -> TensorList {
                  const Tensor& gc = g[0];
                  Tensor ga, gb;
                  if (self.needs_input_grad(0)) {
                    const Tensor& bt = sb.get();
                    ga = fit_grad(ops::matmul(gc, bt.transpose(-1, -2)), ma);
                  }
                  if (self.needs_input_grad(1)) {
                    const Tensor& at = sa.get();
                    if (mb.shape.size() == 2 && at.dim() > 2) {
                      // Sum over the batch inside one GEMM: [K, B*M] @ [B*M, N].
                      const Tensor a2 = at.reshape({-1, at.size(-1)});
                      const Tensor g2 = gc.reshape({-1, gc.size(-1)});
                      gb = ops::matmul(a2.transpose(0, 1), g2);
                      if (gb.dtype() != mb.dtype) gb = gb.to(mb.dtype);
                    } else {
                      gb = fit_grad(ops::matmul(at.transpose(-1, -2), gc), mb);
                    }
                  }
                  return {ga, gb};
                });
}

}  // namespace seqmix
