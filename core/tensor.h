// Tensor: a view (shape, strides in elements, offset) of a refcounted Storage, with a DType and a
// Device. Views share storage; copies go through core/ops. Safe to include from .cu files (the
// methods that need formatting or kernels live in tensor.cpp).
//
// Conventions: shapes are row-major; strides may be zero (broadcast) or arbitrary (transposes,
// slices); `offset` is in elements. An undefined Tensor (default-constructed) means "absent".
#pragma once
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dispatch.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace seqmix {

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Storage> storage, const Shape& shape, const Strides& strides,
         int64_t offset, DType dtype);

  // ---- factories (allocate on `device`; CUDA memory on the current stream) ----
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype, Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype, Device device = Device::cpu());
  // Copies `count` host elements of type `src_dtype` into a new tensor of `dtype` on `device`.
  static Tensor from_host(const void* src, DType src_dtype, const Shape& shape, DType dtype,
                          Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& v, const Shape& shape, DType dtype = dtype_of<T>,
                            Device device = Device::cpu()) {
    return from_host(v.data(), dtype_of<T>, shape, dtype, device);
  }
  // An empty tensor with the same shape, dtype and device (or another dtype).
  Tensor empty_like() const { return empty(shape_, dtype_, device()); }
  Tensor zeros_like() const { return zeros(shape_, dtype_, device()); }

  // ---- metadata ----
  bool defined() const { return storage_ != nullptr; }
  explicit operator bool() const { return defined(); }
  const Shape& shape() const { return shape_; }
  const Strides& strides() const { return strides_; }
  int dim() const { return shape_.size(); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_.numel(); }
  int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const;
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return size_t(numel()) * element_size(); }
  bool is_contiguous() const;
  bool is_cuda() const { return device().is_cuda(); }
  bool is_cpu() const { return device().is_cpu(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // True when both are the same view of the same storage.
  bool is_same(const Tensor& o) const;
  std::string shape_str() const { return shape_.str(); }
  std::string str() const;  // "bf16[2, 3] cuda:0"

  // Pointer to the first element of the view.
  void* data_ptr() const {
    return static_cast<char*>(storage_->data()) + offset_ * int64_t(element_size());
  }
  template <typename T>
  T* data() const {
    if (dtype_of<std::remove_const_t<T>> != dtype_) bad_data_type(dtype_name(dtype_of<T>));
    return static_cast<T*>(data_ptr());
  }

  // ---- views (no copy) ----
  Tensor view(const Shape& shape) const;     // one entry may be -1; throws if not viewable
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a contiguous copy
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const DimVec& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor expand(const Shape& shape) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;

  // ---- copies (kernels in core/ops) ----
  Tensor contiguous() const;  // this tensor itself when already contiguous
  Tensor clone() const;       // always a new contiguous tensor
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor to(Device device, DType dtype) const;
  Tensor cpu() const { return to(Device::cpu()); }
  // In-place; these bump the storage version.
  void copy_(const Tensor& src) const;  // broadcasts and casts src into this view
  void fill_(double value) const;
  void zero_() const { fill_(0.0); }

  // ---- host reads (synchronise with the device) ----
  template <typename T>
  std::vector<T> to_vector() const {
    std::vector<T> out(static_cast<size_t>(numel()));
    copy_to_host(out.data(), dtype_of<T>);
    return out;
  }
  double item() const;  // numel must be 1

  uint64_t version() const { return storage_->version(); }
  void bump_version() const { storage_->bump_version(); }

 private:
  [[noreturn]] void bad_data_type(const char* requested) const;
  void copy_to_host(void* dst, DType dst_dtype) const;

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Strides strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
};

// "bf16[2, 3] cuda:0" for defined tensors, "undefined" otherwise.
std::string describe(const Tensor& t);

}  // namespace seqmix
