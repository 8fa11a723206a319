// LR schedules (formulas in schedule.h).
#include "train/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/check.h"

namespace seqmix {

LrSchedule::LrSchedule(ScheduleConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.kind == "cosine") {
    kind_ = Kind::Cosine;
  } else if (cfg_.kind == "linear") {
    kind_ = Kind::Linear;
  } else if (cfg_.kind == "wsd") {
    kind_ = Kind::Wsd;
  } else if (cfg_.kind == "constant") {
    kind_ = Kind::Constant;
  } else {
    SEQMIX_THROW(Config,
                 "schedule.kind: unknown schedule '{}' (expected cosine, linear, wsd or "
                 "constant)",
                 cfg_.kind);
  }
  SEQMIX_CHECK_KIND(Config, cfg_.total_steps > 0, "schedule.total_steps must be > 0, got {}",
                    cfg_.total_steps);
  SEQMIX_CHECK_KIND(Config, cfg_.warmup_steps >= 0 && cfg_.warmup_steps <= cfg_.total_steps,
                    "schedule.warmup_steps must be in [0, total_steps = {}], got {}",
                    cfg_.total_steps, cfg_.warmup_steps);
  SEQMIX_CHECK_KIND(Config, std::isfinite(cfg_.lr_max) && cfg_.lr_max > 0,
                    "schedule.lr_max must be a finite number > 0, got {}", cfg_.lr_max);
  SEQMIX_CHECK_KIND(
      Config, std::isfinite(cfg_.lr_min) && cfg_.lr_min >= 0 && cfg_.lr_min <= cfg_.lr_max,
      "schedule.lr_min must be in [0, lr_max = {}], got {}", cfg_.lr_max, cfg_.lr_min);
  if (kind_ == Kind::Wsd) {
    SEQMIX_CHECK_KIND(Config, cfg_.decay_fraction > 0 && cfg_.decay_fraction <= 1,
                      "schedule.decay_fraction must be in (0, 1], got {}", cfg_.decay_fraction);
    const int64_t decay_steps =
        std::max<int64_t>(1, std::llround(cfg_.decay_fraction * double(cfg_.total_steps)));
    decay_start_ = cfg_.total_steps - decay_steps;
    SEQMIX_CHECK_KIND(Config, decay_start_ >= cfg_.warmup_steps,
                      "schedule: wsd decay ({} steps = decay_fraction {} of total_steps {}) "
                      "overlaps the warmup ({} steps)",
                      decay_steps, cfg_.decay_fraction, cfg_.total_steps, cfg_.warmup_steps);
  }
}

double LrSchedule::lr(int64_t step) const {
  SEQMIX_CHECK(step >= 0, "LrSchedule::lr: step must be >= 0, got {}", step);
  const double hi = cfg_.lr_max, lo = cfg_.lr_min;
  const int64_t w = cfg_.warmup_steps, total = cfg_.total_steps;
  if (step < w) return hi * double(step + 1) / double(w);
  switch (kind_) {
    case Kind::Constant:
      return hi;
    case Kind::Cosine:
    case Kind::Linear: {
      const int64_t d = total - w;
      if (d <= 0 || step >= total) return lo;
      const double p = double(step - w) / double(d);
      if (kind_ == Kind::Linear) return hi + (lo - hi) * p;
      return lo + (hi - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
    }
    case Kind::Wsd: {
      if (step < decay_start_) return hi;
      if (step >= total) return lo;
      const double q = double(step - decay_start_) / double(total - decay_start_);
      return hi + (lo - hi) * q;
    }
  }
  return hi;
}

}  // namespace seqmix
