// Linear attention mixer (see linear_attn.h): projections, feature map, kernels/gla with no gate,
// optional denominator normalisation and per-head output norm, output projection.
#include "layers/mixers/linear_attn.h"

#include <cmath>

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/gla/gla.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

LinearAttnMixer::LinearAttnMixer(int64_t d_model, const LinearAttnConfig& cfg, uint64_t init_seed)
    : d_model_(d_model), cfg_(cfg) {
  SEQMIX_CHECK(d_model > 0 && cfg.n_heads > 0 && cfg.key_dim % cfg.n_heads == 0 &&
                   cfg.value_dim % cfg.n_heads == 0 && cfg.key_dim > 0 && cfg.value_dim > 0,
               "linear_attn: key_dim {} and value_dim {} must be positive multiples of n_heads {}",
               cfg.key_dim, cfg.value_dim, cfg.n_heads);
  const auto lin = [&](int64_t in, int64_t out, uint64_t key) {
    return std::make_shared<Linear>(in, out, false, kMixerInitStd, derive_seed(init_seed, key));
  };
  q_proj_ = register_module("q_proj", lin(d_model, cfg.key_dim, 0));
  k_proj_ = register_module("k_proj", lin(d_model, cfg.key_dim, 1));
  v_proj_ = register_module("v_proj", lin(d_model, cfg.value_dim, 2));
  if (cfg.output_norm)
    o_norm_ = register_module("o_norm",
                              std::make_shared<RMSNorm>(cfg.value_dim / cfg.n_heads, cfg.norm_eps));
  o_proj_ = register_module("o_proj", lin(cfg.value_dim, d_model, 3));
  mark_init_scaled(q_proj_->weight());
  mark_init_scaled(k_proj_->weight());
  mark_init_scaled(v_proj_->weight());
  mark_init_scaled(o_proj_->weight(), /*residual_output=*/true);
}

Variable LinearAttnMixer::feature_map(const Variable& x) const {
  if (cfg_.feature_map == "relu") return relu(x);
  // elu(x) + 1 = relu(x) + exp(min(x, 0)) = relu(x) + exp(-relu(-x)): positive, smooth at 0.
  if (cfg_.feature_map == "elu1") return add(relu(x), exp(neg(relu(neg(x)))));
  return x;
}

Variable LinearAttnMixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "linear_attn: x must be [B, T, {}], got {}",
               d_model_, x.data().shape_str());
  const int64_t h = cfg_.n_heads;
  const Variable q = split_heads(feature_map(q_proj_->forward(x)), h);
  const Variable k = split_heads(feature_map(k_proj_->forward(x)), h);
  const Variable v = split_heads(v_proj_->forward(x), h);
  GlaOptions opt;
  opt.gate = GlaGate::None;
  Variable o = gla(q, k, v, Variable(), Variable(), Tensor(), opt).first;
  if (cfg_.normalize) {
    // Denominator s · q_t · z_t with z_t = Σ_{u≤t} k_u: the same recurrence with v = 1 (V = 1).
    const Variable ones(Tensor::ones({x.size(0), x.size(1), h, 1}, x.dtype(), x.device()));
    const Variable den = gla(q, k, ones, Variable(), Variable(), Tensor(), opt).first;
    o = div(o, add(den, cfg_.norm_eps));
  }
  if (o_norm_) o = o_norm_->forward(o);
  return o_proj_->forward(merge_heads(o));
}

namespace {
std::shared_ptr<Mixer> make_linear_attn(int64_t d_model, const MixerSpec& spec,
                                        uint64_t init_seed) {
  static const MixerEntry entry = linear_attn_mixer_entry();
  MixerOptions o("linear_attn", spec, entry.options);
  LinearAttnConfig c;
  c.n_heads = *positive_int(o, "n_heads");
  c.key_dim = expanded_dim(o, "expand_k", d_model, float_in(o, "expand_k", 0, 64), c.n_heads);
  c.value_dim = expanded_dim(o, "expand_v", d_model, float_in(o, "expand_v", 0, 64), c.n_heads);
  c.feature_map = o.get_string("feature_map");
  if (c.feature_map != "identity" && c.feature_map != "elu1" && c.feature_map != "relu")
    o.fail("feature_map", fmt::format("must be identity, elu1 or relu, got '{}'", c.feature_map));
  c.normalize = o.get_bool("normalize");
  if (c.normalize && c.feature_map == "identity")
    o.fail("normalize",
           "needs a positive feature_map (elu1 or relu): with identity the "
           "denominator q·Σk can vanish or change sign");
  c.output_norm = o.get_bool("output_norm");
  c.norm_eps = float_in(o, "norm_eps", 0, 1);
  return std::make_shared<LinearAttnMixer>(d_model, c, init_seed);
}
}  // namespace

MixerEntry linear_attn_mixer_entry() {
  return MixerEntry{
      "linear_attn",
      "Causal linear attention (Katharopoulos et al. 2020): feature-mapped q, k and a running "
      "k^T v state without decay; the chunked gated-linear-attention kernel with no gate.",
      {
          {"n_heads", "int", "8", "number of heads H"},
          {"expand_k", "float", "1", "key width H·K = expand_k · d_model"},
          {"expand_v", "float", "1", "value width H·V = expand_v · d_model"},
          {"feature_map", "string", "identity",
           "feature map φ on q and k: identity, elu1 (elu(x) + 1) or relu"},
          {"normalize", "bool", "false",
           "divide by the running denominator s·q_t·Σk + norm_eps (needs elu1 or relu)"},
          {"output_norm", "bool", "false", "RMSNorm of each head's output (weight [V])"},
          {"norm_eps", "float", "1e-5", "epsilon of the denominator and of the output norm"},
      },
      make_linear_attn,
  };
}

}  // namespace seqmix::nn
