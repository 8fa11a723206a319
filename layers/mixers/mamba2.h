// Mamba-2 mixer (Dao & Gu 2024, "Transformers are SSMs"; state-spaces/mamba's Mamba2 block) with
// one B/C group (ngroups = 1). With E = expand · C inner width, H = E / P heads of dim P, state N:
//   [z, xBC, dt] = x W_in                       z: [B,T,E], xBC: [B,T,E+2N], dt: [B,T,H]
//   [x, B, C]    = silu(causal_conv_4(xBC))     x: [B,T,H,P], B, C: [B,T,N] (shared by heads)
//   Δ = softplus(dt + dt_bias) (fp32),  A_h = -exp(A_log_h),  g_t = Δ_t · A    (HeadScalar)
//   S_t = exp(g_t) S_{t-1} + B_tᵀ (Δ_t x_t),   y_t = C_t S_t + D_h x_t          (SSD, scale 1)
//   out = W_out rms_norm(y ⊙ silu(z)) · w       (gated RMSNorm over E, norm after the gate)
// The SSD recurrence is kernels/gla with q = C, k = B broadcast to the H heads, v = Δ·x; the
// short conv is kernels/short_conv (fused SiLU).
#pragma once
#include <memory>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

struct Mamba2Config {
  int64_t d_state = 128;  // N
  int64_t head_dim = 64;  // P
  int64_t expand = 2;
  int64_t d_conv = 4;
  bool conv_bias = true;
  double dt_min = 1e-3, dt_max = 1e-1, dt_init_floor = 1e-4;
  double a_init_min = 1.0, a_init_max = 16.0;
  double norm_eps = 1e-5;
};

class Mamba2Mixer : public Mixer {
 public:
  Mamba2Mixer(int64_t d_model, const Mamba2Config& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const Mamba2Config& config() const { return cfg_; }
  int64_t inner_dim() const { return d_inner_; }
  int64_t n_heads() const { return n_heads_; }

 private:
  int64_t d_model_, d_inner_, n_heads_;
  Mamba2Config cfg_;
  std::shared_ptr<Linear> in_proj_, out_proj_;
  Variable conv_weight_, conv_bias_, dt_bias_, a_log_, d_;
  std::shared_ptr<RMSNorm> norm_;
};

MixerEntry mamba2_mixer_entry();

}  // namespace seqmix::nn
