// HGRN2 mixer (Qin et al. 2024, "HGRN2: Gated Linear RNNs with State Expansion"; fla's
// HGRN2Attention layer). Heads H = C / E with expand ratio E, so each head has a state E × E:
//   q = silu(x Wq), f = x Wf, i = x Wi                -> [B, T, H, E]
//   forget gate λ_t = β + (1 - β) sigmoid(f_t) ∈ (β, 1)   (β = lower_bound), in fp32
//   g_t = log λ_t (KeyVector),  k_t = 1 - λ_t = (1 - β) sigmoid(-f_t)      (input gate tied)
//   S_t = diag(λ_t) S_{t-1} + k_tᵀ i_t,   o_t = q_t S_t / sqrt(E)
//   y = Wo rms_norm(o_t over all heads) · w            (RMSNorm over C, as fla)
// fla feeds a per-layer lower bound computed by the model (cumulative softmax of a learned
// vector, 0 in layer 0); here it is a fixed per-mixer option (0: no bound).
#pragma once
#include <memory>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

struct Hgrn2Config {
  int64_t expand_ratio = 128;  // E: head dim of the forget gate and of the input
  double lower_bound = 0.0;
  double norm_eps = 1e-5;
};

class Hgrn2Mixer : public Mixer {
 public:
  Hgrn2Mixer(int64_t d_model, const Hgrn2Config& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const Hgrn2Config& config() const { return cfg_; }
  int64_t n_heads() const { return d_model_ / cfg_.expand_ratio; }

 private:
  int64_t d_model_;
  Hgrn2Config cfg_;
  std::shared_ptr<Linear> q_proj_, f_proj_, i_proj_, o_proj_;
  std::shared_ptr<RMSNorm> g_norm_;
};

MixerEntry hgrn2_mixer_entry();

}  // namespace seqmix::nn
