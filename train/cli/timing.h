// Timing helpers for benchmarks: repeated runs, median of per-run times measured with CUDA
// events on the device (host clock after a sync on the CPU).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"

namespace seqmix::cli {

struct Timing {
  std::vector<double> ms;  // one entry per timed run
  double median() const;
  double min() const;
  double max() const;
};

// Runs `fn` `warmup` times, then `iters` times, each timed on its own.
Timing time_runs(Device device, int warmup, int iters, const std::function<void()>& fn);

}  // namespace seqmix::cli
