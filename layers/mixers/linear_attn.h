// Linear attention mixer (Katharopoulos et al. 2020; fla's LinearAttention layer): causal
// kernelised attention with an unnormalised (by default) running state, no decay.
//   q = φ(x Wq), k = φ(x Wk) -> [B, T, H, K];  v = x Wv -> [B, T, H, V]
//   S_t = S_{t-1} + k_tᵀ v_t,   o_t = s · q_t S_t            (s = 1/sqrt(K); GlaGate::None)
//   normalize:  o_t <- o_t / (s · q_t · Σ_{u≤t} k_u + eps)    (needs a positive φ)
//   output_norm: o_t <- rms_norm_V(o_t) · w                     (per head)
//   y = [o_t over heads] Wo -> [B, T, C]
// φ: identity | elu1 (elu(x) + 1) | relu. The recurrence is kernels/gla (one fused node).
#pragma once
#include <memory>
#include <string>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

struct LinearAttnConfig {
  int64_t n_heads = 8;
  int64_t key_dim = 0;    // H * K
  int64_t value_dim = 0;  // H * V
  std::string feature_map = "identity";
  bool normalize = false;
  bool output_norm = false;
  double norm_eps = 1e-5;
};

class LinearAttnMixer : public Mixer {
 public:
  LinearAttnMixer(int64_t d_model, const LinearAttnConfig& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const LinearAttnConfig& config() const { return cfg_; }

 private:
  Variable feature_map(const Variable& x) const;

  int64_t d_model_;
  LinearAttnConfig cfg_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<RMSNorm> o_norm_;  // output_norm only
};

MixerEntry linear_attn_mixer_entry();

}  // namespace seqmix::nn
