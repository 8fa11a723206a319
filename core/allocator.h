// Device memory. CPU memory is 64-byte aligned host memory; CUDA memory comes from a
// stream-ordered caching allocator (core/cuda/caching_allocator.cpp): blocks are rounded to size
// classes, and a freed block goes back to a free list of the stream it was allocated on, where the
// next allocation of that class on that stream takes it without synchronisation (stream order
// makes that safe). cudaMalloc is called only when no cached block fits, so a training step that
// repeats the same shapes makes no device allocations after its first iteration.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/device.h"
#include "core/macros.h"

namespace seqmix {

// Owning pointer with a plain-function deleter (no std::function, no extra allocation).
class DataPtr {
 public:
  using Deleter = void (*)(void* ctx, void* ptr);
  DataPtr() = default;
  DataPtr(void* ptr, Deleter deleter, void* ctx) : ptr_(ptr), deleter_(deleter), ctx_(ctx) {}
  DataPtr(DataPtr&& o) noexcept : ptr_(o.ptr_), deleter_(o.deleter_), ctx_(o.ctx_) {
    o.ptr_ = nullptr;
    o.deleter_ = nullptr;
  }
  DataPtr& operator=(DataPtr&& o) noexcept;
  DataPtr(const DataPtr&) = delete;
  DataPtr& operator=(const DataPtr&) = delete;
  ~DataPtr() { reset(); }
  void reset();
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  Deleter deleter_ = nullptr;
  void* ctx_ = nullptr;
};

namespace memory {

// Allocates `nbytes` on `device`. CUDA allocations are ordered on the current stream of that
// device (cuda::current_stream). Throws Error(OutOfMemory) with the allocator's statistics.
DataPtr allocate(Device device, size_t nbytes);

struct Stats {
  int64_t allocated_bytes = 0;       // bytes in blocks handed out and not yet freed
  int64_t peak_allocated_bytes = 0;  // maximum of allocated_bytes since the last reset_peak
  int64_t reserved_bytes = 0;        // bytes obtained from the device (cudaMalloc) and kept
  int64_t num_allocs = 0;            // allocate() calls
  int64_t num_cache_hits = 0;        // allocate() calls served from the cache
  int64_t num_device_allocs = 0;     // cudaMalloc calls (malloc calls on the CPU)
  int64_t num_device_frees = 0;      // cudaFree calls
};

Stats stats(Device device);
void reset_peak(Device device);
// Returns every cached, unused block of `device` to the driver (synchronises the device).
void empty_cache(Device device);

// Debug aid used by the tests: when on, every new allocation is filled with 0xFF bytes (a NaN in
// every floating type), so an output element a kernel forgets to write reads as NaN.
void set_poison(bool on);
bool poison_enabled();

// Marks a CUDA block as used on `stream` besides the stream it was allocated on: when freed, it
// is reused only after the work queued on `stream` so far has completed.
void record_stream(void* ptr, Device device, cudaStream_t stream);

}  // namespace memory
}  // namespace seqmix
