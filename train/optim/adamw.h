// AdamW with decoupled weight decay, fused over all parameters (one CUDA launch per step).
// For every element of every parameter, with t = the number of applied steps including this one:
//   g = grad * scale
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - lr * ( (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + wd_i * p )
// with wd_i = decay ? weight_decay : 0. All element math is f32 with single rounded operations
// (no FMA contraction) and bias corrections from b^t by binary exponentiation in fp64, so the CPU
// and CUDA paths are bit-identical; `scale` is the clipper's device scale (1 without a clipper).
//
// Skip policy: when the clipper's non-finite flag is set, the whole update is skipped on the
// device: params, m and v are left bitwise unchanged and the applied-step count is not
// incremented. The host never waits for the flag. Two counters:
//   attempted_steps() - host counter, +1 per step() call (skipped or not); exact without a sync.
//   applied steps     - device i64 counter, +1 per step that was not skipped; this is the t of the
//                       bias corrections. read_applied_steps() reads it (synchronises).
// The device counter is double-buffered (slots [2], read slot attempted % 2, write the other) so
// the single launch can read and advance it without a race or a second launch.
//
// Layouts: param, grad, m, v: f32 contiguous, same shape, all on one device. Tensors are held by
// reference to their storage: the trainer must keep gradients in these buffers (set_grad).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace seqmix {

class GradClipper;

struct AdamWConfig {
  double lr = 1e-3;  // default lr (the trainer normally passes the schedule's lr to step())
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

struct ParamRef {
  Tensor param;  // f32, contiguous; updated in place
  Tensor grad;   // f32, contiguous, same shape and device as param
  bool decay = true;
  std::string name;  // unique, non-empty (the module's dotted name)
};

class AdamW {
 public:
  // Validates every ParamRef (names the bad one), allocates m and v (zeros) and builds the chunk
  // table (copied to the device once).
  AdamW(std::vector<ParamRef> params, AdamWConfig cfg = {});

  // One update with learning rate `lr`, scaled and guarded by `clip` (see the skip policy above;
  // `clip` must have been computed for this step's gradients). Enqueued on the current stream:
  // no host sync, no allocation, no host-to-device copy.
  void step(double lr, const GradClipper& clip);
  // The same with explicit device scalars: `scale` f32 [] (undefined = 1) and `nonfinite` i32 []
  // (undefined = never skip), both on the parameters' device.
  void step(double lr, const Tensor& scale = {}, const Tensor& nonfinite = {});

  int64_t attempted_steps() const { return attempted_; }
  int64_t read_applied_steps() const;  // synchronises with the device

  // Checkpoint state: "m.<name>", "v.<name>" (f32 tensors aliasing the live state, on the
  // parameters' device), "step" (i64 [] applied steps, a CPU copy; synchronises) and
  // "attempted_steps" (i64 [], CPU).
  std::vector<std::pair<std::string, Tensor>> state() const;
  // Restores the state written by state() (any device; copied in). Every m./v. entry of every
  // parameter and both counters are required; a missing entry or a shape mismatch raises
  // Error(Checkpoint) naming it. Unknown entries are ignored.
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state);

  const std::vector<ParamRef>& params() const { return params_; }
  const AdamWConfig& config() const { return cfg_; }
  Device device() const { return device_; }

 private:
  std::vector<ParamRef> params_;
  std::vector<Tensor> m_, v_;
  AdamWConfig cfg_;
  Device device_;
  int64_t attempted_ = 0;
  int64_t nchunks_ = 0;
  Tensor table_;  // u8 bytes of AdamWChunk[nchunks]
  Tensor count_;  // i64 [2] applied-step counter, double-buffered
};

}  // namespace seqmix
