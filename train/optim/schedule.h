// Learning-rate schedules: linear warmup followed by cosine, linear, WSD (warmup-stable-decay) or
// constant. Steps are counted from 0 (the first optimizer step is step 0).
//   warmup (step < W):   lr = lr_max * (step + 1) / W          (so step W-1 reaches lr_max)
//   after warmup, with s = step - W, D = total - W, p = min(s / D, 1):
//     cosine:   lr = lr_min + (lr_max - lr_min) * (1 + cos(pi p)) / 2
//     linear:   lr = lr_max + (lr_min - lr_max) * p
//     wsd:      lr = lr_max until the last decay_fraction * total steps, then linear to lr_min:
//               with Ds = round(decay_fraction * total) decay steps starting at total - Ds,
//               q = min((step - (total - Ds)) / Ds, 1), lr = lr_max + (lr_min - lr_max) * q
//     constant: lr = lr_max
//   Steps at or beyond total_steps keep the final value (lr_min; lr_max for constant).
#pragma once
#include <cstdint>
#include <string>

namespace seqmix {

struct ScheduleConfig {
  std::string kind = "cosine";  // cosine | linear | wsd | constant
  int64_t warmup_steps = 0;     // >= 0, <= total_steps
  int64_t total_steps = 0;      // > 0
  double lr_max = 0;            // > 0
  double lr_min = 0;            // 0 <= lr_min <= lr_max
  double decay_fraction = 0.2;  // wsd: the last fraction of total_steps decays; in (0, 1]
};

class LrSchedule {
 public:
  // Validates the config; errors are Error(Config) naming the offending field.
  explicit LrSchedule(ScheduleConfig cfg);
  // The learning rate of optimizer step `step` (0-based). step < 0 is an Error(Value).
  double lr(int64_t step) const;
  const ScheduleConfig& config() const { return cfg_; }

 private:
  enum class Kind { Cosine, Linear, Wsd, Constant };
  ScheduleConfig cfg_;
  Kind kind_ = Kind::Cosine;
  int64_t decay_start_ = 0;  // wsd: first decaying step
};

}  // namespace seqmix
