// Launch helpers shared by the CUDA launchers (see launch.cuh): the per-(device, kernel) cache of
// the dynamic shared-memory limit set with cudaFuncSetAttribute.
#include "kernels/common/launch.cuh"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "core/cuda/cuda_check.h"

namespace seqmix::kern::detail {
namespace {

// (device, kernel) -> the largest MaxDynamicSharedMemorySize set so far. Lookups (every launch)
// take the lock shared; only setting the attribute takes it exclusively.
struct SmemLimits {
  std::shared_mutex mu;
  std::map<std::pair<int, const void*>, int> bytes;
};

SmemLimits& smem_limits() {
  static SmemLimits* s = new SmemLimits;  // never destroyed: launches may run during static exit
  return *s;
}

}  // namespace

void ensure_dynamic_smem(const void* kernel, int bytes) {
  int device = 0;
  SEQMIX_CUDA_CHECK(cudaGetDevice(&device));
  const std::pair<int, const void*> key{device, kernel};
  SmemLimits& s = smem_limits();
  {
    std::shared_lock<std::shared_mutex> lk(s.mu);
    const auto it = s.bytes.find(key);
    if (it != s.bytes.end() && it->second >= bytes) return;
  }
  // Exclusive while setting, so that a concurrent call with fewer bytes can never lower the limit
  // another thread has just raised (the cache is checked again under this lock).
  std::unique_lock<std::shared_mutex> lk(s.mu);
  const auto it = s.bytes.find(key);
  if (it != s.bytes.end() && it->second >= bytes) return;
  SEQMIX_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  s.bytes[key] = bytes;
}

}  // namespace seqmix::kern::detail
