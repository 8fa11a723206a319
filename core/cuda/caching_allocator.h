// Internal interface of the CUDA caching allocator (see core/allocator.h for the design).
#pragma once
#include "core/allocator.h"

namespace seqmix::cuda {
DataPtr cache_allocate(int device, size_t nbytes);
memory::Stats cache_stats(int device);
void cache_reset_peak(int device);
void cache_empty(int device);
void cache_record_stream(void* ptr, int device, cudaStream_t stream);
// The size class a request is rounded to (exposed for tests).
size_t cache_round_size(size_t nbytes);
}  // namespace seqmix::cuda
