// Devices, streams and events (see runtime.h). CPU-only builds get stubs that explain themselves.
#include "core/cuda/runtime.h"

#include <array>
#include <mutex>

#include "core/check.h"

#if SEQMIX_WITH_CUDA
#include <cuda_runtime_api.h>

#include "core/cuda/cuda_check.h"
#endif

namespace seqmix::cuda {

bool built_with_cuda() {
  return SEQMIX_WITH_CUDA != 0;
}

#if SEQMIX_WITH_CUDA

[[noreturn]] void fail(cudaError_t err, const char* expr, const char* file, int line) {
  const ErrorKind kind =
      err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Cuda;
  detail::throw_error(
      kind, file, line,
      fmt::format("{} failed: {} ({})", expr, cudaGetErrorString(err), cudaGetErrorName(err)));
}

namespace {

constexpr int kMaxDevices = 64;

struct Probe {
  int count = 0;
  std::string reason;
};
const Probe& probe() {
  static const Probe p = [] {
    Probe r;
    const cudaError_t e = cudaGetDeviceCount(&r.count);
    if (e != cudaSuccess) {
      r.reason = fmt::format("no usable CUDA device: {}", cudaGetErrorString(e));
      r.count = 0;
      (void)cudaGetLastError();
    } else if (r.count == 0) {
      r.reason = "no CUDA device present";
    }
    return r;
  }();
  return p;
}

std::array<std::once_flag, kMaxDevices> g_stream_once;
std::array<cudaStream_t, kMaxDevices> g_main_streams{};
thread_local std::array<cudaStream_t, kMaxDevices> t_current{};
thread_local std::array<bool, kMaxDevices> t_has_current{};

std::array<std::once_flag, kMaxDevices> g_props_once;
std::array<DeviceProps, kMaxDevices> g_props;

void check_index(int device) {
  SEQMIX_CHECK(device >= 0 && device < device_count(),
               "CUDA device {} does not exist ({} device(s) present)", device, device_count());
}

}  // namespace

bool is_available() {
  return probe().count > 0;
}
std::string unavailable_reason() {
  return is_available() ? std::string() : probe().reason;
}
int device_count() {
  return probe().count;
}

const DeviceProps& props(int device) {
  check_index(device);
  std::call_once(g_props_once[device], [device] {
    cudaDeviceProp p{};
    SEQMIX_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    DeviceProps& d = g_props[device];
    d.name = p.name;
    d.major = p.major;
    d.minor = p.minor;
    d.sm_count = p.multiProcessorCount;
    d.total_memory = int64_t(p.totalGlobalMem);
    d.l2_bytes = p.l2CacheSize;
    d.max_smem_per_block_optin = int(p.sharedMemPerBlockOptin);
    d.max_threads_per_sm = p.maxThreadsPerMultiProcessor;
  });
  return g_props[device];
}

int current_device() {
  int d = 0;
  SEQMIX_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) {
  check_index(device);
  SEQMIX_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::DeviceGuard(int device) {
  prev_ = current_device();
  if (prev_ != device) SEQMIX_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur != prev_) (void)cudaSetDevice(prev_);
}

cudaStream_t main_stream(int device) {
  check_index(device);
  std::call_once(g_stream_once[device], [device] {
    DeviceGuard g(device);
    cudaStream_t s;
    SEQMIX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    g_main_streams[device] = s;
  });
  return g_main_streams[device];
}

cudaStream_t current_stream(int device) {
  if (device >= 0 && device < kMaxDevices && t_has_current[device]) return t_current[device];
  return main_stream(device);
}

StreamGuard::StreamGuard(int device, cudaStream_t stream) : device_(device) {
  check_index(device);
  prev_ = t_has_current[device] ? t_current[device] : nullptr;
  t_current[device] = stream;
  t_has_current[device] = true;
}

StreamGuard::~StreamGuard() {
  t_current[device_] = prev_;
  t_has_current[device_] = prev_ != nullptr;
}

cudaStream_t create_stream(int device, int priority) {
  DeviceGuard g(device);
  cudaStream_t s;
  SEQMIX_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, priority));
  return s;
}

void destroy_stream(cudaStream_t s) {
  SEQMIX_CUDA_CHECK(cudaStreamDestroy(s));
}

void synchronize(int device) {
  synchronize_stream(current_stream(device));
}
void synchronize_stream(cudaStream_t s) {
  SEQMIX_CUDA_CHECK(cudaStreamSynchronize(s));
}

Event::Event(bool timing) {
  cudaEvent_t e;
  SEQMIX_CUDA_CHECK(
      cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  ev_ = e;
}
Event::~Event() {
  if (ev_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(ev_));
}
void Event::record(cudaStream_t s) {
  SEQMIX_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(ev_), s));
}
void Event::wait(cudaStream_t s) const {
  SEQMIX_CUDA_CHECK(cudaStreamWaitEvent(s, static_cast<cudaEvent_t>(ev_), 0));
}
void Event::synchronize() const {
  SEQMIX_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(ev_)));
}
bool Event::query() const {
  const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(ev_));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  SEQMIX_CUDA_CHECK(e);
  return true;
}
float Event::elapsed_ms(const Event& end) const {
  float ms = 0;
  SEQMIX_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(ev_), static_cast<cudaEvent_t>(end.ev_)));
  return ms;
}

#else  // CPU-only build

namespace {
[[noreturn]] void no_cuda() {
  SEQMIX_THROW(Unsupported,
               "this seqmix build has no CUDA support (configure with the cuda preset)");
}
}  // namespace

bool is_available() {
  return false;
}
std::string unavailable_reason() {
  return "seqmix was built without CUDA";
}
int device_count() {
  return 0;
}
const DeviceProps& props(int) {
  no_cuda();
}
int current_device() {
  no_cuda();
}
void set_device(int) {
  no_cuda();
}
DeviceGuard::DeviceGuard(int) {
  no_cuda();
}
DeviceGuard::~DeviceGuard() = default;
cudaStream_t main_stream(int) {
  no_cuda();
}
cudaStream_t current_stream(int) {
  no_cuda();
}
StreamGuard::StreamGuard(int device, cudaStream_t) : device_(device), prev_(nullptr) {
  no_cuda();
}
StreamGuard::~StreamGuard() = default;
cudaStream_t create_stream(int, int) {
  no_cuda();
}
void destroy_stream(cudaStream_t) {
  no_cuda();
}
void synchronize(int) {
  no_cuda();
}
void synchronize_stream(cudaStream_t) {
  no_cuda();
}
Event::Event(bool) {
  no_cuda();
}
Event::~Event() = default;
void Event::record(cudaStream_t) {
  no_cuda();
}
void Event::wait(cudaStream_t) const {
  no_cuda();
}
void Event::synchronize() const {
  no_cuda();
}
bool Event::query() const {
  no_cuda();
}
float Event::elapsed_ms(const Event&) const {
  no_cuda();
}

#endif

}  // namespace seqmix::cuda
