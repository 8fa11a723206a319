// Argument validation shared by the fused-op dispatchers.
#include "kernels/common/validate.h"

#include <vector>

#include "core/check.h"
#include "core/ops/common.h"

namespace seqmix {

void check_optional_like(const char* op, const char* name, const Tensor& t, const Shape& shape,
                         DType dtype, Device dev, const char* ref_name) {
  if (!t.defined()) return;
  ops::check_shape(op, name, t, shape);
  ops::check_dtype(op, name, t, dtype);
  SEQMIX_CHECK(t.is_contiguous(), "{}: '{}' must be contiguous", op, name);
  SEQMIX_CHECK(t.device() == dev, "{}: '{}' is on {} but {} is on {}", op, name, t.device().str(),
               ref_name, dev.str());
}

int64_t check_cu_seqlens(const char* op, const Tensor& cu, Device dev, int64_t b, int64_t t,
                         const char* ref_name) {
  SEQMIX_CHECK(cu.dim() == 1 && cu.size(0) >= 2,
               "{}: 'cu_seqlens' must be 1-d [N + 1] with N >= 1, got {}", op, cu.shape_str());
  ops::check_dtype(op, "cu_seqlens", cu, DType::I64);
  SEQMIX_CHECK(cu.is_contiguous(), "{}: 'cu_seqlens' must be contiguous", op);
  SEQMIX_CHECK(cu.device() == dev, "{}: 'cu_seqlens' is on {} but {} is on {}", op,
               cu.device().str(), ref_name, dev.str());
  SEQMIX_CHECK(b == 1, "{}: packed sequences ('cu_seqlens') need B = 1 in '{}', got B = {}", op,
               ref_name, b);
  const std::vector<int64_t> c = cu.to_vector<int64_t>();
  SEQMIX_CHECK(c.front() == 0, "{}: 'cu_seqlens' must start at 0, got {}", op, c.front());
  for (size_t i = 1; i < c.size(); ++i)
    SEQMIX_CHECK(c[i] >= c[i - 1], "{}: 'cu_seqlens' must be non-decreasing, got {} then {}", op,
                 c[i - 1], c[i]);
  SEQMIX_CHECK(c.back() == t, "{}: 'cu_seqlens' must end at T = {}, got {}", op, t, c.back());
  return int64_t(c.size()) - 1;
}

}  // namespace seqmix
