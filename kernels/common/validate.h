// Argument validation shared by the fused-op dispatchers (host code). Errors are Error(Value)
// naming the op and the operand.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace seqmix {

// An optional tensor (output, gradient, state): when defined it must have `shape` and `dtype`,
// be contiguous and live on `dev` (the device of the op's reference operand `ref_name`).
void check_optional_like(const char* op, const char* name, const Tensor& t, const Shape& shape,
                         DType dtype, Device dev, const char* ref_name);

// Packed-sequence offsets: `cu` [N + 1] i64 on `dev`, starting at 0, non-decreasing, ending at
// `t`; the batch `b` of the reference operand `ref_name` must be 1. Reads `cu` on the host (one
// device-to-host copy). Returns N.
int64_t check_cu_seqlens(const char* op, const Tensor& cu, Device dev, int64_t b, int64_t t,
                         const char* ref_name);

}  // namespace seqmix
