// Helpers shared by the host-side op dispatchers: operand validation with the operand's name in
// the message, and the CUDA stream of a device. Host code only.
#pragma once
#include <initializer_list>
#include <utility>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/tensor.h"

namespace seqmix::ops {

using NamedTensor = std::pair<const char*, const Tensor*>;

// Every operand defined and on one device; returns that device. The error names the odd operand.
Device common_device(const char* op, std::initializer_list<NamedTensor> operands);
void check_floating(const char* op, const char* name, const Tensor& t);
void check_dtype(const char* op, const char* name, const Tensor& t, DType expected);
void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected);

inline cudaStream_t stream_of(Device d) {
  return cuda::current_stream(d.index);
}

}  // namespace seqmix::ops
