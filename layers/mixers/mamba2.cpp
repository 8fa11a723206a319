// Mamba-2 mixer (see mamba2.h): in_proj, short conv + SiLU on (x, B, C), fp32 Δ and decay,
// kernels/gla (HeadScalar, scale 1) as the SSD scan, D skip, gated RMSNorm, out_proj.
#include "layers/mixers/mamba2.h"

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "core/check.h"
#include "kernels/gla/gla.h"
#include "kernels/short_conv/short_conv.h"
#include "layers/init.h"
#include "layers/mixers/linear_rnn_util.h"

namespace seqmix::nn {

Mamba2Mixer::Mamba2Mixer(int64_t d_model, const Mamba2Config& cfg, uint64_t init_seed)
    : d_model_(d_model), d_inner_(cfg.expand * d_model), n_heads_(0), cfg_(cfg) {
  SEQMIX_CHECK(d_model > 0 && cfg.expand > 0 && cfg.head_dim > 0 && cfg.d_state > 0 &&
                   d_inner_ % cfg.head_dim == 0,
               "mamba2: expand·d_model = {} must be a positive multiple of head_dim {}", d_inner_,
               cfg.head_dim);
  SEQMIX_CHECK(cfg.d_conv >= 2 && cfg.d_conv <= 4, "mamba2: d_conv must be in 2..4, got {}",
               cfg.d_conv);
  n_heads_ = d_inner_ / cfg.head_dim;
  const int64_t n = cfg.d_state, h = n_heads_, conv_dim = d_inner_ + 2 * n;
  in_proj_ = register_module(
      "in_proj", std::make_shared<Linear>(d_model, 2 * d_inner_ + 2 * n + h, false, kMixerInitStd,
                                          derive_seed(init_seed, 0)));
  // Depthwise conv: PyTorch's default Conv1d init U(-1/sqrt(W), 1/sqrt(W)) (fan_in = W).
  const double cb = 1.0 / std::sqrt(double(cfg.d_conv));
  conv_weight_ = register_parameter(
      "conv_weight", init_uniform({conv_dim, cfg.d_conv}, -cb, cb, derive_seed(init_seed, 1)),
      false);
  if (cfg.conv_bias)
    conv_bias_ = register_parameter(
        "conv_bias", init_uniform({conv_dim}, -cb, cb, derive_seed(init_seed, 2)), false);
  // dt_bias = softplus^-1(Δ0) with Δ0 log-uniform in [dt_min, dt_max], floored at dt_init_floor.
  {
    const Tensor u = init_uniform({h}, 0.0, 1.0, derive_seed(init_seed, 3));
    std::vector<float> b(static_cast<size_t>(h));
    const auto uv = u.to_vector<float>();
    const double lmin = std::log(cfg.dt_min), lmax = std::log(cfg.dt_max);
    for (int64_t i = 0; i < h; ++i) {
      const double dt =
          std::max(std::exp(double(uv[size_t(i)]) * (lmax - lmin) + lmin), cfg.dt_init_floor);
      b[size_t(i)] = float(dt + std::log(-std::expm1(-dt)));
    }
    dt_bias_ = register_parameter("dt_bias", Tensor::from_vector(b, {h}, DType::F32), false);
  }
  // A_log = log(A0), A0 ~ U[a_init_min, a_init_max]: decay rates spread over heads.
  {
    const Tensor u = init_uniform({h}, cfg.a_init_min, cfg.a_init_max, derive_seed(init_seed, 4));
    std::vector<float> a;
    for (float v : u.to_vector<float>()) a.push_back(float(std::log(double(v))));
    a_log_ = register_parameter("A_log", Tensor::from_vector(a, {h}, DType::F32), false);
  }
  d_ = register_parameter("D", Tensor::ones({h}, DType::F32), false);
  norm_ = register_module("norm", std::make_shared<RMSNorm>(d_inner_, cfg.norm_eps));
  out_proj_ = register_module(
      "out_proj",
      std::make_shared<Linear>(d_inner_, d_model, false, kMixerInitStd, derive_seed(init_seed, 5)));
  mark_init_scaled(in_proj_->weight());
  mark_init_scaled(out_proj_->weight(), /*residual_output=*/true);
}

Variable Mamba2Mixer::forward(const Variable& x, const ForwardContext& /*ctx*/) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) == d_model_, "mamba2: x must be [B, T, {}], got {}",
               d_model_, x.data().shape_str());
  const int64_t b = x.size(0), t = x.size(1), e = d_inner_, n = cfg_.d_state, h = n_heads_,
                p = cfg_.head_dim;
  const DType cdt = x.dtype(), gdt = gate_dtype(cdt);
  const Variable zxbcdt = in_proj_->forward(x);  // [B, T, 2E + 2N + H]
  // One split node per projection (its backward writes the pieces' gradients into one tensor).
  const std::vector<Variable> parts = split(zxbcdt, 2, {e, e + 2 * n, h});
  const Variable& z = parts[0];
  const Variable xbc_in = contiguous(parts[1]);
  const Variable dt = cast(parts[2], gdt);  // [B, T, H]
  const Variable xbc =
      short_conv(xbc_in, conv_weight_, conv_bias_, Variable(), Tensor(), /*silu=*/true).first;
  const std::vector<Variable> xbcs = split(xbc, 2, {e, n, n});
  const Variable xs = reshape(contiguous(xbcs[0]), {b, t, h, p});
  // B and C are shared by all heads (one group): broadcast to [B, T, H, N] for the kernel.
  const auto per_head = [&](const Variable& m) {
    return contiguous(expand(unsqueeze(m, 2), {b, t, h, n}));
  };
  const Variable bm = per_head(xbcs[1]);
  const Variable cm = per_head(xbcs[2]);
  const Variable delta = softplus(add(dt, cast(dt_bias_, gdt)));  // [B, T, H] fp32
  const Variable a = neg(exp(cast(a_log_, gdt)));                 // [H] fp32
  const Variable g = mul(delta, a);                               // [B, T, H] log-decay ≤ 0
  const Variable v = mul(xs, unsqueeze(cast(delta, cdt), 3));     // Δ·x: [B, T, H, P]
  GlaOptions opt;
  opt.gate = GlaGate::HeadScalar;
  opt.scale = 1.0;
  Variable y = gla(cm, bm, contiguous(v), g, Variable(), Tensor(), opt).first;  // [B, T, H, P]
  y = add(y, mul(xs, unsqueeze(cast(d_, cdt), 1)));                             // + D_h x
  y = mul(reshape(y, {b, t, e}), silu(z));
  return out_proj_->forward(norm_->forward(y));
}

namespace {
std::shared_ptr<Mixer> make_mamba2(int64_t d_model, const MixerSpec& spec, uint64_t init_seed) {
  static const MixerEntry entry = mamba2_mixer_entry();
  MixerOptions o("mamba2", spec, entry.options);
  Mamba2Config c;
  c.d_state = *positive_int(o, "d_state");
  c.head_dim = *positive_int(o, "head_dim");
  c.expand = *positive_int(o, "expand");
  if ((c.expand * d_model) % c.head_dim != 0)
    o.fail("head_dim", fmt::format("must divide expand · d_model = {}, got {}", c.expand * d_model,
                                   c.head_dim));
  c.d_conv = *positive_int(o, "d_conv");
  if (c.d_conv < 2 || c.d_conv > 4)
    o.fail("d_conv", fmt::format("must be in 2..4 (the short conv kernel), got {}", c.d_conv));
  c.conv_bias = o.get_bool("conv_bias");
  c.dt_min = float_in(o, "dt_min", 0, 1e3);
  c.dt_max = float_in(o, "dt_max", 0, 1e3);
  if (c.dt_max < c.dt_min)
    o.fail("dt_max", fmt::format("must be >= dt_min = {}, got {}", c.dt_min, c.dt_max));
  c.dt_init_floor = float_in(o, "dt_init_floor", 0, 1e3);
  c.a_init_min = float_in(o, "a_init_min", 0, 1e6);
  c.a_init_max = float_in(o, "a_init_max", 0, 1e6);
  if (c.a_init_max < c.a_init_min)
    o.fail("a_init_max",
           fmt::format("must be >= a_init_min = {}, got {}", c.a_init_min, c.a_init_max));
  c.norm_eps = float_in(o, "norm_eps", 0, 1);
  return std::make_shared<Mamba2Mixer>(d_model, c, init_seed);
}
}  // namespace

MixerEntry mamba2_mixer_entry() {
  return MixerEntry{
      "mamba2",
      "Mamba-2 (SSD): input-dependent scalar decay per head, short causal conv + SiLU on "
      "(x, B, C), D skip and gated RMSNorm; the chunked gated-linear-attention kernel "
      "(HeadScalar) with one B/C group.",
      {
          {"d_state", "int", "128", "state size N (B and C width)"},
          {"head_dim", "int", "64", "head dim P; heads H = expand · d_model / P"},
          {"expand", "int", "2", "inner width E = expand · d_model"},
          {"d_conv", "int", "4", "short conv width (2..4)"},
          {"conv_bias", "bool", "true", "bias in the short conv"},
          {"dt_min", "float", "0.001", "Δ init: log-uniform in [dt_min, dt_max]"},
          {"dt_max", "float", "0.1", "Δ init: log-uniform in [dt_min, dt_max]"},
          {"dt_init_floor", "float", "0.0001", "Δ init: lower clamp"},
          {"a_init_min", "float", "1", "A init: A_log = log U[a_init_min, a_init_max]"},
          {"a_init_max", "float", "16", "A init: A_log = log U[a_init_min, a_init_max]"},
          {"norm_eps", "float", "1e-5", "epsilon of the gated RMSNorm"},
      },
      make_mamba2,
  };
}

}  // namespace seqmix::nn
