// CUDA devices, streams and events as seen by the rest of seqmix. Declared in every build; in a
// CPU-only build is_available() is false and the other calls throw Error(Unsupported).
//
// Streams: each device has one process-wide non-blocking "main" stream, created on first use.
// current_stream(d) returns it unless a StreamGuard on this thread selected another stream.
// Every kernel launch and allocation goes to the current stream of its device.
#pragma once
#include <cstdint>
#include <string>

#include "core/macros.h"

namespace seqmix::cuda {

bool built_with_cuda();
// True when built with CUDA and at least one device is usable.
bool is_available();
// Why is_available() is false ("seqmix was built without CUDA", "no CUDA device: ...").
std::string unavailable_reason();
int device_count();

struct DeviceProps {
  std::string name;
  int major = 0, minor = 0;
  int sm_count = 0;
  int64_t total_memory = 0;
  int l2_bytes = 0;
  int max_smem_per_block_optin = 0;
  int max_threads_per_sm = 0;
};
const DeviceProps& props(int device);

int current_device();
void set_device(int device);

// Sets the current device for the lifetime of the guard, then restores it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = -1;
};

cudaStream_t current_stream(int device);
cudaStream_t main_stream(int device);

// Makes `stream` the current stream of `device` on this thread for the guard's lifetime.
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t prev_;
};

// A new non-blocking stream on `device` (caller destroys it with destroy_stream).
cudaStream_t create_stream(int device, int priority = 0);
void destroy_stream(cudaStream_t s);
// Waits until the current stream of `device` has finished its queued work.
void synchronize(int device);
void synchronize_stream(cudaStream_t s);

// A CUDA event for timing and cross-stream ordering.
class Event {
 public:
  explicit Event(bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s);
  void wait(cudaStream_t s) const;  // makes `s` wait for this event (no host sync)
  void synchronize() const;
  bool query() const;                        // true when completed
  float elapsed_ms(const Event& end) const;  // from this event to `end`

 private:
  void* ev_ = nullptr;
};

}  // namespace seqmix::cuda
