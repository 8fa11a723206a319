// The gated-linear-attention mixers (linear_attn, retnet, gla, mamba2, hgrn2) on the CPU: every
// parameter's gradient against fp64 central differences, the forward against a direct
// re-implementation of the published recurrence (plain loops over the mixer's own parameters),
// causality, initial values (decays, Δ, A), option errors, a tiny LM of each mixer overfitting
// one batch, and every shipped configs/*.yaml parsing with mixers that build.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "configs/config.h"
#include "core/check.h"
#include "layers/language_model.h"
#include "layers/mixers/gla.h"
#include "layers/mixers/hgrn2.h"
#include "layers/mixers/linear_attn.h"
#include "layers/mixers/mamba2.h"
#include "layers/mixers/mixer.h"
#include "layers/mixers/retnet.h"
#include "tests/layers/module_grads.h"
#include "tests/layers/overfit.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using namespace seqmix::nn;
using seqmix::tu::check_module_grads;
using seqmix::tu::error_kind_of;
using seqmix::tu::perturb;

namespace {

using Opts = std::map<std::string, std::string>;
using Vec = std::vector<double>;

// ---- a direct re-implementation of each mixer (f64, plain loops) ----

struct Arr {
  Vec v;
  Shape s;
  int64_t size(int i) const { return s[i]; }
};

Arr arr(const Tensor& t) {
  return Arr{t.to_vector<double>(), t.shape()};
}
Tensor tensor(const Arr& a) {
  return Tensor::from_vector(a.v, a.s, DType::F64);
}

// x [B, T, in] · Wᵀ (+ b) with W [out, in].
Arr lin(const Arr& x, const Tensor& w, const Tensor& b = {}) {
  const int64_t rows = x.size(0) * x.size(1), in = x.size(2), out = w.size(0);
  const Vec wv = w.to_vector<double>();
  const Vec bv = b.defined() ? b.to_vector<double>() : Vec(size_t(out), 0.0);
  Arr y{Vec(size_t(rows * out)), {x.size(0), x.size(1), out}};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bv[size_t(o)];
      for (int64_t i = 0; i < in; ++i) acc += x.v[size_t(r * in + i)] * wv[size_t(o * in + i)];
      y.v[size_t(r * out + o)] = acc;
    }
  return y;
}

Arr map(const Arr& x, const std::function<double(double)>& f) {
  Arr y = x;
  for (double& e : y.v) e = f(e);
  return y;
}
double sigm(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double silu_(double x) {
  return x * sigm(x);
}

// Columns [c0, c0 + n) of the last dim.
Arr cols(const Arr& x, int64_t c0, int64_t n) {
  const int64_t c = x.s.back(), rows = int64_t(x.v.size()) / c;
  Shape s = x.s;
  s[s.size() - 1] = n;
  Arr y{Vec(size_t(rows * n)), s};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) y.v[size_t(r * n + j)] = x.v[size_t(r * c + c0 + j)];
  return y;
}

// RMS norm over groups of `d` consecutive elements with weight w [d].
Arr rms(const Arr& x, int64_t d, const Tensor& w, double eps) {
  const Vec wv = w.to_vector<double>();
  Arr y = x;
  for (size_t r = 0; r < x.v.size(); r += size_t(d)) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += x.v[r + size_t(j)] * x.v[r + size_t(j)];
    const double inv = 1.0 / std::sqrt(ss / double(d) + eps);
    for (int64_t j = 0; j < d; ++j) y.v[r + size_t(j)] = x.v[r + size_t(j)] * inv * wv[size_t(j)];
  }
  return y;
}

Arr emul(const Arr& a, const Arr& b) {
  Arr y = a;
  for (size_t i = 0; i < y.v.size(); ++i) y.v[i] *= b.v[i];
  return y;
}

// S_t = diag(exp g_t) S_{t-1} + k_tᵀ v_t, o_t = scale q_t S_t, per head. q, k, g: [B, T, H*K]
// (g empty: no decay), v: [B, T, H*V].
Arr scan(const Arr& q, const Arr& k, const Arr& v, const Arr* g, int64_t h, double scale) {
  const int64_t b = q.size(0), t = q.size(1), kd = q.size(2) / h, vd = v.size(2) / h;
  Arr o{Vec(size_t(b * t * h * vd)), {b, t, h * vd}};
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < h; ++hi) {
      Vec s(size_t(kd * vd), 0.0);
      for (int64_t ti = 0; ti < t; ++ti) {
        const int64_t qk0 = (bi * t + ti) * h * kd + hi * kd, v0 = (bi * t + ti) * h * vd + hi * vd;
        for (int64_t i = 0; i < kd; ++i) {
          const double dec = g ? std::exp(g->v[size_t(qk0 + i)]) : 1.0;
          for (int64_t j = 0; j < vd; ++j)
            s[size_t(i * vd + j)] =
                dec * s[size_t(i * vd + j)] + k.v[size_t(qk0 + i)] * v.v[size_t(v0 + j)];
        }
        for (int64_t j = 0; j < vd; ++j) {
          double acc = 0;
          for (int64_t i = 0; i < kd; ++i) acc += q.v[size_t(qk0 + i)] * s[size_t(i * vd + j)];
          o.v[size_t(v0 + j)] = scale * acc;
        }
      }
    }
  return o;
}

// Rotate-half rotary on [B, T, H*D] at positions 0..T-1.
Arr rope(const Arr& x, int64_t h, double theta) {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2) / h, half = d / 2;
  Arr y = x;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t hi = 0; hi < h; ++hi)
        for (int64_t i = 0; i < half; ++i) {
          const double a = double(ti) / std::pow(theta, 2.0 * double(i) / double(d));
          const size_t p = size_t(((bi * t + ti) * h + hi) * d);
          const double x1 = x.v[p + size_t(i)], x2 = x.v[p + size_t(i + half)];
          y.v[p + size_t(i)] = x1 * std::cos(a) - x2 * std::sin(a);
          y.v[p + size_t(i + half)] = x2 * std::cos(a) + x1 * std::sin(a);
        }
  return y;
}

using Params = std::map<std::string, Tensor>;
Params params_of(const Module& m) {
  Params p;
  for (const auto& [n, v] : m.named_parameters()) p[n] = v.data();
  return p;
}

Arr direct_linear_attn(const Arr& x, const Params& p, const LinearAttnConfig& c) {
  const auto phi = [&](double z) {
    if (c.feature_map == "relu") return z > 0 ? z : 0.0;
    if (c.feature_map == "elu1") return z > 0 ? z + 1 : std::exp(z);
    return z;
  };
  const Arr q = map(lin(x, p.at("q_proj.weight")), phi),
            k = map(lin(x, p.at("k_proj.weight")), phi);
  const Arr v = lin(x, p.at("v_proj.weight"));
  const int64_t h = c.n_heads;
  const double s = 1.0 / std::sqrt(double(c.key_dim / h));
  Arr o = scan(q, k, v, nullptr, h, s);
  if (c.normalize) {
    // o_t / (s q_t · Σ_{u≤t} k_u + eps), computed from explicit prefix sums.
    const int64_t b = x.size(0), t = x.size(1), kd = c.key_dim / h, vd = c.value_dim / h;
    for (int64_t bi = 0; bi < b; ++bi)
      for (int64_t hi = 0; hi < h; ++hi) {
        Vec z(size_t(kd), 0.0);
        for (int64_t ti = 0; ti < t; ++ti) {
          double den = 0;
          for (int64_t i = 0; i < kd; ++i) {
            const size_t qi = size_t((bi * t + ti) * c.key_dim + hi * kd + i);
            z[size_t(i)] += k.v[qi];
            den += q.v[qi] * z[size_t(i)];
          }
          for (int64_t j = 0; j < vd; ++j)
            o.v[size_t((bi * t + ti) * c.value_dim + hi * vd + j)] /= s * den + c.norm_eps;
        }
      }
  }
  if (c.output_norm) o = rms(o, c.value_dim / h, p.at("o_norm.weight"), c.norm_eps);
  return lin(o, p.at("o_proj.weight"));
}

Arr direct_retnet(const Arr& x, const Params& p, const RetNetConfig& c) {
  const int64_t h = c.n_heads, kd = c.key_dim / h;
  Arr q = lin(x, p.at("q_proj.weight")), k = lin(x, p.at("k_proj.weight"));
  if (c.rotary) {
    q = rope(q, h, c.rope_theta);
    k = rope(k, h, c.rope_theta);
  }
  Arr g = q;  // log γ_h broadcast over [B, T, H, K]
  for (size_t i = 0; i < g.v.size(); ++i) {
    const int64_t head = int64_t(i) % c.key_dim / kd;
    g.v[i] = std::log(1.0 - std::pow(2.0, -5.0 - double(head)));
  }
  const Arr o = scan(q, k, lin(x, p.at("v_proj.weight")), &g, h, 1.0 / std::sqrt(double(kd)));
  const Arr gate = map(lin(x, p.at("g_proj.weight")), silu_);
  return lin(emul(rms(o, c.value_dim / h, p.at("g_norm.weight"), c.norm_eps), gate),
             p.at("o_proj.weight"));
}

Arr direct_gla(const Arr& x, const Params& p, const GlaConfig& c) {
  const int64_t h = c.n_heads;
  const Arr a =
      lin(lin(x, p.at("gk_proj_a.weight")), p.at("gk_proj_b.weight"), p.at("gk_proj_b.bias"));
  const Arr g = map(a, [&](double z) { return std::log(sigm(z)) / c.gate_logit_normalizer; });
  const Arr o = scan(lin(x, p.at("q_proj.weight")), lin(x, p.at("k_proj.weight")),
                     lin(x, p.at("v_proj.weight")), &g, h, 1.0 / std::sqrt(double(c.key_dim / h)));
  Arr y = rms(o, c.value_dim / h, p.at("g_norm.weight"), c.norm_eps);
  if (c.output_gate) y = emul(y, map(lin(x, p.at("g_proj.weight")), silu_));
  return lin(y, p.at("o_proj.weight"));
}

Arr direct_mamba2(const Arr& x, const Params& p, const Mamba2Config& c, int64_t e, int64_t h) {
  const int64_t b = x.size(0), t = x.size(1), n = c.d_state, pd = c.head_dim, w = c.d_conv;
  const Arr all = lin(x, p.at("in_proj.weight"));
  const Arr z = cols(all, 0, e), xbc_in = cols(all, e, e + 2 * n), dt = cols(all, 2 * e + 2 * n, h);
  // Causal depthwise conv (zeros before t = 0) + SiLU.
  const Vec cw = p.at("conv_weight").to_vector<double>();
  const Vec cb = c.conv_bias ? p.at("conv_bias").to_vector<double>() : Vec(size_t(e + 2 * n), 0.0);
  const int64_t cc = e + 2 * n;
  Arr xbc = xbc_in;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t ch = 0; ch < cc; ++ch) {
        double acc = cb[size_t(ch)];
        for (int64_t i = 0; i < w; ++i) {
          const int64_t src = ti - w + 1 + i;
          if (src >= 0) acc += cw[size_t(ch * w + i)] * xbc_in.v[size_t((bi * t + src) * cc + ch)];
        }
        xbc.v[size_t((bi * t + ti) * cc + ch)] = silu_(acc);
      }
  const Arr xs = cols(xbc, 0, e), bm = cols(xbc, e, n), cm = cols(xbc, e + n, n);
  const Vec dtb = p.at("dt_bias").to_vector<double>(), alog = p.at("A_log").to_vector<double>(),
            dd = p.at("D").to_vector<double>();
  // Per head: q = C, k = B (shared), g = Δ A broadcast over N, v = Δ x.
  Arr q{Vec(size_t(b * t * h * n)), {b, t, h * n}}, k = q, g = q;
  Arr v = xs;
  for (int64_t r = 0; r < b * t; ++r)
    for (int64_t hi = 0; hi < h; ++hi) {
      const double z0 = dt.v[size_t(r * h + hi)] + dtb[size_t(hi)];
      const double delta = z0 > 20 ? z0 : std::log1p(std::exp(z0));
      for (int64_t i = 0; i < n; ++i) {
        const size_t at = size_t((r * h + hi) * n + i);
        q.v[at] = cm.v[size_t(r * n + i)];
        k.v[at] = bm.v[size_t(r * n + i)];
        g.v[at] = -delta * std::exp(alog[size_t(hi)]);
      }
      for (int64_t j = 0; j < pd; ++j) v.v[size_t(r * e + hi * pd + j)] *= delta;
    }
  Arr y = scan(q, k, v, &g, h, 1.0);
  for (int64_t r = 0; r < b * t; ++r)
    for (int64_t j = 0; j < e; ++j)
      y.v[size_t(r * e + j)] += dd[size_t(j / pd)] * xs.v[size_t(r * e + j)];
  y = emul(y, map(z, silu_));
  return lin(rms(y, e, p.at("norm.weight"), c.norm_eps), p.at("out_proj.weight"));
}

Arr direct_hgrn2(const Arr& x, const Params& p, const Hgrn2Config& c, int64_t d_model) {
  const int64_t h = d_model / c.expand_ratio;
  const double lb = c.lower_bound;
  const Arr f = lin(x, p.at("f_proj.weight"));
  const Arr lam = map(f, [&](double z) { return lb + (1 - lb) * sigm(z); });
  const Arr k = map(lam, [](double l) { return 1 - l; });
  const Arr g = map(lam, [](double l) { return std::log(l); });
  const Arr o = scan(map(lin(x, p.at("q_proj.weight")), silu_), k, lin(x, p.at("i_proj.weight")),
                     &g, h, 1.0 / std::sqrt(double(c.expand_ratio)));
  return lin(rms(o, d_model, p.at("g_norm.weight"), c.norm_eps), p.at("o_proj.weight"));
}

using Case = tu::MixerCase;

// Small configurations covering every option path, at d_model 8.
std::vector<Case> small_cases() {
  return {
      {"linear_attn identity", {"linear_attn", {{"n_heads", "2"}}}},
      {"linear_attn elu1 normalize",
       {"linear_attn",
        {{"n_heads", "2"}, {"feature_map", "elu1"}, {"normalize", "true"}, {"expand_v", "1.5"}}}},
      {"linear_attn relu output_norm",
       {"linear_attn", {{"n_heads", "1"}, {"feature_map", "relu"}, {"output_norm", "true"}}}},
      {"retnet", {"retnet", {{"n_heads", "2"}}}},
      {"retnet no rotary", {"retnet", {{"n_heads", "2"}, {"rotary", "false"}, {"expand_v", "1"}}}},
      {"gla", {"gla", {{"n_heads", "2"}, {"gate_low_rank_dim", "3"}}}},
      {"gla no output gate",
       {"gla", {{"n_heads", "1"}, {"output_gate", "false"}, {"gate_logit_normalizer", "2"}}}},
      {"mamba2", {"mamba2", {{"d_state", "3"}, {"head_dim", "4"}}}},
      {"mamba2 conv2 no bias",
       {"mamba2", {{"d_state", "2"}, {"head_dim", "8"}, {"d_conv", "2"}, {"conv_bias", "false"}}}},
      {"hgrn2", {"hgrn2", {{"expand_ratio", "4"}}}},
      {"hgrn2 lower bound", {"hgrn2", {{"expand_ratio", "2"}, {"lower_bound", "0.3"}}}},
  };
}

Arr direct(Mixer& m, const std::string& type, const Arr& x, int64_t d_model) {
  const Params p = params_of(m);
  if (type == "linear_attn")
    return direct_linear_attn(x, p, static_cast<LinearAttnMixer&>(m).config());
  if (type == "retnet") return direct_retnet(x, p, static_cast<RetNetMixer&>(m).config());
  if (type == "gla") return direct_gla(x, p, static_cast<GlaMixer&>(m).config());
  if (type == "mamba2") {
    auto& mm = static_cast<Mamba2Mixer&>(m);
    return direct_mamba2(x, p, mm.config(), mm.inner_dim(), mm.n_heads());
  }
  return direct_hgrn2(x, p, static_cast<Hgrn2Mixer&>(m).config(), d_model);
}

}  // namespace

TEST(MixersCpu, GradientsMatchFiniteDifferences) {
  SEQMIX_TRACE_SEED();
  tu::check_mixer_grads(small_cases(), 8);
}

TEST(MixersCpu, ForwardMatchesDirectRecurrenceAndIsCausal) {
  SEQMIX_TRACE_SEED();
  const int64_t d = 8, b = 2, t = 9;
  for (const Case& c : small_cases()) {
    SCOPED_TRACE(c.name);
    auto mix = make_mixer(d, c.spec, tu::next_seed());
    mix->to(DType::F64);
    perturb(*mix);
    const ForwardContext ctx{DType::F64, true, nullptr};
    const Tensor x = tu::randn({b, t, d}, DType::F64);
    NoGradGuard ng;
    const Tensor y = mix->forward(Variable(x), ctx).data();
    ASSERT_EQ(y.shape(), Shape({b, t, d}));
    ASSERT_EQ(y.dtype(), DType::F64);
    const Tensor ref = tensor(direct(*mix, c.spec.type, arr(x), d));
    EXPECT_TRUE(tu::close(y, ref, 1e-10)) << tu::compare(y, ref).str();
    // A single step (T = 1).
    const Tensor x1 = tu::randn({b, 1, d}, DType::F64);
    const Tensor y1 = mix->forward(Variable(x1), ctx).data();
    EXPECT_TRUE(tu::close(y1, tensor(direct(*mix, c.spec.type, arr(x1), d)), 1e-10));
    // Changing x at t0 leaves every output before t0 unchanged and changes the one at t0.
    const int64_t t0 = 4;
    Tensor x2 = x.clone();
    x2.narrow(1, t0, 1).copy_(tu::randn({b, 1, d}, DType::F64));
    const Tensor y2 = mix->forward(Variable(x2), ctx).data();
    EXPECT_TRUE(
        tu::bitwise_equal(y2.narrow(1, 0, t0).contiguous(), y.narrow(1, 0, t0).contiguous()));
    EXPECT_FALSE(
        tu::close(y2.narrow(1, t0, 1).contiguous(), y.narrow(1, t0, 1).contiguous(), 1e-6));
  }
}

TEST(MixersCpu, ParametersAndInit) {
  SEQMIX_TRACE_SEED();
  // RetNet: fixed decays γ_h = 1 - 2^(-5-h), no parameter for them.
  auto ret = make_mixer(64, MixerSpec{"retnet", {}}, 1);
  const auto& rc = static_cast<RetNetMixer&>(*ret).config();
  EXPECT_EQ(rc.n_heads, 8);
  EXPECT_EQ(rc.value_dim, 2 * rc.key_dim);
  const auto& lg = static_cast<RetNetMixer&>(*ret).log_decays();
  ASSERT_EQ(lg.size(), 8u);
  for (size_t h = 0; h < lg.size(); ++h)
    EXPECT_NEAR(std::exp(lg[h]), 1.0 - std::pow(2.0, -5.0 - double(h)), 1e-15);
  // GLA defaults: H = 4, K = C/2 total, V = C, r = 16.
  auto gla_m = make_mixer(64, MixerSpec{"gla", {}}, 1);
  const auto& gc = static_cast<GlaMixer&>(*gla_m).config();
  EXPECT_EQ(gc.n_heads, 4);
  EXPECT_EQ(gc.key_dim, 32);
  EXPECT_EQ(gc.value_dim, 64);
  EXPECT_EQ(gc.gate_low_rank_dim, 16);
  EXPECT_EQ(gc.gate_logit_normalizer, 16.0);
  std::vector<std::string> names;
  for (const auto& [n, v] : gla_m->named_parameters()) names.push_back(n);
  EXPECT_EQ(names,
            (std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight",
                                      "g_proj.weight", "gk_proj_a.weight", "gk_proj_b.weight",
                                      "gk_proj_b.bias", "g_norm.weight", "o_proj.weight"}));
  // Mamba-2 defaults and init: softplus(dt_bias) in [dt_min, dt_max], -exp(A_log) in [-16, -1].
  auto mam = make_mixer(256, MixerSpec{"mamba2", {}}, tu::next_seed());
  auto& mm = static_cast<Mamba2Mixer&>(*mam);
  EXPECT_EQ(mm.config().d_state, 128);
  EXPECT_EQ(mm.inner_dim(), 512);
  EXPECT_EQ(mm.n_heads(), 8);
  const Params p = params_of(mm);
  EXPECT_EQ(p.at("in_proj.weight").shape(), Shape({2 * 512 + 2 * 128 + 8, 256}));
  EXPECT_EQ(p.at("conv_weight").shape(), Shape({512 + 2 * 128, 4}));
  for (double v : p.at("dt_bias").to_vector<double>()) {
    const double dt = std::log1p(std::exp(v));
    EXPECT_GE(dt, 1e-3 * (1 - 1e-5));
    EXPECT_LE(dt, 1e-1 * (1 + 1e-5));
  }
  for (double v : p.at("A_log").to_vector<double>()) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, std::log(16.0) + 1e-6);
  }
  for (double v : p.at("D").to_vector<double>()) EXPECT_EQ(v, 1.0);
  EXPECT_FALSE(mm.decays("A_log"));
  EXPECT_FALSE(mm.decays("dt_bias"));
  EXPECT_TRUE(mm.decays("in_proj.weight"));
  ASSERT_EQ(mm.init_scaled_weights().size(), 2u);
  ASSERT_EQ(mm.residual_output_weights().size(), 1u);
  // HGRN2: expand ratio 128 (or d_model when smaller); heads = d_model / ratio.
  auto hg = make_mixer(256, MixerSpec{"hgrn2", {}}, 1);
  EXPECT_EQ(static_cast<Hgrn2Mixer&>(*hg).config().expand_ratio, 128);
  EXPECT_EQ(static_cast<Hgrn2Mixer&>(*hg).n_heads(), 2);
  auto hg_small = make_mixer(64, MixerSpec{"hgrn2", {}}, 1);
  EXPECT_EQ(static_cast<Hgrn2Mixer&>(*hg_small).config().expand_ratio, 64);
  // Linear attention defaults: identity map, no normalisation.
  auto la = make_mixer(64, MixerSpec{"linear_attn", {}}, 1);
  const auto& lc = static_cast<LinearAttnMixer&>(*la).config();
  EXPECT_EQ(lc.feature_map, "identity");
  EXPECT_FALSE(lc.normalize);
  EXPECT_FALSE(lc.output_norm);
  // Every mixer marks exactly one residual output projection.
  for (const char* type : {"linear_attn", "retnet", "gla", "mamba2", "hgrn2"}) {
    SCOPED_TRACE(type);
    auto m = make_mixer(64, MixerSpec{type, {}}, 1);
    EXPECT_EQ(m->residual_output_weights().size(), 1u);
    EXPECT_GE(m->init_scaled_weights().size(), 2u);
  }
}

TEST(MixersCpu, OptionErrors) {
  struct Bad {
    MixerSpec spec;
    std::vector<std::string> says;
  };
  const std::vector<Bad> bad = {
      {{"linear_attn", {{"feature_map", "elu"}}}, {"'linear_attn'", "'feature_map'", "elu1"}},
      {{"linear_attn", {{"normalize", "true"}}}, {"'normalize'", "positive feature_map"}},
      {{"linear_attn", {{"n_heads", "0"}}}, {"'n_heads'", "positive"}},
      {{"linear_attn", {{"n_heads", "3"}}}, {"'expand_k'", "n_heads = 3"}},
      {{"linear_attn", {{"n_head", "2"}}}, {"unknown option 'n_head'", "did you mean 'n_heads'"}},
      {{"retnet", {{"expand_v", "-1"}}}, {"'retnet'", "'expand_v'"}},
      {{"retnet", {{"n_heads", "64"}, {"expand_k", "1"}}}, {"'n_heads'", "at most 40"}},
      {{"retnet", {{"n_heads", "16"}, {"expand_k", "0.25"}}}, {"'expand_k'", "even"}},
      {{"gla", {{"gate_low_rank_dim", "0"}}}, {"'gla'", "'gate_low_rank_dim'", "positive"}},
      {{"gla", {{"gate_logit_normalizer", "0"}}}, {"'gate_logit_normalizer'"}},
      {{"gla", {{"expand_k", "0.3"}}}, {"'expand_k'", "0.3"}},
      {{"gla", {{"output_gate", "maybe"}}}, {"'output_gate'", "true or false"}},
      {{"mamba2", {{"head_dim", "48"}}}, {"'mamba2'", "'head_dim'", "must divide"}},
      {{"mamba2", {{"d_conv", "5"}}}, {"'d_conv'", "2..4"}},
      {{"mamba2", {{"dt_min", "0.2"}}}, {"'dt_max'", "dt_min"}},
      {{"mamba2", {{"a_init_min", "0"}}}, {"'a_init_min'"}},
      {{"mamba2", {{"d_stat", "16"}}}, {"unknown option 'd_stat'", "did you mean 'd_state'"}},
      {{"hgrn2", {{"expand_ratio", "48"}}}, {"'hgrn2'", "'expand_ratio'", "must divide"}},
      {{"hgrn2", {{"lower_bound", "1"}}}, {"'lower_bound'", "< 1"}},
      {{"hgrn2", {{"lower_bound", "-0.1"}}}, {"'lower_bound'"}},
      {{"hgrn", {}}, {"unknown mixer 'hgrn'", "did you mean 'hgrn2'"}},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.spec.type + " " + (b.spec.options.empty() ? "" : b.spec.options.begin()->first));
    std::string msg;
    EXPECT_EQ(error_kind_of([&] { make_mixer(64, b.spec, 1); }, &msg), ErrorKind::Config);
    for (const std::string& s : b.says) EXPECT_NE(msg.find(s), std::string::npos) << msg;
  }
}

// A 2-layer LM of each mixer fits one batch of random tokens (Adam written out on the masters).
TEST(MixersCpu, TinyModelOverfitsOneBatch) {
  SEQMIX_TRACE_SEED();
  const std::vector<MixerSpec> specs = {
      {"linear_attn", {{"n_heads", "2"}}}, {"retnet", {{"n_heads", "2"}}},
      {"gla", {{"n_heads", "2"}}},         {"mamba2", {{"d_state", "8"}, {"head_dim", "16"}}},
      {"hgrn2", {{"expand_ratio", "16"}}},
  };
  for (const MixerSpec& s : specs) {
    SCOPED_TRACE(s.type);
    LmConfig c;
    c.vocab_size = 16;
    c.d_model = 32;
    c.layers.assign(2, s);
    c.mlp_hidden = 64;
    c.init_seed = tu::next_seed();
    LanguageModel m(c);
    const tu::OverfitResult r = tu::overfit_one_batch(m, 16, 500);
    std::printf("overfit %s: loss %.3f -> %.4f in %d steps\n", s.type.c_str(), r.first, r.last,
                r.steps);
    EXPECT_NEAR(r.first, std::log(16.0), 0.15);
    EXPECT_LT(r.last, 0.1) << "after " << r.steps << " steps";
  }
}

// Every shipped run config parses, and each of its mixer specs builds at the config's width
// (mixer options are checked by the mixer table, not by the config reader).
TEST(ConfigsCpu, EveryShippedConfigParsesAndBuildsItsMixers) {
  int64_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    config::RunConfig rc;
    ASSERT_NO_THROW(rc = config::load_config(entry.path().string())) << entry.path();
    for (const std::string& l : config::layer_mixers(rc)) ASSERT_TRUE(rc.model.mixers.count(l));
    for (const auto& [name, mc] : rc.model.mixers) {
      SCOPED_TRACE(name);
      EXPECT_NO_THROW(make_mixer(rc.model.d_model, MixerSpec{mc.type, mc.options}, 1));
    }
    ++n;
  }
  EXPECT_GE(n, 14);  // 2 originals + 2 per F3 mixer + hybrid + gla_134m
}
