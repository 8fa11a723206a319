// The per-element random value, shared by CPU and CUDA. Safe for .cu files.
#pragma once
#include "core/ops/convert.h"
#include "core/rng.h"

namespace seqmix::ops::impl {
template <typename T>
SEQMIX_HD SEQMIX_FORCE_INLINE T random_value(int kind, int64_t i, float a, float b, uint64_t seed,
                                             uint64_t offset) {
  const float z = kind == 0 ? rng::uniform_at(seed, offset, uint64_t(i))
                            : rng::normal_at(seed, offset, uint64_t(i));
  return convert<T>(fmaf(z, b, a));
}
}  // namespace seqmix::ops::impl
