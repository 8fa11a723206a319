// Global-norm gradient clipping and non-finite detection, computed on the device without
// synchronising the host (the step can be captured as a CUDA graph).
//   sumsq     = sum over every gradient element of g^2          (fp64, fixed-order reduction)
//   norm      = sqrt(sumsq)                                      (stored as f32 [])
//   scale     = max_norm > 0 ? min(1, max_norm / (norm + 1e-6)) : 1      (f32 [], from fp64)
//   nonfinite = 1 when any gradient element is NaN or Inf, else 0        (i32 [])
// Non-finite detection is exact: squares of finite f32 values cannot overflow fp64, so sumsq is
// non-finite exactly when some element is. The clipper does not modify the gradients: AdamW
// multiplies by `scale()` inside its update.
//
// Reduction order: every gradient is cut into chunks of optim_detail::kOptimChunk elements; each
// chunk is summed to an fp64 partial (CPU: sequentially; GPU: per-thread strided sums + a fixed
// block tree), then the partials are summed in a fixed tree. Results are deterministic (bitwise
// equal run to run) on each device; CPU and GPU agree to fp64 rounding.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace seqmix {

class GradClipper {
 public:
  // `grads`: f32 contiguous tensors, all on one device; at least one (zero-size ones are fine).
  // The tensors are held (their storage must stay the gradient buffers the trainer fills: use
  // Variable::set_grad with fixed buffers). max_norm <= 0 disables clipping (scale stays 1).
  GradClipper(std::vector<Tensor> grads, double max_norm);

  // Enqueues the reduction on the current stream of the device (no host sync, no allocation).
  void compute();

  // Device scalars written by compute(): norm (f32 []), scale (f32 []), nonfinite (i32 []).
  const Tensor& norm() const { return norm_; }
  const Tensor& scale() const { return scale_; }
  const Tensor& nonfinite() const { return nonfinite_; }

  // Host reads of the results of the last compute(). These SYNCHRONISE with the device.
  double read_norm() const;
  double read_scale() const;
  bool read_nonfinite() const;

  double max_norm() const { return max_norm_; }
  Device device() const { return device_; }
  int64_t numel() const { return numel_; }
  int64_t num_chunks() const { return nchunks_; }

 private:
  std::vector<Tensor> grads_;
  double max_norm_;
  Device device_;
  int64_t numel_ = 0;
  int64_t nchunks_ = 0;
  Tensor table_;     // u8 bytes of NormChunk[nchunks] on the device (CUDA) / host copy (CPU)
  Tensor partials_;  // f64 [nchunks]
  Tensor norm_, scale_, nonfinite_;
};

}  // namespace seqmix
