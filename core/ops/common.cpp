#include "core/ops/common.h"

namespace seqmix::ops {

Device common_device(const char* op, std::initializer_list<NamedTensor> operands) {
  Device dev;
  const char* first = nullptr;
  for (const auto& [name, t] : operands) {
    SEQMIX_CHECK(t->defined(), "{}: operand '{}' is undefined", op, name);
    if (!first) {
      dev = t->device();
      first = name;
    } else {
      SEQMIX_CHECK(t->device() == dev, "{}: operand '{}' is on {} but '{}' is on {}", op, name,
                   t->device().str(), first, dev.str());
    }
  }
  return dev;
}

void check_floating(const char* op, const char* name, const Tensor& t) {
  SEQMIX_CHECK_KIND(Unsupported, is_floating(t.dtype()),
                    "{}: operand '{}' has dtype {}; a floating dtype is required", op, name,
                    dtype_name(t.dtype()));
}

void check_dtype(const char* op, const char* name, const Tensor& t, DType expected) {
  SEQMIX_CHECK(t.dtype() == expected, "{}: operand '{}' has dtype {}, expected {}", op, name,
               dtype_name(t.dtype()), dtype_name(expected));
}

void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  SEQMIX_CHECK(t.shape() == expected, "{}: operand '{}' has shape {}, expected {}", op, name,
               t.shape_str(), expected.str());
}

}  // namespace seqmix::ops
