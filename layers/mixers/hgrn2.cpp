// HGRN2 mixer (see hgrn2.h): projections, fp32 forget gate with lower bound and tied input gate,
// kernels/gla with per-key-dim gates (KeyVector), RMSNorm over the model width, output projection.
#include "layers/mixers/hgrn2.h"

#include <algorithm>

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/gla/gla.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

Hgrn2Mixer::Hgrn2Mixer(int64_t d_model, const Hgrn2Config& cfg, uint64_t init_seed)
    : d_model_(d_model), cfg_(cfg) {
  SEQMIX_CHECK(d_model > 0 && cfg.expand_ratio > 0 && d_model % cfg.expand_ratio == 0,
               "hgrn2: expand_ratio {} must divide d_model {}", cfg.expand_ratio, d_model);
  SEQMIX_CHECK(cfg.lower_bound >= 0 && cfg.lower_bound < 1,
               "hgrn2: lower_bound must be in [0, 1), got {}", cfg.lower_bound);
  const auto lin = [&](uint64_t key) {
    return std::make_shared<Linear>(d_model, d_model, false, kMixerInitStd,
                                    derive_seed(init_seed, key));
  };
  q_proj_ = register_module("q_proj", lin(0));
  f_proj_ = register_module("f_proj", lin(1));
  i_proj_ = register_module("i_proj", lin(2));
  g_norm_ = register_module("g_norm", std::make_shared<RMSNorm>(d_model, cfg.norm_eps));
  o_proj_ = register_module("o_proj", lin(3));
  mark_init_scaled(q_proj_->weight());
  mark_init_scaled(f_proj_->weight());
  mark_init_scaled(i_proj_->weight());
  mark_init_scaled(o_proj_->weight(), /*residual_output=*/true);
}

Variable Hgrn2Mixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "hgrn2: x must be [B, T, {}], got {}",
               d_model_, x.data().shape_str());
  const int64_t h = n_heads();
  const DType cdt = x.dtype(), gdt = gate_dtype(cdt);
  const double lb = cfg_.lower_bound;
  const Variable q = split_heads(silu(q_proj_->forward(x)), h);
  const Variable f = cast(f_proj_->forward(x), gdt);
  // log λ and 1 - λ in fp32, each from its own stable form (no 1 - exp(g) cancellation).
  Variable g, k;
  if (lb == 0.0) {
    g = logsigmoid(f);
    k = sigmoid(neg(f));
  } else {
    g = log(add(mul(sigmoid(f), 1.0 - lb), lb));
    k = mul(sigmoid(neg(f)), 1.0 - lb);
  }
  const Variable i = split_heads(i_proj_->forward(x), h);
  GlaOptions opt;
  opt.gate = GlaGate::KeyVector;
  const Variable o =
      gla(q, split_heads(cast(k, cdt), h), i, split_heads(g, h), Variable(), Tensor(), opt).first;
  return o_proj_->forward(g_norm_->forward(merge_heads(o)));
}

namespace {
std::shared_ptr<Mixer> make_hgrn2(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = hgrn2_mixer_entry();
  MixerOptions o("hgrn2", spec, entry.options);
  Hgrn2Config c;
  c.expand_ratio = positive_int(o, "expand_ratio").value_or(std::min<int64_t>(128, d_model));
  if (d_model % c.expand_ratio != 0)
    o.fail("expand_ratio",
           fmt::format("must divide d_model = {} (heads = d_model / expand_ratio), got {}", d_model,
                       c.expand_ratio));
  c.lower_bound = float_in(o, "lower_bound", 0, 1, /*closed_lo=*/true);
  if (c.lower_bound >= 1) o.fail("lower_bound", "must be < 1 (a forget gate of 1 never forgets)");
  c.norm_eps = float_in(o, "norm_eps", 0, 1);
  return std::make_shared<Hgrn2Mixer>(d_model, c, init_seed);
}
}  // namespace

MixerEntry hgrn2_mixer_entry() {
  return MixerEntry{
      "hgrn2",
      "HGRN2: gated linear RNN with state expansion; per-key-dim forget gate with a lower bound "
      "and the input gate tied to 1 - forget; the chunked gated-linear-attention kernel "
      "(KeyVector).",
      {
          {"expand_ratio", "int", "auto",
           "state expansion E (head dim; heads = d_model / E); auto = 128, or d_model when "
           "smaller"},
          {"lower_bound", "float", "0", "lower bound β of the forget gate, in [0, 1)"},
          {"norm_eps", "float", "1e-5", "epsilon of the output RMSNorm"},
      },
      make_hgrn2,
  };
}

}  // namespace seqmix::nn
