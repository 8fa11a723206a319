// Value conversion between any two element types (floats to ints truncate toward zero).
// Safe for .cu files.
#pragma once
#include <type_traits>

#include "core/half.h"

namespace seqmix::ops {

template <typename T>
inline constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

template <typename To, typename From>
SEQMIX_HD SEQMIX_FORCE_INLINE To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (is_half_v<From>) {
    return convert<To, float>(v.to_float());
  } else if constexpr (is_half_v<To>) {
    return To(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace seqmix::ops
