// Maps element types to C++ types and dispatches on a runtime DType. Safe for .cu files.
//
//   SEQMIX_DISPATCH_FLOAT(t.dtype(), "gelu", T, { launch<T>(...); });
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"

namespace seqmix {

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::F64;
};
template <>
struct DTypeOf<bf16> {
  static constexpr DType value = DType::BF16;
};
template <>
struct DTypeOf<f16> {
  static constexpr DType value = DType::F16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::I64;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::U8;
};
template <typename T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

namespace detail {
[[noreturn]] void throw_bad_dtype(const char* op, DType t, const char* allowed);
}

}  // namespace seqmix

#define SEQMIX_DTYPE_CASE(enumv, ctype, T, ...) \
  case ::seqmix::DType::enumv: {                \
    using T = ctype;                            \
    __VA_ARGS__;                                \
    break;                                      \
  }

// Floating types: f32, bf16, f16, f64.
#define SEQMIX_DISPATCH_FLOAT(dtype, opname, T, ...)                             \
  switch (dtype) {                                                               \
    SEQMIX_DTYPE_CASE(F32, float, T, __VA_ARGS__)                                \
    SEQMIX_DTYPE_CASE(BF16, ::seqmix::bf16, T, __VA_ARGS__)                      \
    SEQMIX_DTYPE_CASE(F16, ::seqmix::f16, T, __VA_ARGS__)                        \
    SEQMIX_DTYPE_CASE(F64, double, T, __VA_ARGS__)                               \
    default:                                                                     \
      ::seqmix::detail::throw_bad_dtype(opname, dtype, "f32, bf16, f16 or f64"); \
  }

// Every element type.
#define SEQMIX_DISPATCH_ALL(dtype, opname, T, ...)             \
  switch (dtype) {                                             \
    SEQMIX_DTYPE_CASE(F32, float, T, __VA_ARGS__)              \
    SEQMIX_DTYPE_CASE(BF16, ::seqmix::bf16, T, __VA_ARGS__)    \
    SEQMIX_DTYPE_CASE(F16, ::seqmix::f16, T, __VA_ARGS__)      \
    SEQMIX_DTYPE_CASE(F64, double, T, __VA_ARGS__)             \
    SEQMIX_DTYPE_CASE(I32, int32_t, T, __VA_ARGS__)            \
    SEQMIX_DTYPE_CASE(I64, int64_t, T, __VA_ARGS__)            \
    SEQMIX_DTYPE_CASE(U8, uint8_t, T, __VA_ARGS__)             \
    default:                                                   \
      ::seqmix::detail::throw_bad_dtype(opname, dtype, "any"); \
  }

// Index types: i32, i64.
#define SEQMIX_DISPATCH_INDEX(dtype, opname, T, ...)                  \
  switch (dtype) {                                                    \
    SEQMIX_DTYPE_CASE(I32, int32_t, T, __VA_ARGS__)                   \
    SEQMIX_DTYPE_CASE(I64, int64_t, T, __VA_ARGS__)                   \
    default:                                                          \
      ::seqmix::detail::throw_bad_dtype(opname, dtype, "i32 or i64"); \
  }
