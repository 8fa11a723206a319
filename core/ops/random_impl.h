// Internal launchers for random fills of a contiguous buffer (element i gets draw element i).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/macros.h"

namespace seqmix::ops::impl {
// kind 0: uniform lo + u * (hi - lo); kind 1: normal mean + z * std. a, b are (lo, hi - lo) or
// (mean, std) as float, so host and device compute the same fmaf.
void random_fill_cpu(int kind, DType t, void* dst, int64_t n, float a, float b, uint64_t seed,
                     uint64_t offset);
void random_fill_cuda(int kind, DType t, void* dst, int64_t n, float a, float b, uint64_t seed,
                      uint64_t offset, cudaStream_t stream);
}  // namespace seqmix::ops::impl
