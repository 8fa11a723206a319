// Checked CUDA calls. Include only in CUDA builds (it includes the CUDA runtime). Safe for .cu.
#pragma once
#include <cuda_runtime_api.h>

namespace seqmix::cuda {
// Throws Error(Cuda) (or Error(OutOfMemory) for cudaErrorMemoryAllocation) naming the call.
[[noreturn]] void fail(cudaError_t err, const char* expr, const char* file, int line);
}  // namespace seqmix::cuda

#define SEQMIX_CUDA_CHECK(expr)                                     \
  do {                                                              \
    cudaError_t seqmix_err_ = (expr);                               \
    if (seqmix_err_ != cudaSuccess) [[unlikely]]                    \
      ::seqmix::cuda::fail(seqmix_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: reports invalid configurations and earlier asynchronous faults.
#define SEQMIX_LAUNCH_CHECK() SEQMIX_CUDA_CHECK(cudaGetLastError())
