// Multi-scale retention mixer (RetNet, Sun et al. 2023; fla's MultiScaleRetention layer).
//   q, k = rope(x Wq), rope(x Wk) -> [B, T, H, K];  v = x Wv -> [B, T, H, V]   (V = 2K default)
//   S_t = γ_h S_{t-1} + k_tᵀ v_t,  o_t = q_t S_t / sqrt(K),   γ_h = 1 - 2^(-5-h)  (fixed)
//   y = Wo [rms_norm_V(o_t) · w ⊙ silu(x Wg)]                 (per-head norm, swish gate)
// The decays enter kernels/gla as GlaGate::HeadConst with g[h] = log γ_h (no gradient). The
// paper's xPos is replaced by rotary embeddings (rotate-half) and its GroupNorm by a per-head
// RMSNorm, as in fla.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"
#include "layers/rotary.h"

namespace seqmix::nn {

struct RetNetConfig {
  int64_t n_heads = 8;
  int64_t key_dim = 0;    // H * K
  int64_t value_dim = 0;  // H * V
  bool rotary = true;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
};

class RetNetMixer : public Mixer {
 public:
  RetNetMixer(int64_t d_model, const RetNetConfig& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const RetNetConfig& config() const { return cfg_; }
  // log γ_h for h = 0 .. H-1 (f64, host).
  const std::vector<double>& log_decays() const { return log_gamma_; }

 private:
  Tensor decay_tensor(Device d, DType dt);

  int64_t d_model_;
  RetNetConfig cfg_;
  std::vector<double> log_gamma_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, g_proj_, o_proj_;
  std::shared_ptr<RMSNorm> g_norm_;
  std::unique_ptr<Rotary> rope_;
  // The [H] log-decay tensor per (device type, index, dtype): copied to a device once.
  std::mutex mu_;
  std::map<std::tuple<int, int, int>, Tensor> decay_cache_;
};

MixerEntry retnet_mixer_entry();

}  // namespace seqmix::nn
