#include "train/cli/timing.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/check.h"
#include "core/cuda/runtime.h"

namespace seqmix::cli {

double Timing::median() const {
  SEQMIX_CHECK(!ms.empty(), "no timed runs");
  std::vector<double> s = ms;
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}
double Timing::min() const {
  return *std::min_element(ms.begin(), ms.end());
}
double Timing::max() const {
  return *std::max_element(ms.begin(), ms.end());
}

Timing time_runs(Device device, int warmup, int iters, const std::function<void()>& fn) {
  SEQMIX_CHECK_KIND(Usage, iters > 0, "--iters must be positive");
  for (int i = 0; i < warmup; ++i) fn();
  Timing t;
  if (device.is_cuda()) {
    cuda::DeviceGuard g(device.index);
    cudaStream_t s = cuda::current_stream(device.index);
    std::vector<std::unique_ptr<cuda::Event>> ev;
    for (int i = 0; i < 2 * iters; ++i) ev.push_back(std::make_unique<cuda::Event>(true));
    cuda::synchronize(device.index);
    for (int i = 0; i < iters; ++i) {
      ev[size_t(2 * i)]->record(s);
      fn();
      ev[size_t(2 * i + 1)]->record(s);
    }
    ev.back()->synchronize();
    for (int i = 0; i < iters; ++i)
      t.ms.push_back(ev[size_t(2 * i)]->elapsed_ms(*ev[size_t(2 * i + 1)]));
  } else {
    for (int i = 0; i < iters; ++i) {
      const auto a = std::chrono::steady_clock::now();
      fn();
      const auto b = std::chrono::steady_clock::now();
      t.ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
    }
  }
  return t;
}

}  // namespace seqmix::cli
