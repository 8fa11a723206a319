// Stream-ordered caching allocator for CUDA device memory.
//
// Sizes are rounded to classes: multiples of 512 B up to 1 MiB, then four classes per power of
// two (1, 1.25, 1.5, 1.75 x 2^k), so at most 25% is wasted and a repeated shape always maps to
// the same class. A freed block goes to the free list of (its stream, its class); the next request
// of that class on that stream reuses it immediately: work on one stream runs in order, so the new
// owner's kernels start after the old owner's. A block also used on other streams (record_stream)
// gets an event recorded on each of them when freed and becomes reusable once those complete.
// cudaMalloc is called only on a miss; when it fails, the cache is returned to the driver and the
// allocation retried once before raising OutOfMemory with the statistics.
#include "core/cuda/caching_allocator.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <bit>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"

namespace seqmix::cuda {
namespace {

struct Block {
  void* ptr = nullptr;
  size_t size = 0;
  cudaStream_t stream = nullptr;
  std::vector<cudaStream_t> other_streams;
  int pending_events = 0;
};

struct DeviceCache {
  int device = 0;
  std::mutex mu;
  std::unordered_map<void*, Block*> active;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<Block*>> free_blocks;
  std::deque<std::pair<cudaEvent_t, Block*>> pending;  // FIFO of (event, block) awaiting reuse
  std::vector<cudaEvent_t> event_pool;
  memory::Stats stats;
};

constexpr int kMaxDevices = 64;
std::once_flag g_once[kMaxDevices];
DeviceCache* g_caches[kMaxDevices];

DeviceCache& cache_for(int device) {
  SEQMIX_CHECK(device >= 0 && device < kMaxDevices, "invalid CUDA device index {}", device);
  std::call_once(g_once[device], [device] {
    g_caches[device] = new DeviceCache();  // lives until process exit (blocks may outlive statics)
    g_caches[device]->device = device;
  });
  return *g_caches[device];
}

void cache_free(void* ctx, void* ptr);

// Moves blocks whose cross-stream events have completed to the free lists. Caller holds mu.
void process_pending(DeviceCache& c) {
  while (!c.pending.empty()) {
    auto [ev, blk] = c.pending.front();
    const cudaError_t q = cudaEventQuery(ev);
    if (q == cudaErrorNotReady) {
      (void)cudaGetLastError();
      break;
    }
    SEQMIX_CUDA_CHECK(q);
    c.pending.pop_front();
    c.event_pool.push_back(ev);
    if (--blk->pending_events == 0) {
      blk->other_streams.clear();
      c.free_blocks[{blk->stream, blk->size}].push_back(blk);
    }
  }
}

// Returns every free cached block to the driver. Caller holds mu.
void release_cached(DeviceCache& c) {
  DeviceGuard g(c.device);
  for (auto& [key, blocks] : c.free_blocks) {
    for (Block* b : blocks) {
      SEQMIX_CUDA_CHECK(cudaFree(b->ptr));
      c.stats.reserved_bytes -= int64_t(b->size);
      c.stats.num_device_frees += 1;
      delete b;
    }
  }
  c.free_blocks.clear();
}

std::string fmt_bytes(int64_t b) {
  return fmt::format("{:.2f} GiB", double(b) / double(1ull << 30));
}

void cache_free(void* ctx, void* ptr) {
  DeviceCache& c = *static_cast<DeviceCache*>(ctx);
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.active.find(ptr);
  if (it == c.active.end()) return;  // not ours; cannot throw from a deleter
  Block* b = it->second;
  c.active.erase(it);
  c.stats.allocated_bytes -= int64_t(b->size);
  if (b->other_streams.empty()) {
    c.free_blocks[{b->stream, b->size}].push_back(b);
    return;
  }
  DeviceGuard g(c.device);
  for (cudaStream_t s : b->other_streams) {
    cudaEvent_t ev;
    if (!c.event_pool.empty()) {
      ev = c.event_pool.back();
      c.event_pool.pop_back();
    } else if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    if (cudaEventRecord(ev, s) != cudaSuccess) {
      (void)cudaGetLastError();
      c.event_pool.push_back(ev);
      continue;
    }
    b->pending_events += 1;
    c.pending.emplace_back(ev, b);
  }
  if (b->pending_events == 0) {
    b->other_streams.clear();
    c.free_blocks[{b->stream, b->size}].push_back(b);
  }
}

}  // namespace

size_t cache_round_size(size_t n) {
  if (n <= 512) return 512;
  if (n <= (size_t(1) << 20)) return (n + 511) / 512 * 512;
  const size_t p = std::bit_floor(n);
  const size_t step = p / 4;
  return (n + step - 1) / step * step;
}

DataPtr cache_allocate(int device, size_t nbytes) {
  if (nbytes == 0) return {};
  DeviceCache& c = cache_for(device);
  const size_t size = cache_round_size(nbytes);
  cudaStream_t stream = current_stream(device);
  Block* b = nullptr;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    c.stats.num_allocs += 1;
    if (!c.pending.empty()) process_pending(c);
    auto it = c.free_blocks.find({stream, size});
    if (it != c.free_blocks.end() && !it->second.empty()) {
      b = it->second.back();
      it->second.pop_back();
      c.stats.num_cache_hits += 1;
    } else {
      DeviceGuard g(device);
      void* p = nullptr;
      cudaError_t err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        release_cached(c);
        err = cudaMalloc(&p, size);
      }
      if (err != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        (void)cudaGetLastError();
        SEQMIX_THROW(
            OutOfMemory,
            "CUDA out of memory on cuda:{}: tried to allocate {} ({} bytes); seqmix has {} "
            "in use and {} reserved; the device has {} free of {}",
            device, fmt_bytes(int64_t(size)), nbytes, fmt_bytes(c.stats.allocated_bytes),
            fmt_bytes(c.stats.reserved_bytes), fmt_bytes(int64_t(free_b)),
            fmt_bytes(int64_t(total_b)));
      }
      b = new Block();
      b->ptr = p;
      b->size = size;
      b->stream = stream;
      c.stats.reserved_bytes += int64_t(size);
      c.stats.num_device_allocs += 1;
    }
    c.active.emplace(b->ptr, b);
    c.stats.allocated_bytes += int64_t(size);
    c.stats.peak_allocated_bytes = std::max(c.stats.peak_allocated_bytes, c.stats.allocated_bytes);
  }
  if (memory::poison_enabled()) {
    DeviceGuard g(device);
    SEQMIX_CUDA_CHECK(cudaMemsetAsync(b->ptr, 0xff, size, stream));
  }
  return DataPtr(b->ptr, &cache_free, &c);
}

memory::Stats cache_stats(int device) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lk(c.mu);
  return c.stats;
}

void cache_reset_peak(int device) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lk(c.mu);
  c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
}

void cache_empty(int device) {
  DeviceCache& c = cache_for(device);
  {
    DeviceGuard g(device);
    SEQMIX_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::lock_guard<std::mutex> lk(c.mu);
  process_pending(c);
  release_cached(c);
}

void cache_record_stream(void* ptr, int device, cudaStream_t stream) {
  DeviceCache& c = cache_for(device);
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.active.find(ptr);
  SEQMIX_CHECK(it != c.active.end(), "record_stream: pointer is not a live seqmix CUDA block");
  Block* b = it->second;
  if (stream == b->stream) return;
  if (std::find(b->other_streams.begin(), b->other_streams.end(), stream) == b->other_streams.end())
    b->other_streams.push_back(stream);
}

}  // namespace seqmix::cuda
