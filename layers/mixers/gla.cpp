// Gated linear attention mixer (see gla.h): projections, low-rank fp32 log-gate, kernels/gla with
// per-key-dim gates (KeyVector), per-head RMSNorm with swish output gate, output projection.
#include "layers/mixers/gla.h"

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/gla/gla.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

GlaMixer::GlaMixer(int64_t d_model, const GlaConfig& cfg, uint64_t init_seed)
    : d_model_(d_model), cfg_(cfg) {
  SEQMIX_CHECK(d_model > 0 && cfg.n_heads > 0 && cfg.key_dim > 0 && cfg.value_dim > 0 &&
                   cfg.key_dim % cfg.n_heads == 0 && cfg.value_dim % cfg.n_heads == 0 &&
                   cfg.gate_low_rank_dim > 0 && cfg.gate_logit_normalizer > 0,
               "gla: key_dim {} and value_dim {} must be positive multiples of n_heads {}; "
               "gate_low_rank_dim {} and gate_logit_normalizer {} positive",
               cfg.key_dim, cfg.value_dim, cfg.n_heads, cfg.gate_low_rank_dim,
               cfg.gate_logit_normalizer);
  const auto lin = [&](int64_t in, int64_t out, bool bias, uint64_t key) {
    return std::make_shared<Linear>(in, out, bias, kMixerInitStd, derive_seed(init_seed, key));
  };
  q_proj_ = register_module("q_proj", lin(d_model, cfg.key_dim, false, 0));
  k_proj_ = register_module("k_proj", lin(d_model, cfg.key_dim, false, 1));
  v_proj_ = register_module("v_proj", lin(d_model, cfg.value_dim, false, 2));
  if (cfg.output_gate) g_proj_ = register_module("g_proj", lin(d_model, cfg.value_dim, false, 3));
  gk_proj_a_ = register_module("gk_proj_a", lin(d_model, cfg.gate_low_rank_dim, false, 4));
  gk_proj_b_ = register_module("gk_proj_b", lin(cfg.gate_low_rank_dim, cfg.key_dim, true, 5));
  g_norm_ = register_module("g_norm",
                            std::make_shared<RMSNorm>(cfg.value_dim / cfg.n_heads, cfg.norm_eps));
  o_proj_ = register_module("o_proj", lin(cfg.value_dim, d_model, false, 6));
  mark_init_scaled(q_proj_->weight());
  mark_init_scaled(k_proj_->weight());
  mark_init_scaled(v_proj_->weight());
  if (g_proj_) mark_init_scaled(g_proj_->weight());
  mark_init_scaled(gk_proj_a_->weight());
  mark_init_scaled(gk_proj_b_->weight());
  mark_init_scaled(o_proj_->weight(), /*residual_output=*/true);
}

Variable GlaMixer::log_gate(const Variable& x) const {
  // The rank-r bottleneck runs in the compute dtype; the expansion to H·K and the logsigmoid in
  // fp32, so the decays (products of many exp α) keep full precision.
  const Variable low = cast(gk_proj_a_->forward(x), gate_dtype(x.dtype()));
  const Variable a = logsigmoid(gk_proj_b_->forward(low));
  return split_heads(mul(a, 1.0 / cfg_.gate_logit_normalizer), cfg_.n_heads);
}

Variable GlaMixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "gla: x must be [B, T, {}], got {}", d_model_,
               x.data().shape_str());
  const int64_t h = cfg_.n_heads;
  const Variable q = split_heads(q_proj_->forward(x), h);
  const Variable k = split_heads(k_proj_->forward(x), h);
  const Variable v = split_heads(v_proj_->forward(x), h);
  GlaOptions opt;
  opt.gate = GlaGate::KeyVector;
  const Variable o = gla(q, k, v, log_gate(x), Variable(), Tensor(), opt).first;
  const Variable z = g_proj_ ? g_proj_->forward(x) : Variable();
  return o_proj_->forward(merge_heads(gated_head_norm(o, *g_norm_, z)));
}

namespace {
std::shared_ptr<Mixer> make_gla(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = gla_mixer_entry();
  MixerOptions o("gla", spec, entry.options);
  GlaConfig c;
  c.n_heads = *positive_int(o, "n_heads");
  c.key_dim = expanded_dim(o, "expand_k", d_model, float_in(o, "expand_k", 0, 64), c.n_heads);
  c.value_dim = expanded_dim(o, "expand_v", d_model, float_in(o, "expand_v", 0, 64), c.n_heads);
  c.gate_low_rank_dim = *positive_int(o, "gate_low_rank_dim");
  c.gate_logit_normalizer = float_in(o, "gate_logit_normalizer", 0, 1e6);
  c.output_gate = o.get_bool("output_gate");
  c.norm_eps = float_in(o, "norm_eps", 0, 1);
  return std::make_shared<GlaMixer>(d_model, c, init_seed);
}
}  // namespace

MixerEntry gla_mixer_entry() {
  return MixerEntry{
      "gla",
      "Gated linear attention (GLA): data-dependent per-key-dim decays from a low-rank "
      "logsigmoid gate, per-head RMSNorm and swish output gate; the chunked gated-linear-"
      "attention kernel (KeyVector).",
      {
          {"n_heads", "int", "4", "number of heads H"},
          {"expand_k", "float", "0.5", "key width H·K = expand_k · d_model"},
          {"expand_v", "float", "1", "value width H·V = expand_v · d_model"},
          {"gate_low_rank_dim", "int", "16", "rank r of the gate projection W2 W1"},
          {"gate_logit_normalizer", "float", "16",
           "the log-gate is logsigmoid(W2 W1 x + b) / gate_logit_normalizer"},
          {"output_gate", "bool", "true",
           "multiply the normed output by silu(x Wg) (false: norm only, no g_proj)"},
          {"norm_eps", "float", "1e-5", "epsilon of the per-head RMSNorm"},
      },
      make_gla,
  };
}

}  // namespace seqmix::nn
