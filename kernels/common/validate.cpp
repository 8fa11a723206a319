// Argument validation shared by the fused-op dispatchers.
#include "kernels/common/validate.h"

#include <cmath>
#include <utility>
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

bool aligned16(const Tensor& t) {
  return !t.defined() || (reinterpret_cast<uintptr_t>(t.data_ptr()) & 15) == 0;
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

QkvDims check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& cu, double scale) {
  SEQMIX_CHECK(q.defined() && k.defined() && v.defined(), "{}: q, k and v are required", op);
  QkvDims d;
  d.dev = ops::common_device(op, {{"q", &q}, {"k", &k}, {"v", &v}});
  SEQMIX_CHECK(q.dim() == 4, "{}: 'q' must be 4-d [B, T, H, K], got {}", op, q.shape_str());
  SEQMIX_CHECK(v.dim() == 4, "{}: 'v' must be 4-d [B, T, H, V], got {}", op, v.shape_str());
  const DType dt = q.dtype();
  SEQMIX_CHECK(dt == DType::BF16 || dt == DType::F32 || dt == DType::F64,
               "{}: 'q' must be bf16, f32 or f64, got {}", op, dtype_name(dt));
  ops::check_dtype(op, "k", k, dt);
  ops::check_dtype(op, "v", v, dt);
  for (const auto& [name, x] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}})
    SEQMIX_CHECK(x->is_contiguous(), "{}: '{}' must be contiguous", op, name);
  d.b = q.size(0);
  d.t = q.size(1);
  d.h = q.size(2);
  d.k = q.size(3);
  d.v = v.size(3);
  SEQMIX_CHECK(d.h > 0 && d.k > 0, "{}: 'q' needs at least one head and K > 0, got {}", op,
               q.shape_str());
  ops::check_shape(op, "k", k, q.shape());
  SEQMIX_CHECK(v.size(0) == d.b && v.size(1) == d.t && v.size(2) == d.h && d.v > 0,
               "{}: 'v' must be [B={}, T={}, H={}, V>0] like q {}, got {}", op, d.b, d.t, d.h,
               q.shape_str(), v.shape_str());
  SEQMIX_CHECK(std::isfinite(scale) && scale >= 0,
               "{}: scale must be finite and >= 0 (0 = 1/sqrt(K)), got {}", op, scale);
  d.n = cu.defined() ? check_cu_seqlens(op, cu, d.dev, d.b, d.t, "q") : d.b;
  return d;
}

DType linear_rnn_state_dtype(DType x) {
  return x == DType::F64 ? DType::F64 : DType::F32;
}

}  // namespace seqmix
