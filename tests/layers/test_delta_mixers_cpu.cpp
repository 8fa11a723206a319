// The delta-rule mixers (deltanet, gated_deltanet, kda) on the CPU: forward shapes, every
// parameter's gradient against fp64 central differences, the forward against a direct
// re-implementation of the published recurrence (plain loops over the mixer's own parameters),
// causality, parameter names / counts / init, option errors, and a tiny LM of each mixer
// overfitting one batch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/check.h"
#include "layers/language_model.h"
#include "layers/mixers/deltanet.h"
#include "layers/mixers/mixer.h"
#include "tests/layers/module_grads.h"
#include "tests/layers/overfit.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using namespace seqmix::nn;
using seqmix::tu::check_module_grads;
using seqmix::tu::error_kind_of;
using seqmix::tu::perturb;

namespace {

using Vec = std::vector<double>;
using Params = std::map<std::string, Tensor>;

Params params_of(const Module& m) {
  Params p;
  for (const auto& [n, v] : m.named_parameters()) p[n] = v.data();
  return p;
}

// ---- a direct re-implementation of the published layers (f64, plain loops) ----

// Row-major [rows, n] matrix of doubles.
struct Mat {
  Vec v;
  int64_t rows = 0, n = 0;
  double& at(int64_t r, int64_t c) { return v[size_t(r * n + c)]; }
  double at(int64_t r, int64_t c) const { return v[size_t(r * n + c)]; }
};

Mat zeros(int64_t rows, int64_t n) {
  return Mat{Vec(size_t(rows * n), 0.0), rows, n};
}

// x [rows, in] · Wᵀ (+ b), W: [out, in].
Mat lin(const Mat& x, const Tensor& w, const Tensor& b = {}) {
  const int64_t out = w.size(0), in = w.size(1);
  EXPECT_EQ(in, x.n);
  const Vec wv = w.to_vector<double>();
  const Vec bv = b.defined() ? b.to_vector<double>() : Vec(size_t(out), 0.0);
  Mat y = zeros(x.rows, out);
  for (int64_t r = 0; r < x.rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bv[size_t(o)];
      for (int64_t i = 0; i < in; ++i) acc += x.at(r, i) * wv[size_t(o * in + i)];
      y.at(r, o) = acc;
    }
  return y;
}

double sigm(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
double softplus_(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}

// The layer for x: [B, T, C] (rows b * T + t), as written in the papers / fla's layers.
Mat direct(const DeltaNetConfig& c, const Params& p, const Mat& x, int64_t b, int64_t t) {
  const int64_t h = c.n_heads, hk = c.key_dim, hv = c.value_dim, kd = hk / h, vd = hv / h;
  const int64_t cd = 2 * hk + hv, w = c.conv_size;
  // Projection, causal depthwise conv (zeros before t = 0), SiLU.
  const Mat pre = lin(x, p.at("qkv_proj.weight"));
  const Vec cw = p.at("conv_weight").to_vector<double>();
  const Vec cb = c.conv_bias ? p.at("conv_bias").to_vector<double>() : Vec(size_t(cd), 0.0);
  Mat qkv = zeros(b * t, cd);
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ti = 0; ti < t; ++ti)
      for (int64_t ch = 0; ch < cd; ++ch) {
        double acc = cb[size_t(ch)];
        for (int64_t i = 0; i < w; ++i) {
          const int64_t src = ti - w + 1 + i;
          if (src >= 0) acc += cw[size_t(ch * w + i)] * pre.at(bi * t + src, ch);
        }
        qkv.at(bi * t + ti, ch) = acc * sigm(acc);
      }
  // β, and the log-gate per (row, head, key dim).
  Mat beta = lin(x, p.at("b_proj.weight"));
  for (double& e : beta.v) e = sigm(e) * (c.allow_neg_eigval ? 2.0 : 1.0);
  Mat g = zeros(b * t, hk);
  if (c.gate == DeltaGate::HeadScalar) {
    const Mat a = lin(x, p.at("a_proj.weight"));
    const Vec alog = p.at("A_log").to_vector<double>(), dtb = p.at("dt_bias").to_vector<double>();
    for (int64_t r = 0; r < b * t; ++r)
      for (int64_t j = 0; j < hk; ++j) {
        const int64_t hi = j / kd;
        g.at(r, j) = -std::exp(alog[size_t(hi)]) * softplus_(a.at(r, hi) + dtb[size_t(hi)]);
      }
  } else if (c.gate == DeltaGate::KeyVector) {
    const Mat f = lin(lin(x, p.at("f_proj_a.weight")), p.at("f_proj_b.weight"));
    const Vec alog = p.at("A_log").to_vector<double>(), dtb = p.at("dt_bias").to_vector<double>();
    for (int64_t r = 0; r < b * t; ++r)
      for (int64_t j = 0; j < hk; ++j)
        g.at(r, j) = -std::exp(alog[size_t(j / kd)]) * softplus_(f.at(r, j) + dtb[size_t(j)]);
  }
  // The delta rule per head: S ← Diag(exp g) S;  S ← S + β k̂ (v − S ᵀk̂)ᵀ;  o = S ᵀq̂ / sqrt(K).
  Mat o = zeros(b * t, hv);
  const double scale = 1.0 / std::sqrt(double(kd));
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < h; ++hi) {
      Vec s(size_t(kd * vd), 0.0);
      for (int64_t ti = 0; ti < t; ++ti) {
        const int64_t r = bi * t + ti;
        Vec q(static_cast<size_t>(kd)), k(static_cast<size_t>(kd)), v(static_cast<size_t>(vd));
        double qq = 0, kk = 0;
        for (int64_t i = 0; i < kd; ++i) {
          q[size_t(i)] = qkv.at(r, hi * kd + i);
          k[size_t(i)] = qkv.at(r, hk + hi * kd + i);
          qq += q[size_t(i)] * q[size_t(i)];
          kk += k[size_t(i)] * k[size_t(i)];
        }
        for (int64_t i = 0; i < kd; ++i) {
          q[size_t(i)] /= std::sqrt(qq + 1e-6);
          k[size_t(i)] /= std::sqrt(kk + 1e-6);
        }
        for (int64_t j = 0; j < vd; ++j) v[size_t(j)] = qkv.at(r, 2 * hk + hi * vd + j);
        for (int64_t i = 0; i < kd; ++i)
          for (int64_t j = 0; j < vd; ++j) s[size_t(i * vd + j)] *= std::exp(g.at(r, hi * kd + i));
        const double bt = beta.at(r, hi);
        for (int64_t j = 0; j < vd; ++j) {
          double u = 0;
          for (int64_t i = 0; i < kd; ++i) u += k[size_t(i)] * s[size_t(i * vd + j)];
          for (int64_t i = 0; i < kd; ++i)
            s[size_t(i * vd + j)] += bt * k[size_t(i)] * (v[size_t(j)] - u);
        }
        for (int64_t j = 0; j < vd; ++j) {
          double acc = 0;
          for (int64_t i = 0; i < kd; ++i) acc += q[size_t(i)] * s[size_t(i * vd + j)];
          o.at(r, hi * vd + j) = scale * acc;
        }
      }
    }
  // Per-head RMSNorm over V (weight shared by the heads), output gate, output projection.
  const Vec nw = p.at("o_norm.weight").to_vector<double>();
  for (int64_t r = 0; r < b * t; ++r)
    for (int64_t hi = 0; hi < h; ++hi) {
      double ss = 0;
      for (int64_t j = 0; j < vd; ++j) ss += o.at(r, hi * vd + j) * o.at(r, hi * vd + j);
      const double inv = 1.0 / std::sqrt(ss / double(vd) + c.norm_eps);
      for (int64_t j = 0; j < vd; ++j) o.at(r, hi * vd + j) *= inv * nw[size_t(j)];
    }
  if (c.gate == DeltaGate::KeyVector) {
    const Mat z =
        lin(lin(x, p.at("g_proj_a.weight")), p.at("g_proj_b.weight"), p.at("g_proj_b.bias"));
    for (size_t i = 0; i < o.v.size(); ++i) o.v[i] *= sigm(z.v[i]);
  } else if (c.output_gate) {
    const Mat z = lin(x, p.at("g_proj.weight"));
    for (size_t i = 0; i < o.v.size(); ++i) o.v[i] *= z.v[i] * sigm(z.v[i]);
  }
  return lin(o, p.at("o_proj.weight"));
}

using Case = tu::MixerCase;

// Small configurations covering every option path, at d_model 8.
std::vector<Case> small_cases() {
  return {
      {"deltanet", {"deltanet", {{"n_heads", "2"}}}},
      {"deltanet gate neg conv3 bias",
       {"deltanet",
        {{"n_heads", "1"},
         {"output_gate", "true"},
         {"allow_neg_eigval", "true"},
         {"conv_size", "3"},
         {"conv_bias", "true"},
         {"expand_v", "0.5"}}}},
      {"gated_deltanet",
       {"gated_deltanet", {{"n_heads", "2"}, {"expand_k", "1"}, {"expand_v", "1.5"}}}},
      {"gated_deltanet no gate neg conv2",
       {"gated_deltanet",
        {{"n_heads", "2"},
         {"expand_k", "0.5"},
         {"expand_v", "1"},
         {"output_gate", "false"},
         {"allow_neg_eigval", "true"},
         {"conv_size", "2"}}}},
      {"kda", {"kda", {{"n_heads", "2"}, {"gate_low_rank_dim", "3"}}}},
      {"kda auto rank neg bias",
       {"kda",
        {{"n_heads", "1"},
         {"expand_v", "0.5"},
         {"allow_neg_eigval", "true"},
         {"conv_bias", "true"}}}},
  };
}

Mat mat(const Tensor& x) {
  return Mat{x.to_vector<double>(), x.size(0) * x.size(1), x.size(2)};
}

}  // namespace

TEST(DeltaMixersCpu, ForwardShapesAndDtypes) {
  SEQMIX_TRACE_SEED();
  for (const char* type : {"deltanet", "gated_deltanet", "kda"}) {
    SCOPED_TRACE(type);
    // Defaults (d_model 96: 4, 6 and 16 heads all divide it).
    auto mix = make_mixer(96, MixerSpec{type, {}}, tu::next_seed());
    const ForwardContext ctx{DType::F32, true, nullptr};
    NoGradGuard ng;
    for (const int64_t t : {1, 7, 33}) {
      const Tensor y = mix->forward(Variable(tu::randn({2, t, 96}, DType::F32)), ctx).data();
      EXPECT_EQ(y.shape(), Shape({2, t, 96}));
      EXPECT_EQ(y.dtype(), DType::F32);
      for (float e : y.to_vector<float>()) ASSERT_TRUE(std::isfinite(e));
    }
    std::string msg;
    EXPECT_EQ(error_kind_of(
                  [&] {
                    mix->forward(Variable(tu::randn({2, 3, 95}, DType::F32)), ctx);
                  },
                  &msg),
              ErrorKind::Value);
    EXPECT_NE(msg.find(type), std::string::npos) << msg;
  }
}

TEST(DeltaMixersCpu, GradientsMatchFiniteDifferences) {
  SEQMIX_TRACE_SEED();
  tu::check_mixer_grads(small_cases(), 8);
}

TEST(DeltaMixersCpu, ForwardMatchesDirectRecurrenceAndIsCausal) {
  SEQMIX_TRACE_SEED();
  const int64_t d = 8, b = 2, t = 9;
  for (const Case& c : small_cases()) {
    SCOPED_TRACE(c.name);
    auto mix = make_mixer(d, c.spec, tu::next_seed());
    mix->to(DType::F64);
    perturb(*mix);
    const DeltaNetConfig& cfg = static_cast<DeltaNetMixer&>(*mix).config();
    const ForwardContext ctx{DType::F64, true, nullptr};
    const Tensor x = tu::randn({b, t, d}, DType::F64);
    NoGradGuard ng;
    const Tensor y = mix->forward(Variable(x), ctx).data();
    ASSERT_EQ(y.shape(), Shape({b, t, d}));
    ASSERT_EQ(y.dtype(), DType::F64);
    const Tensor ref =
        Tensor::from_vector(direct(cfg, params_of(*mix), mat(x), b, t).v, {b, t, d}, DType::F64);
    EXPECT_TRUE(tu::close(y, ref, 1e-10)) << tu::compare(y, ref).str();
    // A single step (T = 1).
    const Tensor x1 = tu::randn({b, 1, d}, DType::F64);
    const Tensor y1 = mix->forward(Variable(x1), ctx).data();
    EXPECT_TRUE(tu::close(
        y1,
        Tensor::from_vector(direct(cfg, params_of(*mix), mat(x1), b, 1).v, {b, 1, d}, DType::F64),
        1e-10));
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

TEST(DeltaMixersCpu, BetaAndGateRanges) {
  SEQMIX_TRACE_SEED();
  const Tensor x = tu::randn({2, 6, 16}, DType::F32, Device::cpu(), 30.0);  // saturate σ
  NoGradGuard ng;
  for (const bool neg : {false, true}) {
    auto mix = make_mixer(
        16, MixerSpec{"gated_deltanet", {{"n_heads", "2"}, {"allow_neg_eigval", neg ? "1" : "0"}}},
        tu::next_seed());
    perturb(*mix);
    auto& m = static_cast<DeltaNetMixer&>(*mix);
    const Tensor beta = m.beta(Variable(x)).data();
    EXPECT_EQ(beta.shape(), Shape({2, 6, 2}));
    EXPECT_EQ(beta.dtype(), DType::F32);
    double hi = 0;
    for (float e : beta.to_vector<float>()) {
      EXPECT_GE(e, 0.f);
      EXPECT_LE(e, neg ? 2.f : 1.f);
      hi = std::max(hi, double(e));
    }
    // With saturated inputs some β reach past 1 exactly when negative eigenvalues are allowed.
    EXPECT_EQ(hi > 1.5, neg);
    const Tensor g = m.log_gate(Variable(x)).data();
    EXPECT_EQ(g.shape(), Shape({2, 6, 2}));
    for (float e : g.to_vector<float>()) EXPECT_LE(e, 0.f);
  }
  auto kda = make_mixer(16, MixerSpec{"kda", {{"n_heads", "2"}}}, tu::next_seed());
  const Tensor g = static_cast<DeltaNetMixer&>(*kda).log_gate(Variable(x)).data();
  EXPECT_EQ(g.shape(), Shape({2, 6, 2, 8}));
  for (float e : g.to_vector<float>()) EXPECT_LE(e, 0.f);
  auto dn = make_mixer(16, MixerSpec{"deltanet", {{"n_heads", "2"}}}, 1);
  EXPECT_FALSE(static_cast<DeltaNetMixer&>(*dn).log_gate(Variable(x)).defined());
}

TEST(DeltaMixersCpu, ParameterNamesCountsAndInit) {
  SEQMIX_TRACE_SEED();
  const int64_t c = 64;
  const auto names_of = [](const Module& m) {
    std::vector<std::string> n;
    for (const auto& [name, v] : m.named_parameters()) n.push_back(name);
    return n;
  };
  const auto count = [](const Module& m) {
    int64_t n = 0;
    for (const Variable& v : m.parameters()) n += v.numel();
    return n;
  };
  // DeltaNet defaults (fla): H = 4, H·K = H·V = C, no output gate, conv width 4 without bias.
  {
    auto m = make_mixer(c, MixerSpec{"deltanet", {}}, tu::next_seed());
    const auto& cfg = static_cast<DeltaNetMixer&>(*m).config();
    EXPECT_EQ(cfg.n_heads, 4);
    EXPECT_EQ(cfg.key_dim, c);
    EXPECT_EQ(cfg.value_dim, c);
    EXPECT_FALSE(cfg.output_gate);
    EXPECT_FALSE(cfg.allow_neg_eigval);
    EXPECT_EQ(names_of(*m),
              (std::vector<std::string>{"qkv_proj.weight", "conv_weight", "b_proj.weight",
                                        "o_norm.weight", "o_proj.weight"}));
    const int64_t hk = c, hv = c, h = 4, v = hv / h;
    EXPECT_EQ(count(*m), (2 * hk + hv) * c + (2 * hk + hv) * 4 + h * c + v + c * hv);
    EXPECT_EQ(count(*m), 17424);
    EXPECT_EQ(m->init_scaled_weights().size(), 3u);
    EXPECT_EQ(m->residual_output_weights().size(), 1u);
    EXPECT_FALSE(m->decays("conv_weight"));
    EXPECT_TRUE(m->decays("qkv_proj.weight"));
    auto g = make_mixer(c, MixerSpec{"deltanet", {{"output_gate", "true"}}}, 1);
    EXPECT_EQ(count(*g), count(*m) + hv * c);
  }
  // Gated DeltaNet defaults (fla): H = 6, H·K = 0.75 C, H·V = 1.5 C (V = 2K), swish gate.
  {
    auto m = make_mixer(c, MixerSpec{"gated_deltanet", {}}, tu::next_seed());
    const auto& cfg = static_cast<DeltaNetMixer&>(*m).config();
    EXPECT_EQ(cfg.n_heads, 6);
    EXPECT_EQ(cfg.key_dim, 48);
    EXPECT_EQ(cfg.value_dim, 96);
    EXPECT_TRUE(cfg.output_gate);
    EXPECT_EQ(names_of(*m),
              (std::vector<std::string>{"qkv_proj.weight", "conv_weight", "b_proj.weight", "A_log",
                                        "a_proj.weight", "dt_bias", "g_proj.weight",
                                        "o_norm.weight", "o_proj.weight"}));
    const int64_t hk = 48, hv = 96, h = 6, v = 16;
    EXPECT_EQ(count(*m),
              (2 * hk + hv) * c + (2 * hk + hv) * 4 + h * c + h + h * c + h + hv * c + v + c * hv);
    EXPECT_EQ(count(*m), 26140);
    EXPECT_EQ(m->init_scaled_weights().size(), 5u);
    EXPECT_FALSE(m->decays("A_log"));
    EXPECT_FALSE(m->decays("dt_bias"));
    // softplus(dt_bias) in [dt_min, dt_max]; A = exp(A_log) in [1e-4, 16].
    const Params p = params_of(*m);
    for (double b : p.at("dt_bias").to_vector<double>()) {
      const double dt = std::log1p(std::exp(b));
      EXPECT_GE(dt, 1e-3 * (1 - 1e-5));
      EXPECT_LE(dt, 1e-1 * (1 + 1e-5));
    }
    for (double a : p.at("A_log").to_vector<double>()) {
      EXPECT_GE(a, std::log(1e-4) - 1e-6);
      EXPECT_LE(a, std::log(16.0) + 1e-6);
    }
  }
  // KDA defaults (fla / Kimi Linear): H = 16, H·K = H·V = C, rank r = V for the decay and the
  // output gate, dt_bias [H·K] = 0, A = exp(A_log) ∈ [1, 16].
  {
    auto m = make_mixer(c, MixerSpec{"kda", {}}, tu::next_seed());
    const auto& cfg = static_cast<DeltaNetMixer&>(*m).config();
    EXPECT_EQ(cfg.n_heads, 16);
    EXPECT_EQ(cfg.key_dim, c);
    EXPECT_EQ(cfg.value_dim, c);
    EXPECT_EQ(cfg.gate_low_rank_dim, 4);
    EXPECT_EQ(names_of(*m),
              (std::vector<std::string>{"qkv_proj.weight", "conv_weight", "b_proj.weight", "A_log",
                                        "f_proj_a.weight", "f_proj_b.weight", "dt_bias",
                                        "g_proj_a.weight", "g_proj_b.weight", "g_proj_b.bias",
                                        "o_norm.weight", "o_proj.weight"}));
    const int64_t hk = c, hv = c, h = 16, v = 4, r = 4;
    EXPECT_EQ(count(*m), (2 * hk + hv) * c + (2 * hk + hv) * 4 + h * c + h + r * c + hk * r + hk +
                             r * c + hv * r + hv + v + c * hv);
    EXPECT_EQ(count(*m), 19348);
    EXPECT_EQ(m->init_scaled_weights().size(), 7u);
    const Params p = params_of(*m);
    for (double b : p.at("dt_bias").to_vector<double>()) EXPECT_EQ(b, 0.0);
    for (double a : p.at("A_log").to_vector<double>()) {
      EXPECT_GE(a, -1e-6);
      EXPECT_LE(a, std::log(16.0) + 1e-6);
    }
    auto r3 = make_mixer(c, MixerSpec{"kda", {{"gate_low_rank_dim", "3"}}}, 1);
    EXPECT_EQ(params_of(*r3).at("f_proj_a.weight").shape(), Shape({3, c}));
    EXPECT_EQ(params_of(*r3).at("g_proj_b.weight").shape(), Shape({c, 3}));
  }
}

TEST(DeltaMixersCpu, OptionErrors) {
  struct Bad {
    MixerSpec spec;
    std::vector<std::string> says;
  };
  const std::vector<Bad> bad = {
      {{"deltanet", {{"n_heads", "0"}}}, {"'deltanet'", "'n_heads'", "positive"}},
      {{"deltanet", {{"n_heads", "3"}}}, {"'expand_k'", "n_heads = 3"}},
      {{"deltanet", {{"conv_size", "5"}}}, {"'conv_size'", "2..4"}},
      {{"deltanet", {{"conv_size", "1"}}}, {"'conv_size'", "2..4"}},
      {{"deltanet", {{"allow_neg_eigval", "maybe"}}}, {"'allow_neg_eigval'", "true or false"}},
      {{"deltanet", {{"use_gate", "true"}}}, {"unknown option 'use_gate'"}},
      {{"gated_deltanet", {{"expand_v", "0.3"}}}, {"'gated_deltanet'", "'expand_v'"}},
      {{"gated_deltanet", {{"dt_min", "0.5"}}}, {"'dt_max'", "dt_min"}},
      {{"gated_deltanet", {{"a_init_min", "-1"}}}, {"'a_init_min'"}},
      {{"gated_deltanet", {{"a_init_max", "0"}}}, {"'a_init_max'"}},
      {{"gated_deltanet", {{"n_head", "2"}}},
       {"unknown option 'n_head'", "did you mean 'n_heads'"}},
      {{"kda", {{"gate_low_rank_dim", "0"}}}, {"'kda'", "'gate_low_rank_dim'", "positive"}},
      {{"kda", {{"a_init_min", "20"}}}, {"'a_init_max'", "a_init_min"}},
      {{"kda", {{"output_gate", "true"}}}, {"unknown option 'output_gate'"}},
      {{"gated_deltanett", {}}, {"unknown mixer 'gated_deltanett'", "did you mean"}},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.spec.type + " " + (b.spec.options.empty() ? "" : b.spec.options.begin()->first));
    std::string msg;
    EXPECT_EQ(error_kind_of([&] { make_mixer(64, b.spec, 1); }, &msg), ErrorKind::Config);
    for (const std::string& s : b.says) EXPECT_NE(msg.find(s), std::string::npos) << msg;
  }
}

// A 2-layer LM of each mixer fits one batch of random tokens (Adam written out on the masters).
TEST(DeltaMixersCpu, TinyModelOverfitsOneBatch) {
  SEQMIX_TRACE_SEED();
  const std::vector<MixerSpec> specs = {
      {"deltanet", {{"n_heads", "2"}}},
      {"gated_deltanet", {{"n_heads", "2"}}},
      {"kda", {{"n_heads", "2"}}},
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
