// Host allocator and the device-dispatching memory API.
#include "core/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "core/check.h"
#if SEQMIX_WITH_CUDA
#include "core/cuda/caching_allocator.h"
#endif

namespace seqmix {

DataPtr& DataPtr::operator=(DataPtr&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = o.ptr_;
    deleter_ = o.deleter_;
    ctx_ = o.ctx_;
    o.ptr_ = nullptr;
    o.deleter_ = nullptr;
  }
  return *this;
}

void DataPtr::reset() {
  if (ptr_ && deleter_) deleter_(ctx_, ptr_);
  ptr_ = nullptr;
  deleter_ = nullptr;
}

namespace memory {
namespace {

std::atomic<bool> g_poison{false};

struct HostStats {
  std::mutex mu;
  Stats s;
};
HostStats& host_stats() {
  static HostStats h;
  return h;
}

constexpr size_t kHostAlign = 64;

void host_free(void* ctx, void* ptr) {
  const size_t n = reinterpret_cast<size_t>(ctx);
  std::free(ptr);
  HostStats& h = host_stats();
  std::lock_guard<std::mutex> lk(h.mu);
  h.s.allocated_bytes -= int64_t(n);
  h.s.num_device_frees += 1;
}

DataPtr host_allocate(size_t nbytes) {
  if (nbytes == 0) return {};
  const size_t n = (nbytes + kHostAlign - 1) / kHostAlign * kHostAlign;
  void* p = std::aligned_alloc(kHostAlign, n);
  SEQMIX_CHECK_KIND(OutOfMemory, p != nullptr, "host allocation of {} bytes failed", nbytes);
  if (g_poison.load(std::memory_order_relaxed)) std::memset(p, 0xff, n);
  HostStats& h = host_stats();
  {
    std::lock_guard<std::mutex> lk(h.mu);
    h.s.allocated_bytes += int64_t(n);
    h.s.peak_allocated_bytes = std::max(h.s.peak_allocated_bytes, h.s.allocated_bytes);
    h.s.num_allocs += 1;
    h.s.num_device_allocs += 1;
  }
  return DataPtr(p, &host_free, reinterpret_cast<void*>(n));
}

#if !SEQMIX_WITH_CUDA
[[noreturn]] void no_cuda() {
  SEQMIX_THROW(Unsupported,
               "this seqmix build has no CUDA support (configure with the cuda preset)");
}
#endif

}  // namespace

DataPtr allocate(Device device, size_t nbytes) {
  if (device.is_cpu()) return host_allocate(nbytes);
#if SEQMIX_WITH_CUDA
  return cuda::cache_allocate(device.index, nbytes);
#else
  no_cuda();
#endif
}

Stats stats(Device device) {
  if (device.is_cpu()) {
    HostStats& h = host_stats();
    std::lock_guard<std::mutex> lk(h.mu);
    Stats s = h.s;
    s.reserved_bytes = s.allocated_bytes;
    return s;
  }
#if SEQMIX_WITH_CUDA
  return cuda::cache_stats(device.index);
#else
  no_cuda();
#endif
}

void reset_peak(Device device) {
  if (device.is_cpu()) {
    HostStats& h = host_stats();
    std::lock_guard<std::mutex> lk(h.mu);
    h.s.peak_allocated_bytes = h.s.allocated_bytes;
    return;
  }
#if SEQMIX_WITH_CUDA
  cuda::cache_reset_peak(device.index);
#else
  no_cuda();
#endif
}

void empty_cache(Device device) {
  if (device.is_cpu()) return;
#if SEQMIX_WITH_CUDA
  cuda::cache_empty(device.index);
#else
  no_cuda();
#endif
}

void set_poison(bool on) {
  g_poison.store(on);
}
bool poison_enabled() {
  return g_poison.load(std::memory_order_relaxed);
}

void record_stream(void* ptr, Device device, cudaStream_t stream) {
  if (device.is_cpu() || ptr == nullptr) return;
#if SEQMIX_WITH_CUDA
  cuda::cache_record_stream(ptr, device.index, stream);
#else
  no_cuda();
#endif
}

}  // namespace memory
}  // namespace seqmix
