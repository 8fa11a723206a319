// Shapes and strides: a small inline vector of int64 (no heap allocation; at most kMaxDims).
// Safe to include from .cu files.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/macros.h"

namespace seqmix {

inline constexpr int kMaxDims = 8;

class DimVec {
 public:
  DimVec() = default;
  DimVec(std::initializer_list<int64_t> v);
  template <typename It>
  DimVec(It first, It last) {
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  static DimVec filled(int n, int64_t v);

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t* data() { return d_; }
  const int64_t* data() const { return d_; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v);
  void pop_back() { --n_; }
  void insert(int pos, int64_t v);
  void erase(int pos);
  void resize(int n, int64_t v = 0);

  int64_t numel() const {  // product of entries (1 for an empty shape)
    int64_t p = 1;
    for (int i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }
  bool operator==(const DimVec& o) const;
  bool operator!=(const DimVec& o) const { return !(*this == o); }
  std::string str() const;  // "[2, 3, 4]"

 private:
  int64_t d_[kMaxDims] = {};
  int n_ = 0;
};

using Shape = DimVec;
using Strides = DimVec;

// Row-major (C-order) strides of a shape, in elements.
Strides contiguous_strides(const Shape& shape);
// Normalises a possibly negative dimension index; throws when out of range.
int wrap_dim(int64_t dim, int ndim);
// Broadcast shape of two shapes (numpy rules); throws with both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace seqmix
