// Elementwise iteration over up to four operands with broadcasting and arbitrary strides.
// Operand 0 is the output and defines the iteration shape; inputs are broadcast to it (stride 0).
// Dimensions are coalesced where every operand allows it, so the common dense case collapses to
// one dimension with unit strides (`contiguous`), which kernels handle with vector loads.
// Safe for .cu files; the builder (make_elem_iter) is host code in iter.cpp.
#pragma once
#include <cstdint>

#include "core/macros.h"
#include "core/shape.h"

namespace seqmix {
class Tensor;

namespace ops {

// Whether `p` is 16-byte aligned (a whole 16-byte vector may be loaded or stored there).
SEQMIX_HD inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

struct ElemIter {
  static constexpr int kMaxOperands = 4;
  int ndim = 0;
  int nops = 0;
  int64_t numel = 0;
  bool contiguous = false;  // one dimension, unit stride for every operand
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxOperands][kMaxDims] = {};

  // Element offsets (in elements, relative to each operand's data pointer) of linear index i.
  // Iterations of fewer than 2^32 elements divide in 32 bits (a 64-bit division is a long
  // software sequence on the GPU; a strided copy of 12.6M bf16 ran at 0.6 TB/s with it).
  template <int N>
  SEQMIX_HD SEQMIX_FORCE_INLINE void offsets(int64_t i, int64_t (&off)[N]) const {
    SEQMIX_UNROLL
    for (int k = 0; k < N; ++k) off[k] = 0;
    if (numel <= int64_t(0xffffffffu)) {
      uint32_t j = uint32_t(i);
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t sz = uint32_t(sizes[d]);
        const uint32_t q = j / sz;
        const int64_t idx = int64_t(j - q * sz);
        j = q;
        SEQMIX_UNROLL
        for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
      }
      return;
    }
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t sz = sizes[d];
      const int64_t idx = i % sz;
      i /= sz;
      SEQMIX_UNROLL
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
    }
  }
};

// Builds the iteration for output `out` and inputs `ins` (each broadcastable to out's shape).
ElemIter make_elem_iter(const Tensor& out, std::initializer_list<const Tensor*> ins);

// How the CUDA element-wise kernel walks an iteration (core/ops/elementwise_cuda.cu):
//   Vector  - contiguous, every pointer 16-byte aligned: 16-byte vectors, no index math;
//   Contig  - contiguous otherwise: one element per thread, no index math;
//   Rows    - the innermost dim is a whole number of 16-byte vectors; the output and every input
//             not broadcast along it are unit-stride there and 16-byte aligned at every row (base
//             and outer strides); one index computation per vector. Bit k of `bcast` marks
//             input k as broadcast along the innermost dim (one scalar per row);
//   Strided - anything else: one index computation per element.
enum class ElemPath : int { Strided = 0, Contig = 1, Vector = 2, Rows = 3 };
struct ElemPlan {
  ElemPath path = ElemPath::Strided;
  int bcast = 0;
};
// The path for `it` whose operands all have `elem_size`-byte elements; ptrs[0] is the output,
// ptrs[1..] the inputs, in the iterator's operand order. Host logic only (compiled in CPU builds
// too, so tests can check which layouts take which path without a GPU).
ElemPlan plan_elementwise_cuda(const ElemIter& it, int elem_size, const void* const* ptrs);

}  // namespace ops
}  // namespace seqmix
