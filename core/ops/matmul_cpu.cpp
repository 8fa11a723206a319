// CPU GEMM through OpenBLAS (CBLAS, row-major). bf16/f16 operands are widened to f32 first;
// the result is rounded back when C is 16-bit.
#include <cblas.h>

#include <vector>

#include "core/check.h"
#include "core/dispatch.h"
#include "core/ops/convert.h"
#include "core/ops/matmul_impl.h"

namespace seqmix::ops::impl {
namespace {

// Copies a strided 16-bit operand (rows x cols in its own layout) into a dense f32 buffer with
// the same layout convention (so the same trans flag and ld apply, with ld = dense extent).
template <typename H>
std::vector<float> widen(const GemmOperand& op, int64_t rows, int64_t cols, int64_t* ld_out) {
  const H* p = static_cast<const H*>(op.ptr);
  std::vector<float> w(size_t(rows * cols));
  if (!op.col_major) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) w[size_t(i * cols + j)] = p[i * op.ld + j].to_float();
    *ld_out = std::max<int64_t>(cols, 1);
  } else {
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t i = 0; i < rows; ++i) w[size_t(j * rows + i)] = p[j * op.ld + i].to_float();
    *ld_out = std::max<int64_t>(rows, 1);
  }
  return w;
}

template <typename T>
void gemm_native(const GemmArgs& g) {
  const auto ta = g.a.col_major ? CblasTrans : CblasNoTrans;
  const auto tb = g.b.col_major ? CblasTrans : CblasNoTrans;
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const T* a = static_cast<const T*>(g.a.ptr) + bi * g.a.batch_stride;
    const T* b = static_cast<const T*>(g.b.ptr) + bi * g.b.batch_stride;
    T* c = static_cast<T*>(g.c) + bi * g.c_batch_stride;
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), float(g.alpha), a,
                  int(g.a.ld), b, int(g.b.ld), float(g.beta), c, int(g.ldc));
    } else {
      cblas_dgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), g.alpha, a, int(g.a.ld), b,
                  int(g.b.ld), g.beta, c, int(g.ldc));
    }
  }
}

template <typename H>
void gemm_half(const GemmArgs& g) {
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    GemmOperand a = g.a, b = g.b;
    a.ptr = static_cast<const H*>(g.a.ptr) + bi * g.a.batch_stride;
    b.ptr = static_cast<const H*>(g.b.ptr) + bi * g.b.batch_stride;
    int64_t lda = 0, ldb = 0;
    // Logical extents (A is m x k, B is k x n) whatever the storage order.
    std::vector<float> wa = widen<H>(a, g.m, g.k, &lda);
    std::vector<float> wb = widen<H>(b, g.k, g.n, &ldb);
    // widen() keeps each operand's own convention; the stored matrix for a column-major operand
    // is its transpose in row-major terms, so the trans flags carry over unchanged.
    const auto ta = g.a.col_major ? CblasTrans : CblasNoTrans;
    const auto tb = g.b.col_major ? CblasTrans : CblasNoTrans;
    if (g.c_dtype == DType::F32) {
      float* c = static_cast<float*>(g.c) + bi * g.c_batch_stride;
      cblas_sgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), float(g.alpha), wa.data(),
                  int(lda), wb.data(), int(ldb), float(g.beta), c, int(g.ldc));
    } else {
      H* c = static_cast<H*>(g.c) + bi * g.c_batch_stride;
      std::vector<float> wc(size_t(g.m * g.n));
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j)
          wc[size_t(i * g.n + j)] = g.beta == 0.0 ? 0.f : c[i * g.ldc + j].to_float();
      cblas_sgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), float(g.alpha), wa.data(),
                  int(lda), wb.data(), int(ldb), float(g.beta), wc.data(), int(g.n));
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) c[i * g.ldc + j] = H(wc[size_t(i * g.n + j)]);
    }
  }
}

}  // namespace

void gemm_cpu(const GemmArgs& g) {
  SEQMIX_CHECK(g.m < (int64_t(1) << 31) && g.n < (int64_t(1) << 31) && g.k < (int64_t(1) << 31),
               "matmul: dimensions beyond 2^31 are not supported on the CPU");
  switch (g.ab_dtype) {
    case DType::F32:
      gemm_native<float>(g);
      break;
    case DType::F64:
      gemm_native<double>(g);
      break;
    case DType::BF16:
      gemm_half<bf16>(g);
      break;
    case DType::F16:
      gemm_half<f16>(g);
      break;
    default:
      SEQMIX_THROW(Unsupported, "matmul: dtype {} is not supported", dtype_name(g.ab_dtype));
  }
}

}  // namespace seqmix::ops::impl
