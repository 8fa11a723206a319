// Matrix products (no autograd). CPU: OpenBLAS (bf16/f16 via f32). CUDA: cuBLASLt with fp32
// accumulation (bf16/f16 inputs use the tensor cores; f32 inputs use full fp32 unless TF32 is
// enabled with set_allow_tf32). Transposed operands (a .transpose(-1, -2) view) are passed to
// the library as transposes, never copied.
#pragma once
#include "core/tensor.h"

namespace seqmix::ops {

// a: [..., M, K], b: [..., K, N] -> [..., M, N]. Batch dims broadcast (a 2-d b is shared by every
// batch of a, and that case runs as one large GEMM). Both operands share dtype and device.
Tensor matmul(const Tensor& a, const Tensor& b);
// out = alpha * (a @ b) + beta * out. out must be [..., M, N] with unit stride on its last dim;
// its dtype may differ from a's (e.g. f32 out for bf16 inputs, for gradient accumulation).
void matmul_out(const Tensor& out, const Tensor& a, const Tensor& b, double alpha = 1.0,
                double beta = 0.0);

void set_allow_tf32(bool on);
bool allow_tf32();

}  // namespace seqmix::ops
