// Element types of tensors. Safe to include from .cu files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace seqmix {

enum class DType : uint8_t { F32, BF16, F16, F64, I32, I64, U8 };
inline constexpr int kNumDTypes = 7;

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::BF16:
      return 2;
    case DType::F16:
      return 2;
    case DType::F64:
      return 8;
    case DType::I32:
      return 4;
    case DType::I64:
      return 8;
    case DType::U8:
      return 1;
  }
  return 0;
}

constexpr bool is_floating(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F64;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::F64:
      return "f64";
    case DType::I32:
      return "i32";
    case DType::I64:
      return "i64";
    case DType::U8:
      return "u8";
  }
  return "?";
}

// Parses "f32", "float32", "bf16", "bfloat16", ... Throws seqmix::Error on an unknown name.
DType parse_dtype(std::string_view name);

// The floating type two floating operands are computed in: the wider of the two; bf16 with f16
// gives f32 (neither holds the other).
constexpr DType promote_floating(DType a, DType b) {
  if (a == b) return a;
  if (a == DType::F64 || b == DType::F64) return DType::F64;
  return DType::F32;
}

}  // namespace seqmix
