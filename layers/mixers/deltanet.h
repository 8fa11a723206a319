// The delta-rule mixers: DeltaNet (Yang et al. 2024, "Parallelizing Linear Transformers with the
// Delta Rule over Sequence Length"), Gated DeltaNet (Yang, Kautz & Hatamizadeh, ICLR 2025) and
// KDA (Kimi Delta Attention, Kimi Linear, Moonshot AI 2025); fla's DeltaNet, GatedDeltaNet and
// KimiDeltaAttention layers. One module, three gates (kernels/delta_rule's DeltaGate):
//   [q, k, v] = silu(causal_conv_W(x W_qkv))     q, k: [B, T, H, K];  v: [B, T, H, V]
//   β_t = σ(W_β x_t) (×2 with allow_neg_eigval)  [B, T, H]                               (fp32)
//   g_t: none (DeltaNet) | −exp(A_log_h) softplus(W_a x_t + dt_bias)_h  [B, T, H] (Gated DeltaNet)
//        | −exp(A_log_h) softplus(W_f↑ W_f↓ x_t + dt_bias)_{h,i}  [B, T, H, K] (KDA)    (fp32)
//   S_t = (I − β_t k̂_t k̂_tᵀ) Diag(exp g_t) S_{t-1} + β_t k̂_t v_tᵀ,  o_t = S_tᵀ q̂_t / sqrt(K)
//         with q̂, k̂ the L2-normalised q, k (inside the op: DeltaOptions::l2norm_qk)
//   y = W_o [rms_norm_V(o_t) · w ⊙ act(z_t)]      (per-head norm, weight w: [V] shared by heads)
//        z = W_g x, act = silu (DeltaNet with output_gate, Gated DeltaNet); none (DeltaNet default)
//        z = W_g↑ W_g↓ x + b_g, act = sigmoid (KDA)
// The recurrence is one fused node (kernels/delta_rule), the conv one kernels/short_conv call over
// the concatenated q, k, v channels (same as three depthwise convs).
#pragma once
#include <memory>

#include "kernels/delta_rule/delta_rule.h"
#include "layers/linear.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

struct DeltaNetConfig {
  DeltaGate gate = DeltaGate::None;  // None: deltanet, HeadScalar: gated_deltanet, KeyVector: kda
  int64_t n_heads = 4;
  int64_t key_dim = 0;    // H * K
  int64_t value_dim = 0;  // H * V
  int64_t conv_size = 4;  // short conv width W (2..4)
  bool conv_bias = false;
  bool allow_neg_eigval = false;  // β ∈ (0, 2) instead of (0, 1)
  // Swish output gate z = W_g x (deltanet, gated_deltanet). KDA always has its low-rank sigmoid
  // gate and ignores this flag.
  bool output_gate = false;
  int64_t gate_low_rank_dim = 0;  // KDA: rank r of the decay and output-gate projections
  // Gated DeltaNet: softplus(dt_bias) starts log-uniform in [dt_min, dt_max], floored at
  // dt_init_floor. KDA: dt_bias starts at 0 (fla / Kimi Linear).
  double dt_min = 1e-3, dt_max = 1e-1, dt_init_floor = 1e-4;
  // A = exp(A_log) starts U[a_init_min, a_init_max] per head (floored at kMinA).
  double a_init_min = 0.0, a_init_max = 16.0;
  double norm_eps = 1e-5;
};

class DeltaNetMixer : public Mixer {
 public:
  // A = exp(A_log) is floored at this at init so that A_log is finite (U[0, 16] can draw 0).
  static constexpr double kMinA = 1e-4;

  DeltaNetMixer(int64_t d_model, const DeltaNetConfig& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const DeltaNetConfig& config() const { return cfg_; }
  // β: [B, T, H] in the gate dtype (fp32, or f64 for f64 x).
  Variable beta(const Variable& x) const;
  // The log-gate g ≤ 0 (gate dtype): [B, T, H] (Gated DeltaNet), [B, T, H, K] (KDA); undefined
  // for DeltaNet.
  Variable log_gate(const Variable& x) const;

 private:
  int64_t d_model_;
  DeltaNetConfig cfg_;
  std::shared_ptr<Linear> qkv_proj_, b_proj_, a_proj_, f_proj_a_, f_proj_b_, g_proj_, g_proj_a_,
      g_proj_b_, o_proj_;
  Variable conv_weight_, conv_bias_, a_log_, dt_bias_;
  std::shared_ptr<RMSNorm> o_norm_;
};

MixerEntry deltanet_mixer_entry();
MixerEntry gated_deltanet_mixer_entry();
MixerEntry kda_mixer_entry();

}  // namespace seqmix::nn
