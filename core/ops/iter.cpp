// Builder of ElemIter: broadcast, drop size-1 dims, coalesce.
#include "core/ops/iter.h"

#include <cstdint>

#include "core/check.h"
#include "core/tensor.h"

namespace seqmix::ops {

ElemIter make_elem_iter(const Tensor& out, std::initializer_list<const Tensor*> ins) {
  ElemIter it;
  it.nops = 1 + int(ins.size());
  SEQMIX_ASSERT(it.nops <= ElemIter::kMaxOperands);
  const int nd = out.dim();
  it.numel = out.numel();
  // Gather (size, strides per operand) for each output dim, skipping size-1 dims.
  int64_t sizes[kMaxDims];
  int64_t strides[ElemIter::kMaxOperands][kMaxDims];
  int n = 0;
  for (int d = 0; d < nd; ++d) {
    if (out.shape()[d] == 1) continue;
    sizes[n] = out.shape()[d];
    strides[0][n] = out.strides()[d];
    int k = 1;
    for (const Tensor* t : ins) {
      const int td = d - (nd - t->dim());
      int64_t s = 0;
      if (td >= 0) {
        const int64_t tsz = t->shape()[td];
        SEQMIX_CHECK(tsz == out.shape()[d] || tsz == 1,
                     "operand of shape {} cannot be broadcast to {}", t->shape_str(),
                     out.shape_str());
        s = tsz == 1 ? 0 : t->strides()[td];
      }
      strides[k++][n] = s;
    }
    ++n;
  }
  for (const Tensor* t : ins)
    SEQMIX_CHECK(t->dim() <= nd, "operand of shape {} cannot be broadcast to {}", t->shape_str(),
                 out.shape_str());
  // Coalesce adjacent dims (outer d-1 into inner d) when every operand is linear across them.
  int m = 0;
  for (int d = 0; d < n; ++d) {
    if (m > 0) {
      bool ok = true;
      for (int k = 0; k < it.nops; ++k)
        if (it.strides[k][m - 1] != strides[k][d] * sizes[d]) ok = false;
      if (ok) {
        it.sizes[m - 1] *= sizes[d];
        for (int k = 0; k < it.nops; ++k) it.strides[k][m - 1] = strides[k][d];
        continue;
      }
    }
    it.sizes[m] = sizes[d];
    for (int k = 0; k < it.nops; ++k) it.strides[k][m] = strides[k][d];
    ++m;
  }
  if (m == 0) {  // scalar or all-ones shape
    it.sizes[0] = 1;
    for (int k = 0; k < it.nops; ++k) it.strides[k][0] = 1;
    m = 1;
  }
  it.ndim = m;
  it.contiguous = m == 1;
  for (int k = 0; k < it.nops; ++k)
    if (it.strides[k][0] != 1) it.contiguous = false;
  if (it.numel == 0) it.contiguous = true;
  return it;
}

ElemPlan plan_elementwise_cuda(const ElemIter& it, int elem_size, const void* const* ptrs) {
  ElemPlan plan;
  if (it.contiguous) {
    bool al = true;
    for (int k = 0; k < it.nops; ++k) al = al && aligned16(ptrs[k]);
    plan.path = al ? ElemPath::Vector : ElemPath::Contig;
    return plan;
  }
  const int64_t v = 16 / elem_size;  // elements per 16-byte vector
  const int last = it.ndim - 1;
  if (16 % elem_size != 0 || last < 0 || it.sizes[last] % v != 0) return plan;
  // Unit-stride along the innermost dim, 16-byte aligned base and outer strides.
  const auto rows_ok = [&](int op) {
    if (it.strides[op][last] != 1 || !aligned16(ptrs[op])) return false;
    for (int d = 0; d < last; ++d)
      if ((it.strides[op][d] * elem_size) % 16 != 0) return false;
    return true;
  };
  if (!rows_ok(0)) return plan;
  int mask = 0;
  for (int k = 1; k < it.nops; ++k) {
    if (it.strides[k][last] == 0)
      mask |= 1 << (k - 1);
    else if (!rows_ok(k))
      return plan;
  }
  plan.path = ElemPath::Rows;
  plan.bcast = mask;
  return plan;
}

}  // namespace seqmix::ops
