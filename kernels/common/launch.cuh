// Launch helpers shared by the CUDA launchers. Include only from .cu files.
//
// ensure_dynamic_smem(kernel, bytes): a kernel that uses more than 48 KiB of dynamic shared memory
// must first be allowed to by cudaFuncSetAttribute(kernel, MaxDynamicSharedMemorySize, bytes).
// Calling that before every launch put a driver call on every launch of the training step; the
// attribute persists per (device, kernel), so it is set once per pair and raised only when a
// later launch needs more bytes than any earlier one (it is never lowered: launching with less
// dynamic shared memory than the limit is always valid). The attribute is per device, so the
// cache is keyed by the current device (cudaGetDevice) and the kernel's function pointer.
// Thread-safe. Errors (e.g. more bytes than the device allows) throw through SEQMIX_CUDA_CHECK
// and leave the cache unchanged, so the next call tries again.
#pragma once
#include <cuda_runtime.h>

namespace seqmix::kern {

namespace detail {
// `kernel` is the host-side function pointer of a __global__ function, as cudaFuncSetAttribute
// takes it.
void ensure_dynamic_smem(const void* kernel, int bytes);
}  // namespace detail

// Allows launches of `kernel` on the current device with up to `bytes` of dynamic shared memory.
template <typename... Args>
void ensure_dynamic_smem(void (*kernel)(Args...), int bytes) {
  detail::ensure_dynamic_smem(reinterpret_cast<const void*>(kernel), bytes);
}

}  // namespace seqmix::kern
