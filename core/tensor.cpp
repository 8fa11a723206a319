// Tensor metadata, views and factories. Copies and fills call into core/ops.
#include "core/tensor.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/copy.h"

#if SEQMIX_WITH_CUDA
#include <cuda_runtime_api.h>

#include "core/cuda/cuda_check.h"
#endif

namespace seqmix {

Tensor::Tensor(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
               int64_t offset, DType dtype)
    : storage_(std::move(storage)),
      shape_(shape),
      strides_(strides),
      offset_(offset),
      dtype_(dtype) {
  SEQMIX_ASSERT(shape_.size() == strides_.size());
}

Device Tensor::device() const {
  SEQMIX_CHECK(defined(), "device() of an undefined tensor");
  return storage_->device();
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) SEQMIX_CHECK(d >= 0, "negative dimension in shape {}", shape.str());
  const size_t nbytes = size_t(shape.numel()) * dtype_size(dtype);
  auto storage = std::make_shared<Storage>(memory::allocate(device, nbytes), nbytes, device);
  return Tensor(std::move(storage), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0.0);
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = double(i);
  return from_host(v.data(), DType::F64, {n}, dtype, device);
}

Tensor Tensor::from_host(const void* src, DType src_dtype, const Shape& shape, DType dtype,
                         Device device) {
  // Wrap the host memory as a non-owning CPU tensor, then cast/copy.
  auto view_storage =
      std::make_shared<Storage>(DataPtr(const_cast<void*>(src), nullptr, nullptr),
                                size_t(shape.numel()) * dtype_size(src_dtype), Device::cpu());
  Tensor host(view_storage, shape, contiguous_strides(shape), 0, src_dtype);
  Tensor out = empty(shape, dtype, device);
  out.copy_(host);  // a host-to-device copy has read `src` when it returns
  return out;
}

int64_t Tensor::size(int64_t d) const {
  return shape_[wrap_dim(d, dim())];
}
int64_t Tensor::stride(int64_t d) const {
  return strides_[wrap_dim(d, dim())];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

bool Tensor::is_same(const Tensor& o) const {
  return storage_ == o.storage_ && shape_ == o.shape_ && strides_ == o.strides_ &&
         offset_ == o.offset_ && dtype_ == o.dtype_;
}

std::string Tensor::str() const {
  return describe(*this);
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return fmt::format("{}{} {}", dtype_name(t.dtype()), t.shape().str(), t.device().str());
}

void Tensor::bad_data_type(const char* requested) const {
  SEQMIX_THROW(Value, "data<{}>() called on a {} tensor", requested, dtype_name(dtype_));
}

// ---- views ----

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = shape_in;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      SEQMIX_CHECK(infer < 0, "view: only one dimension may be -1, got {}", shape.str());
      infer = i;
    } else {
      SEQMIX_CHECK(shape[i] >= 0, "view: invalid shape {}", shape.str());
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    SEQMIX_CHECK(known != 0 && numel() % known == 0, "view: cannot view {} as {}", shape_.str(),
                 shape_in.str());
    shape[infer] = numel() / known;
  }
  SEQMIX_CHECK(shape.numel() == numel(), "view: {} has {} elements, {} has {}", shape_.str(),
               numel(), shape.str(), shape.numel());
  if (numel() == 0 || is_contiguous())
    return Tensor(storage_, shape, contiguous_strides(shape), offset_, dtype_);
  // General case: walk the old dims from the innermost, grouping runs that are contiguous with
  // each other ("chunks"); each chunk must be covered exactly by a run of new dims.
  Strides ns;
  ns.resize(shape.size());
  int vd = shape.size() - 1;
  int64_t chunk_stride = strides_[dim() - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int td = dim() - 1; td >= 0; --td) {
    tensor_numel *= shape_[td];
    const bool chunk_end =
        td == 0 || (shape_[td - 1] != 1 && strides_[td - 1] != tensor_numel * chunk_stride);
    if (!chunk_end) continue;
    while (vd >= 0 && (view_numel < tensor_numel || shape[vd] == 1)) {
      ns[vd] = view_numel * chunk_stride;
      view_numel *= shape[vd];
      --vd;
    }
    SEQMIX_CHECK(view_numel == tensor_numel,
                 "view: {} with strides {} cannot be viewed as {}; use reshape", shape_.str(),
                 strides_.str(), shape.str());
    if (td > 0) {
      chunk_stride = strides_[td - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  SEQMIX_CHECK(vd == -1, "view: {} with strides {} cannot be viewed as {}; use reshape",
               shape_.str(), strides_.str(), shape.str());
  return Tensor(storage_, shape, ns, offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (is_contiguous()) return view(shape);
  try {
    return view(shape);
  } catch (const Error&) {
    return contiguous().view(shape);
  }
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int a = wrap_dim(d0, dim()), b = wrap_dim(d1, dim());
  Shape s = shape_;
  Strides st = strides_;
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::permute(const DimVec& dims) const {
  SEQMIX_CHECK(dims.size() == dim(), "permute: {} dims given for a {}-d tensor", dims.size(),
               dim());
  Shape s;
  Strides st;
  bool seen[kMaxDims] = {};
  for (int i = 0; i < dims.size(); ++i) {
    const int d = wrap_dim(dims[i], dim());
    SEQMIX_CHECK(!seen[d], "permute: dimension {} repeated in {}", d, dims.str());
    seen[d] = true;
    s.push_back(shape_[d]);
    st.push_back(strides_[d]);
  }
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::slice(int64_t dim_in, int64_t start, int64_t end, int64_t step) const {
  const int d = wrap_dim(dim_in, dim());
  SEQMIX_CHECK(step > 0, "slice: step must be positive, got {}", step);
  const int64_t n = shape_[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape_;
  Strides st = strides_;
  s[d] = (end - start + step - 1) / step;
  st[d] = strides_[d] * step;
  return Tensor(storage_, s, st, offset_ + start * strides_[d], dtype_);
}

Tensor Tensor::narrow(int64_t dim_in, int64_t start, int64_t length) const {
  const int d = wrap_dim(dim_in, dim());
  SEQMIX_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d],
               "narrow: [{}, {}) out of range for dimension {} of size {}", start, start + length,
               d, shape_[d]);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t dim_in, int64_t index) const {
  const int d = wrap_dim(dim_in, dim());
  const int64_t n = shape_[d];
  if (index < 0) index += n;
  SEQMIX_CHECK(index >= 0 && index < n, "select: index {} out of range for size {}", index, n);
  Shape s = shape_;
  Strides st = strides_;
  const int64_t off = offset_ + index * strides_[d];
  s.erase(d);
  st.erase(d);
  return Tensor(storage_, s, st, off, dtype_);
}

Tensor Tensor::unsqueeze(int64_t dim_in) const {
  const int d = wrap_dim(dim_in, dim() + 1);
  Shape s = shape_;
  Strides st = strides_;
  const int64_t stride = d < dim() ? strides_[d] * shape_[d] : 1;
  s.insert(d, 1);
  st.insert(d, stride);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::squeeze(int64_t dim_in) const {
  const int d = wrap_dim(dim_in, dim());
  SEQMIX_CHECK(shape_[d] == 1, "squeeze: dimension {} has size {}, not 1", d, shape_[d]);
  Shape s = shape_;
  Strides st = strides_;
  s.erase(d);
  st.erase(d);
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::expand(const Shape& shape) const {
  SEQMIX_CHECK(shape.size() >= dim(), "expand: cannot expand {} to fewer dimensions {}",
               shape_.str(), shape.str());
  Shape s = shape;
  Strides st;
  st.resize(shape.size());
  const int lead = shape.size() - dim();
  for (int i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      SEQMIX_CHECK(shape[i] >= 0, "expand: invalid size in {}", shape.str());
      st[i] = 0;
      continue;
    }
    const int64_t src = shape_[i - lead];
    if (shape[i] == -1) s[i] = src;
    if (src == s[i]) {
      st[i] = strides_[i - lead];
    } else {
      SEQMIX_CHECK(src == 1, "expand: cannot expand {} to {}", shape_.str(), shape.str());
      st[i] = 0;
    }
  }
  return Tensor(storage_, s, st, offset_, dtype_);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  const int a = wrap_dim(start, dim()), b = wrap_dim(end, dim());
  SEQMIX_CHECK(a <= b, "flatten: start {} after end {}", a, b);
  Shape s;
  for (int i = 0; i < a; ++i) s.push_back(shape_[i]);
  int64_t p = 1;
  for (int i = a; i <= b; ++i) p *= shape_[i];
  s.push_back(p);
  for (int i = b + 1; i < dim(); ++i) s.push_back(shape_[i]);
  return reshape(s);
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  SEQMIX_CHECK(shape.size() == strides.size(), "as_strided: shape {} and strides {} differ in rank",
               shape.str(), strides.str());
  // Bounds check against the storage.
  int64_t hi = offset;
  bool any_empty = false;
  for (int i = 0; i < shape.size(); ++i) {
    SEQMIX_CHECK(strides[i] >= 0, "as_strided: negative strides are not supported");
    if (shape[i] == 0) any_empty = true;
    hi += (shape[i] - 1) * strides[i];
  }
  SEQMIX_CHECK(any_empty || (offset >= 0 && size_t(hi + 1) * element_size() <= storage_->nbytes()),
               "as_strided: view exceeds the storage ({} bytes)", storage_->nbytes());
  return Tensor(storage_, shape, strides, offset, dtype_);
}

// ---- copies ----

Tensor Tensor::contiguous() const {
  return is_contiguous() ? *this : clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape_, dtype_, device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device) const {
  return to(device, dtype_);
}
Tensor Tensor::to(DType dtype) const {
  return to(device(), dtype);
}

Tensor Tensor::to(Device dev, DType dtype) const {
  if (dev == device() && dtype == dtype_) return *this;
  Tensor out = empty(shape_, dtype, dev);
  out.copy_(*this);
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  ops::copy_(*this, src);
}
void Tensor::fill_(double value) const {
  ops::fill_(*this, value);
}

void Tensor::copy_to_host(void* dst, DType dst_dtype) const {
  SEQMIX_CHECK(defined(), "reading an undefined tensor");
  Tensor host = to(Device::cpu(), dst_dtype).contiguous();
  if (numel() > 0) std::memcpy(dst, host.data_ptr(), host.nbytes());
}

double Tensor::item() const {
  SEQMIX_CHECK(numel() == 1, "item(): tensor {} has {} elements, not 1", shape_str(), numel());
  double v;
  copy_to_host(&v, DType::F64);
  return v;
}

}  // namespace seqmix
