// Multi-scale retention mixer (see retnet.h): projections, rotary, kernels/gla with fixed per-head
// decays (HeadConst), per-head RMSNorm with swish output gate, output projection.
#include "layers/mixers/retnet.h"

#include <cmath>

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/gla/gla.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

RetNetMixer::RetNetMixer(int64_t d_model, const RetNetConfig& cfg, uint64_t init_seed)
    : d_model_(d_model), cfg_(cfg) {
  SEQMIX_CHECK(d_model > 0 && cfg.n_heads > 0 && cfg.key_dim > 0 && cfg.value_dim > 0 &&
                   cfg.key_dim % cfg.n_heads == 0 && cfg.value_dim % cfg.n_heads == 0,
               "retnet: key_dim {} and value_dim {} must be positive multiples of n_heads {}",
               cfg.key_dim, cfg.value_dim, cfg.n_heads);
  const auto lin = [&](int64_t in, int64_t out, uint64_t key) {
    return std::make_shared<Linear>(in, out, false, kMixerInitStd, derive_seed(init_seed, key));
  };
  q_proj_ = register_module("q_proj", lin(d_model, cfg.key_dim, 0));
  k_proj_ = register_module("k_proj", lin(d_model, cfg.key_dim, 1));
  v_proj_ = register_module("v_proj", lin(d_model, cfg.value_dim, 2));
  g_proj_ = register_module("g_proj", lin(d_model, cfg.value_dim, 3));
  g_norm_ = register_module("g_norm",
                            std::make_shared<RMSNorm>(cfg.value_dim / cfg.n_heads, cfg.norm_eps));
  o_proj_ = register_module("o_proj", lin(cfg.value_dim, d_model, 4));
  mark_init_scaled(q_proj_->weight());
  mark_init_scaled(k_proj_->weight());
  mark_init_scaled(v_proj_->weight());
  mark_init_scaled(g_proj_->weight());
  mark_init_scaled(o_proj_->weight(), /*residual_output=*/true);
  // γ_h = 1 - 2^(-5-h): head 0 remembers ~32 steps, each further head twice as long.
  for (int64_t h = 0; h < cfg.n_heads; ++h)
    log_gamma_.push_back(std::log1p(-std::exp2(-5.0 - double(h))));
  if (cfg.rotary) rope_ = std::make_unique<Rotary>(cfg.key_dim / cfg.n_heads, cfg.rope_theta);
}

Tensor RetNetMixer::decay_tensor(Device d, DType dt) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto key = std::make_tuple(int(d.type), int(d.index), int(dt));
  auto it = decay_cache_.find(key);
  if (it != decay_cache_.end()) return it->second;
  Tensor t = Tensor::from_vector(log_gamma_, {cfg_.n_heads}, dt, Device::cpu()).to(d);
  decay_cache_.emplace(key, t);
  return t;
}

Variable RetNetMixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "retnet: x must be [B, T, {}], got {}",
               d_model_, x.data().shape_str());
  const int64_t h = cfg_.n_heads;
  Variable q = split_heads(q_proj_->forward(x), h);
  Variable k = split_heads(k_proj_->forward(x), h);
  const Variable v = split_heads(v_proj_->forward(x), h);
  if (rope_) {
    q = contiguous(rope_->apply(q));
    k = contiguous(rope_->apply(k));
  }
  GlaOptions opt;
  opt.gate = GlaGate::HeadConst;
  const Variable g(decay_tensor(x.device(), gate_dtype(x.dtype())));
  const Variable o = gla(q, k, v, g, Variable(), Tensor(), opt).first;
  return o_proj_->forward(merge_heads(gated_head_norm(o, *g_norm_, g_proj_->forward(x))));
}

namespace {
std::shared_ptr<Mixer> make_retnet(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = retnet_mixer_entry();
  MixerOptions o("retnet", spec, entry.options);
  RetNetConfig c;
  c.n_heads = *positive_int(o, "n_heads");
  if (c.n_heads > 40)
    o.fail("n_heads", fmt::format("must be at most 40 (γ_h = 1 - 2^(-5-h) rounds to 1 in fp32 "
                                  "beyond), got {}",
                                  c.n_heads));
  c.key_dim = expanded_dim(o, "expand_k", d_model, float_in(o, "expand_k", 0, 64), c.n_heads);
  c.value_dim = expanded_dim(o, "expand_v", d_model, float_in(o, "expand_v", 0, 64), c.n_heads);
  c.rotary = o.get_bool("rotary");
  c.rope_theta = float_in(o, "rope_theta", 0, 1e12);
  if (c.rotary && (c.key_dim / c.n_heads) % 2 != 0)
    o.fail("expand_k", fmt::format("gives head key dim {}, which must be even with rotary",
                                   c.key_dim / c.n_heads));
  c.norm_eps = float_in(o, "norm_eps", 0, 1);
  return std::make_shared<RetNetMixer>(d_model, c, init_seed);
}
}  // namespace

MixerEntry retnet_mixer_entry() {
  return MixerEntry{
      "retnet",
      "Multi-scale retention (RetNet): fixed per-head decays 1 - 2^(-5-h), rotary q/k, per-head "
      "RMSNorm and swish output gate; the chunked gated-linear-attention kernel (HeadConst).",
      {
          {"n_heads", "int", "8", "number of heads H (head h decays with γ_h = 1 - 2^(-5-h))"},
          {"expand_k", "float", "1", "key width H·K = expand_k · d_model"},
          {"expand_v", "float", "2", "value width H·V = expand_v · d_model"},
          {"rotary", "bool", "true", "rotary position embeddings on q and k (for xPos)"},
          {"rope_theta", "float", "10000", "rotary base theta"},
          {"norm_eps", "float", "1e-5", "epsilon of the per-head RMSNorm"},
      },
      make_retnet,
  };
}

}  // namespace seqmix::nn
