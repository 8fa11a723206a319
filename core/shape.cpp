// DimVec and shape helpers.
#include "core/shape.h"

#include <algorithm>

#include "core/check.h"

namespace seqmix {

DimVec::DimVec(std::initializer_list<int64_t> v) {
  SEQMIX_CHECK(int(v.size()) <= kMaxDims, "at most {} dimensions are supported, got {}", kMaxDims,
               v.size());
  for (int64_t x : v) d_[n_++] = x;
}

DimVec DimVec::filled(int n, int64_t v) {
  DimVec r;
  r.resize(n, v);
  return r;
}

void DimVec::push_back(int64_t v) {
  SEQMIX_CHECK(n_ < kMaxDims, "at most {} dimensions are supported", kMaxDims);
  d_[n_++] = v;
}

void DimVec::insert(int pos, int64_t v) {
  SEQMIX_CHECK(n_ < kMaxDims, "at most {} dimensions are supported", kMaxDims);
  SEQMIX_ASSERT(pos >= 0 && pos <= n_);
  for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
  d_[pos] = v;
  ++n_;
}

void DimVec::erase(int pos) {
  SEQMIX_ASSERT(pos >= 0 && pos < n_);
  for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
  --n_;
}

void DimVec::resize(int n, int64_t v) {
  SEQMIX_CHECK(n >= 0 && n <= kMaxDims, "at most {} dimensions are supported, got {}", kMaxDims, n);
  for (int i = n_; i < n; ++i) d_[i] = v;
  n_ = n;
}

bool DimVec::operator==(const DimVec& o) const {
  return n_ == o.n_ && std::equal(d_, d_ + n_, o.d_);
}

std::string DimVec::str() const {
  std::string s = "[";
  for (int i = 0; i < n_; ++i) {
    if (i) s += ", ";
    s += std::to_string(d_[i]);
  }
  return s + "]";
}

Strides contiguous_strides(const Shape& shape) {
  Strides s;
  s.resize(shape.size());
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}

int wrap_dim(int64_t dim, int ndim) {
  const int64_t lo = -std::max(ndim, 1), hi = std::max(ndim, 1) - 1;
  SEQMIX_CHECK(dim >= lo && dim <= hi, "dimension {} out of range for a {}-d tensor", dim, ndim);
  return int(dim < 0 ? dim + std::max(ndim, 1) : dim);
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const int n = std::max(a.size(), b.size());
  Shape out;
  out.resize(n);
  for (int i = 0; i < n; ++i) {
    const int ia = i - (n - a.size()), ib = i - (n - b.size());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    SEQMIX_CHECK(da == db || da == 1 || db == 1, "shapes {} and {} cannot be broadcast together",
                 a.str(), b.str());
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace seqmix
