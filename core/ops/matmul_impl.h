// Internal GEMM interface: row-major C[M, N] = alpha * A[M, K] B[K, N] + beta * C, batched with
// constant batch strides (0 = shared). Each input is stored row-major (col_major = false: element
// (i, j) at i * ld + j) or column-major (col_major = true: at j * ld + i), which is how transposed
// views reach the library without copies. C is row-major.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/macros.h"

namespace seqmix::ops::impl {

struct GemmOperand {
  const void* ptr = nullptr;
  bool col_major = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

struct GemmArgs {
  DType ab_dtype = DType::F32;  // A and B
  DType c_dtype = DType::F32;   // C: ab_dtype or f32
  int64_t m = 0, n = 0, k = 0, batch = 1;
  GemmOperand a, b;
  void* c = nullptr;
  int64_t ldc = 0;
  int64_t c_batch_stride = 0;
  double alpha = 1.0, beta = 0.0;
  bool allow_tf32 = false;
};

void gemm_cpu(const GemmArgs& g);
void gemm_cuda(const GemmArgs& g, int device, cudaStream_t stream);

}  // namespace seqmix::ops::impl
