// The delta-rule mixers (see deltanet.h): fused q/k/v projection, one short conv + SiLU over the
// q, k, v channels, fp32 β and log-gates, kernels/delta_rule with in-op L2 norm of q and k,
// per-head RMSNorm with the output gate, output projection.
#include "layers/mixers/deltanet.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/short_conv/short_conv.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

namespace {

const char* family_name(DeltaGate g) {
  switch (g) {
    case DeltaGate::None:
      return "deltanet";
    case DeltaGate::HeadScalar:
      return "gated_deltanet";
    case DeltaGate::KeyVector:
      return "kda";
  }
  return "?";
}

}  // namespace

DeltaNetMixer::DeltaNetMixer(int64_t d_model, const DeltaNetConfig& cfg, uint64_t init_seed)
    : d_model_(d_model), cfg_(cfg) {
  const char* name = family_name(cfg.gate);
  const int64_t h = cfg.n_heads, hk = cfg.key_dim, hv = cfg.value_dim;
  SEQMIX_CHECK(d_model > 0 && h > 0 && hk > 0 && hv > 0 && hk % h == 0 && hv % h == 0,
               "{}: key_dim {} and value_dim {} must be positive multiples of n_heads {}", name, hk,
               hv, h);
  SEQMIX_CHECK(cfg.conv_size >= 2 && cfg.conv_size <= 4, "{}: conv_size must be in 2..4, got {}",
               name, cfg.conv_size);
  const bool kda = cfg.gate == DeltaGate::KeyVector;
  SEQMIX_CHECK(!kda || cfg.gate_low_rank_dim > 0, "{}: gate_low_rank_dim must be positive, got {}",
               name, cfg.gate_low_rank_dim);
  SEQMIX_CHECK(cfg.a_init_min >= 0 && cfg.a_init_max >= cfg.a_init_min && cfg.a_init_max > 0,
               "{}: need 0 <= a_init_min <= a_init_max, a_init_max > 0; got {} and {}", name,
               cfg.a_init_min, cfg.a_init_max);
  const int64_t v = hv / h, r = cfg.gate_low_rank_dim, conv_dim = 2 * hk + hv;
  const auto lin = [&](int64_t in, int64_t out, bool bias, uint64_t key) {
    return std::make_shared<Linear>(in, out, bias, kMixerInitStd, derive_seed(init_seed, key));
  };
  qkv_proj_ = register_module("qkv_proj", lin(d_model, conv_dim, false, 0));
  // Depthwise conv: PyTorch's default Conv1d init U(-1/sqrt(W), 1/sqrt(W)) (fan_in = W), as fla's
  // ShortConvolution. Not weight-decayed (as in mamba2 here).
  const double cb = 1.0 / std::sqrt(double(cfg.conv_size));
  conv_weight_ = register_parameter(
      "conv_weight", init_uniform({conv_dim, cfg.conv_size}, -cb, cb, derive_seed(init_seed, 1)),
      false);
  if (cfg.conv_bias)
    conv_bias_ = register_parameter(
        "conv_bias", init_uniform({conv_dim}, -cb, cb, derive_seed(init_seed, 2)), false);
  b_proj_ = register_module("b_proj", lin(d_model, h, false, 3));
  if (cfg.gate != DeltaGate::None) {
    // A = exp(A_log) ~ U[a_init_min, a_init_max] per head: decay rates spread over the heads.
    const Tensor u = init_uniform({h}, cfg.a_init_min, cfg.a_init_max, derive_seed(init_seed, 5));
    std::vector<float> a;
    for (float x : u.to_vector<float>()) a.push_back(float(std::log(std::max(double(x), kMinA))));
    a_log_ = register_parameter("A_log", Tensor::from_vector(a, {h}, DType::F32), false);
  }
  if (cfg.gate == DeltaGate::HeadScalar) {
    a_proj_ = register_module("a_proj", lin(d_model, h, false, 4));
    // dt_bias = softplus⁻¹(Δ0), Δ0 log-uniform in [dt_min, dt_max] floored at dt_init_floor
    // (Mamba-2's Δ init, as fla's GatedDeltaNet).
    const Tensor u = init_uniform({h}, 0.0, 1.0, derive_seed(init_seed, 6));
    const auto uv = u.to_vector<float>();
    const double lmin = std::log(cfg.dt_min), lmax = std::log(cfg.dt_max);
    std::vector<float> b(static_cast<size_t>(h));
    for (int64_t i = 0; i < h; ++i) {
      const double dt =
          std::max(std::exp(double(uv[size_t(i)]) * (lmax - lmin) + lmin), cfg.dt_init_floor);
      b[size_t(i)] = float(dt + std::log(-std::expm1(-dt)));
    }
    dt_bias_ = register_parameter("dt_bias", Tensor::from_vector(b, {h}, DType::F32), false);
  } else if (kda) {
    // Low-rank per-channel decay projection W_f↑ W_f↓ (fla's f_proj.0/1, no bias: dt_bias is the
    // per-channel bias inside the softplus, starting at 0).
    f_proj_a_ = register_module("f_proj_a", lin(d_model, r, false, 7));
    f_proj_b_ = register_module("f_proj_b", lin(r, hk, false, 8));
    dt_bias_ = register_parameter("dt_bias", Tensor::zeros({hk}, DType::F32), false);
  }
  if (kda) {
    g_proj_a_ = register_module("g_proj_a", lin(d_model, r, false, 10));
    g_proj_b_ = register_module("g_proj_b", lin(r, hv, true, 11));
  } else if (cfg.output_gate) {
    g_proj_ = register_module("g_proj", lin(d_model, hv, false, 9));
  }
  o_norm_ = register_module("o_norm", std::make_shared<RMSNorm>(v, cfg.norm_eps));
  o_proj_ = register_module("o_proj", lin(hv, d_model, false, 12));
  for (const auto& l :
       {qkv_proj_, b_proj_, a_proj_, f_proj_a_, f_proj_b_, g_proj_, g_proj_a_, g_proj_b_})
    if (l) mark_init_scaled(l->weight());
  mark_init_scaled(o_proj_->weight(), /*residual_output=*/true);
}

Variable DeltaNetMixer::beta(const Variable& x) const {
  const Variable b = sigmoid(cast(b_proj_->forward(x), gate_dtype(x.dtype())));
  return cfg_.allow_neg_eigval ? mul(b, 2.0) : b;
}

Variable DeltaNetMixer::log_gate(const Variable& x) const {
  if (cfg_.gate == DeltaGate::None) return Variable();
  const DType gdt = gate_dtype(x.dtype());
  const Variable a = neg(exp(cast(a_log_, gdt)));  // −A: [H]
  if (cfg_.gate == DeltaGate::HeadScalar) {
    // g = −A_h · softplus(W_a x + dt_bias): [B, T, H], fp32 from the projection on.
    const Variable dt = softplus(add(cast(a_proj_->forward(x), gdt), cast(dt_bias_, gdt)));
    return mul(dt, a);
  }
  // KDA: the rank-r bottleneck runs in the compute dtype; the expansion to H·K, the bias and the
  // softplus in fp32 (as gla's gate), so the decays keep full precision.
  const Variable low = cast(f_proj_a_->forward(x), gdt);
  const Variable f = softplus(add(f_proj_b_->forward(low), cast(dt_bias_, gdt)));  // [B, T, H·K]
  return mul(split_heads(f, cfg_.n_heads), unsqueeze(a, 1));                       // [B, T, H, K]
}

Variable DeltaNetMixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "{}: x must be [B, T, {}], got {}",
               family_name(cfg_.gate), d_model_, x.data().shape_str());
  const int64_t h = cfg_.n_heads, hk = cfg_.key_dim, hv = cfg_.value_dim;
  const Variable qkv =
      short_conv(qkv_proj_->forward(x), conv_weight_, conv_bias_, Variable(), Tensor(),
                 /*silu=*/true)
          .first;                                                  // [B, T, 2·H·K + H·V]
  const std::vector<Variable> qkvs = split(qkv, 2, {hk, hk, hv});  // one node, one gradient write
  const auto heads = [&](const Variable& piece) { return split_heads(contiguous(piece), h); };
  const Variable q = heads(qkvs[0]), k = heads(qkvs[1]), v = heads(qkvs[2]);
  DeltaOptions opt;
  opt.gate = cfg_.gate;
  opt.l2norm_qk = true;  // scale 0: 1/sqrt(K)
  const Variable o =
      delta_rule(q, k, v, beta(x), log_gate(x), Variable(), Tensor(), opt).first;  // [B,T,H,V]
  Variable y;
  if (cfg_.gate == DeltaGate::KeyVector) {
    // Kimi Linear's output gate: sigmoid of a low-rank projection with bias.
    const Variable z = g_proj_b_->forward(g_proj_a_->forward(x));
    y = mul(o_norm_->forward(contiguous(o)), sigmoid(reshape(z, o.shape())));
  } else {
    y = gated_head_norm(o, *o_norm_, g_proj_ ? g_proj_->forward(x) : Variable());
  }
  return o_proj_->forward(merge_heads(y));
}

namespace {

std::vector<MixerOptionDoc> common_options(const char* n_heads, const char* expand_k,
                                           const char* expand_v) {
  return {
      {"n_heads", "int", n_heads, "number of heads H"},
      {"expand_k", "float", expand_k, "key width H·K = expand_k · d_model"},
      {"expand_v", "float", expand_v, "value width H·V = expand_v · d_model"},
      {"conv_size", "int", "4", "width of the short causal conv on q, k, v (2..4)"},
      {"conv_bias", "bool", "false", "bias in the short conv"},
      {"allow_neg_eigval", "bool", "false",
       "β = 2σ(W_β x) ∈ (0, 2) instead of σ(W_β x) ∈ (0, 1): the transition I − β k kᵀ can have "
       "negative eigenvalues (state tracking)"},
      {"norm_eps", "float", "1e-5", "epsilon of the per-head output RMSNorm"},
  };
}

// The options every delta-rule mixer shares.
DeltaNetConfig parse_common(const MixerOptions& o, int64_t d_model, DeltaGate gate) {
  DeltaNetConfig c;
  c.gate = gate;
  c.n_heads = *positive_int(o, "n_heads");
  c.key_dim = expanded_dim(o, "expand_k", d_model, float_in(o, "expand_k", 0, 64), c.n_heads);
  c.value_dim = expanded_dim(o, "expand_v", d_model, float_in(o, "expand_v", 0, 64), c.n_heads);
  c.conv_size = *positive_int(o, "conv_size");
  if (c.conv_size < 2 || c.conv_size > 4)
    o.fail("conv_size",
           fmt::format("must be in 2..4 (the short conv kernel), got {}", c.conv_size));
  c.conv_bias = o.get_bool("conv_bias");
  c.allow_neg_eigval = o.get_bool("allow_neg_eigval");
  c.norm_eps = float_in(o, "norm_eps", 0, 1);
  return c;
}

void parse_a_init(const MixerOptions& o, DeltaNetConfig& c) {
  c.a_init_min = float_in(o, "a_init_min", 0, 1e6, /*closed_lo=*/true);
  c.a_init_max = float_in(o, "a_init_max", 0, 1e6);
  if (c.a_init_max < c.a_init_min)
    o.fail("a_init_max",
           fmt::format("must be >= a_init_min = {}, got {}", c.a_init_min, c.a_init_max));
}

std::shared_ptr<Mixer> make_deltanet(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = deltanet_mixer_entry();
  MixerOptions o("deltanet", spec, entry.options);
  DeltaNetConfig c = parse_common(o, d_model, DeltaGate::None);
  c.output_gate = o.get_bool("output_gate");
  return std::make_shared<DeltaNetMixer>(d_model, c, init_seed);
}

std::shared_ptr<Mixer> make_gated_deltanet(int64_t d_model, const MixerSpec& spec,
                                           uint64_t init_seed) {
  static const MixerEntry entry = gated_deltanet_mixer_entry();
  MixerOptions o("gated_deltanet", spec, entry.options);
  DeltaNetConfig c = parse_common(o, d_model, DeltaGate::HeadScalar);
  c.output_gate = o.get_bool("output_gate");
  c.dt_min = float_in(o, "dt_min", 0, 1e3);
  c.dt_max = float_in(o, "dt_max", 0, 1e3);
  if (c.dt_max < c.dt_min)
    o.fail("dt_max", fmt::format("must be >= dt_min = {}, got {}", c.dt_min, c.dt_max));
  c.dt_init_floor = float_in(o, "dt_init_floor", 0, 1e3);
  parse_a_init(o, c);
  return std::make_shared<DeltaNetMixer>(d_model, c, init_seed);
}

std::shared_ptr<Mixer> make_kda(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = kda_mixer_entry();
  MixerOptions o("kda", spec, entry.options);
  DeltaNetConfig c = parse_common(o, d_model, DeltaGate::KeyVector);
  c.gate_low_rank_dim = positive_int(o, "gate_low_rank_dim").value_or(c.value_dim / c.n_heads);
  parse_a_init(o, c);
  return std::make_shared<DeltaNetMixer>(d_model, c, init_seed);
}

}  // namespace

MixerEntry deltanet_mixer_entry() {
  std::vector<MixerOptionDoc> opts = common_options("4", "1", "1");
  opts.push_back({"output_gate", "bool", "false",
                  "multiply the normed output by silu(x Wg) (adds g_proj; fla's use_gate)"});
  return MixerEntry{
      "deltanet",
      "DeltaNet: linear attention with the delta rule S_t = (I − β_t k_t k_tᵀ) S_{t-1} + "
      "β_t k_t v_tᵀ, short conv + SiLU and L2-normalised q, k, per-head RMSNorm; the chunked "
      "delta-rule kernel (no gate).",
      std::move(opts),
      make_deltanet,
  };
}

MixerEntry gated_deltanet_mixer_entry() {
  std::vector<MixerOptionDoc> opts = common_options("6", "0.75", "1.5");
  opts.push_back({"output_gate", "bool", "true",
                  "multiply the normed output by silu(x Wg) (false: norm only, no g_proj)"});
  opts.push_back({"dt_min", "float", "0.001",
                  "dt_bias init: softplus(dt_bias) log-uniform in "
                  "[dt_min, dt_max]"});
  opts.push_back({"dt_max", "float", "0.1",
                  "dt_bias init: softplus(dt_bias) log-uniform in "
                  "[dt_min, dt_max]"});
  opts.push_back({"dt_init_floor", "float", "0.0001", "dt_bias init: lower clamp of the Δ draw"});
  opts.push_back({"a_init_min", "float", "0",
                  "A init: A_log = log U[a_init_min, a_init_max] (A floored at 1e-4)"});
  opts.push_back({"a_init_max", "float", "16", "A init: A_log = log U[a_init_min, a_init_max]"});
  return MixerEntry{
      "gated_deltanet",
      "Gated DeltaNet: the delta rule with a data-dependent scalar decay per head "
      "(Mamba-2's α_t = exp(−exp(A_log) softplus(W_a x + dt_bias))), short conv + SiLU, "
      "L2-normalised q, k, gated per-head RMSNorm; the chunked delta-rule kernel (HeadScalar).",
      std::move(opts),
      make_gated_deltanet,
  };
}

MixerEntry kda_mixer_entry() {
  std::vector<MixerOptionDoc> opts = common_options("16", "1", "1");
  opts.push_back({"gate_low_rank_dim", "int", "auto",
                  "rank r of the decay projection W_f↑ W_f↓ and of the output gate W_g↑ W_g↓; "
                  "auto = V (the head value dim, as Kimi Linear)"});
  opts.push_back({"a_init_min", "float", "1", "A init: A_log = log U[a_init_min, a_init_max]"});
  opts.push_back({"a_init_max", "float", "16", "A init: A_log = log U[a_init_min, a_init_max]"});
  return MixerEntry{
      "kda",
      "Kimi Delta Attention (Kimi Linear): Gated DeltaNet with a per-key-dim decay from a "
      "low-rank projection, short conv + SiLU, L2-normalised q, k, per-head RMSNorm with a "
      "low-rank sigmoid output gate; the chunked delta-rule kernel (KeyVector).",
      std::move(opts),
      make_kda,
  };
}

}  // namespace seqmix::nn
