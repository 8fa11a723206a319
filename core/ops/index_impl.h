// Internal launchers for gather_dim / scatter_dim over [outer, R, inner] (x / out contiguous),
// index and src [outer, inner] contiguous.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/macros.h"

namespace seqmix::ops::impl {
void gather_dim_cpu(DType t, const void* x, const int64_t* idx, void* out, int64_t outer, int64_t r,
                    int64_t inner);
void scatter_dim_cpu(DType t, void* out, const int64_t* idx, const void* src, int64_t outer,
                     int64_t r, int64_t inner);
void gather_dim_cuda(DType t, const void* x, const int64_t* idx, void* out, int64_t outer,
                     int64_t r, int64_t inner, cudaStream_t stream);
void scatter_dim_cuda(DType t, void* out, const int64_t* idx, const void* src, int64_t outer,
                      int64_t r, int64_t inner, cudaStream_t stream);
}  // namespace seqmix::ops::impl
