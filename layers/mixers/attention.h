// Softmax attention mixer: multi-head / grouped-query, causal, optional sliding window and
// rotary position embedding.
//   q = x Wq -> [B, T, H, D],  k = x Wk, v = x Wv -> [B, T, Hkv, D]  (H % Hkv == 0)
//   q, k <- rope(q), rope(k)                       (rotate-half, layers/rotary.h)
//   o[t, h] = sum_{s <= t, t - s < window or window = 0} softmax_s(q_t.k_s / sqrt(D)) v_s
//   y = o Wo -> [B, T, C];  query head h reads kv head h / (H / Hkv)
// The attention itself is the fused op kernels/attention (one autograd node); the decomposed form
// below is its second formulation for tests.
#pragma once
#include <memory>

#include "layers/linear.h"
#include "layers/mixers/mixer.h"
#include "layers/rotary.h"

namespace seqmix::nn {

struct AttentionConfig {
  int64_t n_heads = 4;
  int64_t n_kv_heads = 4;
  int64_t head_dim = 0;
  int64_t window = 0;  // 0 = full causal attention
  bool rotary = true;
  double rope_theta = 10000.0;
  bool qkv_bias = false;
};

class AttentionMixer : public Mixer {
 public:
  AttentionMixer(int64_t d_model, const AttentionConfig& cfg, uint64_t init_seed);
  Variable forward(const Variable& x, const ForwardContext& ctx) override;
  const AttentionConfig& config() const { return cfg_; }

 private:
  int64_t d_model_;
  AttentionConfig cfg_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
  std::unique_ptr<Rotary> rope_;
};

// Causal (sliding-window) grouped-query attention from generic ops: materialises the [T, T]
// scores. q: [B, T, H, D], k, v: [B, T, Hkv, D] -> [B, T, H, D]. scale 0 means 1/sqrt(D).
Variable attention_decomposed(const Variable& q, const Variable& k, const Variable& v,
                              double scale = 0.0, int64_t window = 0);

MixerEntry attention_mixer_entry();

}  // namespace seqmix::nn
