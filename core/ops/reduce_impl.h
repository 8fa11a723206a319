// Internal reduction launchers. x is contiguous and viewed as [outer, R, inner]; out (x's dtype)
// and idx (i64, optional: null when not needed; only for Max/Min) are [outer, inner].
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/macros.h"
#include "core/ops/reduce.h"

namespace seqmix::ops::impl {

void reduce_cpu(ReduceOp op, DType t, const void* x, void* out, int64_t* idx, int64_t outer,
                int64_t r, int64_t inner);
void reduce_cuda(ReduceOp op, DType t, const void* x, void* out, int64_t* idx, int64_t outer,
                 int64_t r, int64_t inner, cudaStream_t stream);

}  // namespace seqmix::ops::impl
