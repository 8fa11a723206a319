// Gated linear attention mixer (GLA, Yang et al. 2023; fla's GatedLinearAttention layer).
//   q, k = x Wq, x Wk -> [B, T, H, K] (H·K = expand_k · C);  v = x Wv -> [B, T, H, V]
//   α_t = logsigmoid(W2 W1 x_t + b) / gate_logit_normalizer -> [B, T, H, K]   (fp32, ≤ 0)
//   S_t = diag(exp α_t) S_{t-1} + k_tᵀ v_t,   o_t = q_t S_t / sqrt(K)          (KeyVector)
//   y = Wo [rms_norm_V(o_t) · w ⊙ silu(x Wg)]          (per-head norm, swish output gate)
// W1: [r, C] (no bias), W2: [H·K, r] with bias b: the low-rank (r = gate_low_rank_dim) gate.
#pragma once
#include <memory>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

struct GlaConfig {
  int64_t n_heads = 4;
  int64_t key_dim = 0;    // H * K
  int64_t value_dim = 0;  // H * V
  int64_t gate_low_rank_dim = 16;
  double gate_logit_normalizer = 16.0;
  bool output_gate = true;
  double norm_eps = 1e-5;
};

class GlaMixer : public Mixer {
 public:
  GlaMixer(int64_t d_model, const GlaConfig& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const GlaConfig& config() const { return cfg_; }
  // The log-gate α (fp32, or f64 for f64 x): [B, T, H, K].
  Variable log_gate(const Variable& x) const;

 private:
  int64_t d_model_;
  GlaConfig cfg_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, g_proj_, gk_proj_a_, gk_proj_b_, o_proj_;
  std::shared_ptr<RMSNorm> g_norm_;
};

MixerEntry gla_mixer_entry();

}  // namespace seqmix::nn
