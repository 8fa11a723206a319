// The per-element dropout rule shared by the CPU and CUDA code. Safe for .cu files.
#pragma once
#include "core/rng.h"

namespace seqmix::dropout_detail {
template <typename A>
SEQMIX_HD SEQMIX_FORCE_INLINE A apply(A v, int64_t i, float p, A scale, uint64_t seed,
                                      uint64_t offset) {
  return rng::uniform_at(seed, offset, uint64_t(i)) >= p ? v * scale : A(0);
}
}  // namespace seqmix::dropout_detail
