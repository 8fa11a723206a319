// Softmax attention mixer (see attention.h): projections, rotary, fused attention, output.
#include "layers/mixers/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/attention/attention.h"
#include "kernels/softmax/softmax.h"
#include "layers/init.h"

namespace seqmix::nn {

AttentionMixer::AttentionMixer(int64_t d_model, const AttentionConfig& cfg, uint64_t init_seed)
    : d_model_(d_model), cfg_(cfg) {
  SEQMIX_CHECK(d_model > 0, "attention: d_model must be positive, got {}", d_model);
  SEQMIX_CHECK(cfg.n_heads > 0 && cfg.n_kv_heads > 0 && cfg.n_heads % cfg.n_kv_heads == 0,
               "attention: n_heads ({}) must be a positive multiple of n_kv_heads ({})",
               cfg.n_heads, cfg.n_kv_heads);
  SEQMIX_CHECK(cfg.head_dim > 0, "attention: head_dim must be positive, got {}", cfg.head_dim);
  SEQMIX_CHECK(cfg.window >= 0, "attention: window must be >= 0, got {}", cfg.window);
  const int64_t hd = cfg.n_heads * cfg.head_dim, kvd = cfg.n_kv_heads * cfg.head_dim;
  q_proj_ =
      register_module("q_proj", std::make_shared<Linear>(d_model, hd, cfg.qkv_bias, kMixerInitStd,
                                                         derive_seed(init_seed, 0)));
  k_proj_ =
      register_module("k_proj", std::make_shared<Linear>(d_model, kvd, cfg.qkv_bias, kMixerInitStd,
                                                         derive_seed(init_seed, 1)));
  v_proj_ =
      register_module("v_proj", std::make_shared<Linear>(d_model, kvd, cfg.qkv_bias, kMixerInitStd,
                                                         derive_seed(init_seed, 2)));
  o_proj_ = register_module("o_proj", std::make_shared<Linear>(hd, d_model, false, kMixerInitStd,
                                                               derive_seed(init_seed, 3)));
  mark_init_scaled(q_proj_->weight());
  mark_init_scaled(k_proj_->weight());
  mark_init_scaled(v_proj_->weight());
  mark_init_scaled(o_proj_->weight(), /*residual_output=*/true);
  if (cfg.rotary) rope_ = std::make_unique<Rotary>(cfg.head_dim, cfg.rope_theta);
}

Variable AttentionMixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "attention: x must be [B, T, {}], got {}",
               d_model_, x.data().shape_str());
  const int64_t b = x.size(0), t = x.size(1), d = cfg_.head_dim;
  Variable q = reshape(q_proj_->forward(x), {b, t, cfg_.n_heads, d});
  Variable k = reshape(k_proj_->forward(x), {b, t, cfg_.n_kv_heads, d});
  Variable v = reshape(v_proj_->forward(x), {b, t, cfg_.n_kv_heads, d});
  if (rope_) {
    q = rope_->apply(q);
    k = rope_->apply(k);
  }
  AttentionOptions opt;
  opt.causal = true;
  opt.window = cfg_.window;
  const Variable o = attention(contiguous(q), contiguous(k), contiguous(v), opt);
  return o_proj_->forward(reshape(o, {b, t, cfg_.n_heads * d}));
}

Variable attention_decomposed(const Variable& q, const Variable& k, const Variable& v, double scale,
                              int64_t window) {
  SEQMIX_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.shape() == v.shape() &&
                   q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
                   k.size(2) > 0 && q.size(2) % k.size(2) == 0,
               "attention: q [B, T, H, D], k and v [B, T, Hkv, D] with H % Hkv == 0 expected, "
               "got q {}, k {}, v {}",
               q.data().shape_str(), k.data().shape_str(), v.data().shape_str());
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), hkv = k.size(2), d = q.size(3);
  const int64_t g = h / hkv;
  if (scale == 0.0) scale = 1.0 / std::sqrt(double(d));
  // [B, T, Hkv, D] -> [B, H, T, D] with query head h reading kv head h / G.
  auto heads = [&](const Variable& z) {
    Variable zz = permute(z, {0, 2, 1, 3});  // [B, Hkv, T, D]
    if (g == 1) return zz;
    return reshape(expand(unsqueeze(zz, 2), {b, hkv, g, t, d}), {b, h, t, d});
  };
  const Variable qh = permute(q, {0, 2, 1, 3});
  const Variable kh = heads(k), vh = heads(v);
  Variable s = mul(matmul(qh, transpose(kh, -1, -2)), scale);  // [B, H, T, T]
  std::vector<double> mask(size_t(t * t));
  const double ninf = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < t; ++j)
      mask[size_t(i * t + j)] = (j <= i && (window == 0 || i - j < window)) ? 0.0 : ninf;
  s = add(s, Variable(Tensor::from_vector(mask, {t, t}, s.dtype(), s.device())));
  const Variable o = matmul(softmax(s, -1), vh);  // [B, H, T, D]
  return contiguous(permute(o, {0, 2, 1, 3}));
}

namespace {
std::shared_ptr<Mixer> make_attention(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = attention_mixer_entry();
  MixerOptions o("attention", spec, entry.options);
  AttentionConfig c;
  c.n_heads = *o.get_int("n_heads");
  if (c.n_heads <= 0) o.fail("n_heads", fmt::format("must be positive, got {}", c.n_heads));
  c.n_kv_heads = o.get_int("n_kv_heads").value_or(c.n_heads);
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0)
    o.fail("n_kv_heads", fmt::format("must be positive and divide n_heads = {}, got {}", c.n_heads,
                                     c.n_kv_heads));
  if (auto hd = o.get_int("head_dim")) {
    c.head_dim = *hd;
    if (c.head_dim <= 0) o.fail("head_dim", fmt::format("must be positive, got {}", c.head_dim));
  } else {
    if (d_model % c.n_heads != 0)
      o.fail("n_heads", fmt::format("must divide d_model = {} when head_dim is auto, got {}",
                                    d_model, c.n_heads));
    c.head_dim = d_model / c.n_heads;
  }
  c.window = *o.get_int("window");
  if (c.window < 0) o.fail("window", fmt::format("must be >= 0, got {}", c.window));
  c.rotary = o.get_bool("rotary");
  c.rope_theta = *o.get_float("rope_theta");
  if (c.rope_theta <= 0)
    o.fail("rope_theta", fmt::format("must be positive, got {}", c.rope_theta));
  if (c.rotary && c.head_dim % 2 != 0)
    o.fail("head_dim", fmt::format("must be even with rotary embeddings, got {}", c.head_dim));
  c.qkv_bias = o.get_bool("qkv_bias");
  return std::make_shared<AttentionMixer>(d_model, c, init_seed);
}
}  // namespace

MixerEntry attention_mixer_entry() {
  return MixerEntry{
      "attention",
      "Causal softmax attention (multi-head or grouped-query), optional sliding window and "
      "rotary position embedding; the fused FlashAttention-style kernel on the training path.",
      {
          {"n_heads", "int", "4", "number of query heads H"},
          {"n_kv_heads", "int", "auto",
           "number of key/value heads (grouped-query attention); must divide n_heads; auto = "
           "n_heads"},
          {"head_dim", "int", "auto", "dimension D of each head; auto = d_model / n_heads"},
          {"window", "int", "0",
           "sliding window: position t attends to t-window+1 .. t; 0 = the whole prefix"},
          {"rotary", "bool", "true", "apply rotary position embeddings (rotate-half) to q and k"},
          {"rope_theta", "float", "10000", "rotary base theta"},
          {"qkv_bias", "bool", "false", "add biases to the q, k, v projections"},
      },
      make_attention,
  };
}

}  // namespace seqmix::nn
