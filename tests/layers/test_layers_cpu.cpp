// layers/ on the CPU: module names and state dicts, gradients of Linear / SwiGLU / block against
// fp64 finite differences, rotary against its direct formula, the attention mixer against the
// decomposed attention, the language model (shapes, loss at init, gradients, tied head, dropout),
// a tiny LM overfitting one batch, and mixer option errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "core/check.h"
#include "kernels/attention/attention.h"
#include "layers/language_model.h"
#include "layers/linear.h"
#include "layers/mixers/attention.h"
#include "layers/mixers/mixer.h"
#include "layers/rotary.h"
#include "tests/layers/module_grads.h"
#include "tests/layers/overfit.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using namespace seqmix::nn;
using seqmix::tu::check_module_grads;
using seqmix::tu::error_kind_of;

namespace {

MixerSpec attn(std::map<std::string, std::string> opts = {{"n_heads", "2"}}) {
  return MixerSpec{"attention", std::move(opts)};
}

LmConfig tiny_config(int64_t layers = 2, int64_t d = 32, int64_t vocab = 16) {
  LmConfig c;
  c.vocab_size = vocab;
  c.d_model = d;
  c.layers.assign(size_t(layers), attn());
  c.mlp_hidden = 64;
  c.init_seed = tu::next_seed();
  return c;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

TEST(ModuleCpu, NamedParametersAreStableAndOrdered) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config();
  c.tie_embeddings = false;
  LanguageModel m(c);
  std::vector<std::string> want = {"embedding.weight"};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* n : {"mixer_norm.weight", "mixer.q_proj.weight", "mixer.k_proj.weight",
                          "mixer.v_proj.weight", "mixer.o_proj.weight", "mlp_norm.weight",
                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"})
      want.push_back(b + n);
  }
  want.push_back("norm.weight");
  want.push_back("head.weight");
  std::vector<std::string> got;
  for (const auto& [n, v] : m.named_parameters()) {
    got.push_back(n);
    EXPECT_EQ(v.dtype(), DType::F32) << n;
    EXPECT_TRUE(v.requires_grad()) << n;
    EXPECT_TRUE(v.is_leaf()) << n;
  }
  EXPECT_EQ(got, want);
  EXPECT_TRUE(m.decays("blocks.1.mixer.q_proj.weight"));
  EXPECT_TRUE(m.decays("head.weight"));
  EXPECT_FALSE(m.decays("blocks.0.mlp_norm.weight"));
  EXPECT_FALSE(m.decays("norm.weight"));
  EXPECT_THROW(m.decays("blocks.7.mixer.q_proj.weight"), Error);
  // V*C (embedding) + V*C (head) + C (final norm) + per layer 2C + 4 C^2 + 3 C*64.
  const int64_t C = 32, V = 16;
  EXPECT_EQ(m.num_parameters(), 2 * V * C + C + 2 * (2 * C + 4 * C * C + 3 * C * 64));
  // Same seed: same values; a different seed: different values.
  LanguageModel same(c);
  c.init_seed += 1;
  LanguageModel other(c);
  const auto a = m.state_dict(), b = same.state_dict(), d = other.state_dict();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(tu::bitwise_equal(a[i].second, b[i].second)) << a[i].first;
    if (m.decays(a[i].first)) {
      EXPECT_FALSE(tu::bitwise_equal(a[i].second, d[i].second)) << a[i].first;
    }
  }
}

TEST(ModuleCpu, InitStatistics) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config(4, 64, 512);
  c.init_std = 0.05;
  LanguageModel m(c);
  auto stdev = [](const Tensor& t) {
    double s = 0;
    for (double v : t.to_vector<double>()) s += v * v;
    return std::sqrt(s / double(t.numel()));
  };
  for (const auto& [n, v] : m.named_parameters()) {
    SCOPED_TRACE(n);
    if (n.find("norm") != std::string::npos) {
      EXPECT_EQ(max_abs(add(v, -1.0).data()), 0.0);
      continue;
    }
    const bool out =
        n.find("o_proj") != std::string::npos || n.find("down_proj") != std::string::npos;
    const double want = c.init_std / (out ? std::sqrt(2.0 * 4) : 1.0);
    EXPECT_NEAR(stdev(v.data()), want, 0.1 * want);
  }
}

TEST(ModuleCpu, StateDictRoundTripAndErrors) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config();
  LanguageModel a(c);
  c.init_seed += 1;
  LanguageModel b(c);
  const Tensor tokens = tu::randint({2, 7}, 0, c.vocab_size);
  const ForwardContext ctx{DType::F32, false, nullptr};
  std::vector<std::pair<std::string, Tensor>> sd;
  for (const auto& [n, t] : a.state_dict()) sd.emplace_back(n, t.clone());
  EXPECT_FALSE(tu::bitwise_equal(a.logits(tokens, ctx).data(), b.logits(tokens, ctx).data()));
  const auto b_params = b.parameters();
  b.load_state_dict(sd);
  EXPECT_TRUE(b.parameters()[3].is_same(b_params[3]));  // loaded in place
  EXPECT_TRUE(tu::bitwise_equal(a.logits(tokens, ctx).data(), b.logits(tokens, ctx).data()));
  // Casting: an f64 state dict loads into f32 parameters.
  std::vector<std::pair<std::string, Tensor>> sd64;
  for (const auto& [n, t] : sd) sd64.emplace_back(n, t.to(DType::F64));
  b.load_state_dict(sd64);
  EXPECT_TRUE(tu::bitwise_equal(a.logits(tokens, ctx).data(), b.logits(tokens, ctx).data()));

  std::string msg;
  auto missing = sd;
  missing.erase(missing.begin() + 3);
  EXPECT_EQ(error_kind_of([&] { b.load_state_dict(missing); }, &msg), ErrorKind::Checkpoint);
  EXPECT_NE(msg.find(sd[3].first), std::string::npos) << msg;
  EXPECT_NO_THROW(b.load_state_dict(missing, /*strict=*/false));

  auto unexpected = sd;
  unexpected.emplace_back("blocks.9.mixer.q_proj.weight", Tensor::zeros({2}, DType::F32));
  EXPECT_EQ(error_kind_of([&] { b.load_state_dict(unexpected); }, &msg), ErrorKind::Checkpoint);
  EXPECT_NE(msg.find("blocks.9.mixer.q_proj.weight"), std::string::npos) << msg;
  EXPECT_NO_THROW(b.load_state_dict(unexpected, /*strict=*/false));

  auto misshaped = sd;
  misshaped[5].second = Tensor::zeros({3, 3}, DType::F32);
  const Tensor before = b.state_dict()[0].second.clone();
  EXPECT_EQ(error_kind_of([&] { b.load_state_dict(misshaped, false); }, &msg),
            ErrorKind::Checkpoint);
  EXPECT_NE(msg.find(sd[5].first), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 3]"), std::string::npos) << msg;
  // Nothing was written by the failed load.
  EXPECT_TRUE(tu::bitwise_equal(b.state_dict()[0].second, before));
}

TEST(LayersCpu, LinearGradients) {
  SEQMIX_TRACE_SEED();
  for (bool bias : {false, true}) {
    Linear lin(5, 3, bias, 0.5, tu::next_seed());
    lin.to(DType::F64);
    if (bias) lin.bias().data().copy_(tu::randn({3}, DType::F64));
    check_module_grads(
        lin, [&](const Variable& x) { return lin.forward(x); }, tu::randn({2, 4, 5}, DType::F64));
    // Value against the direct formula.
    const Tensor x = tu::randn({4, 5}, DType::F64);
    const auto y = lin.forward(Variable(x)).data().to_vector<double>();
    const auto w = lin.weight().data().to_vector<double>(), xv = x.to_vector<double>();
    for (int i = 0; i < 4; ++i)
      for (int o = 0; o < 3; ++o) {
        double s = bias ? lin.bias().data().to_vector<double>()[size_t(o)] : 0.0;
        for (int k = 0; k < 5; ++k) s += xv[size_t(i * 5 + k)] * w[size_t(o * 5 + k)];
        EXPECT_NEAR(y[size_t(i * 3 + o)], s, 1e-12);
      }
  }
}

TEST(LayersCpu, SwiGLUAndNormGradients) {
  SEQMIX_TRACE_SEED();
  SwiGLU mlp(6, 8, 0.5, 0.5, tu::next_seed());
  mlp.to(DType::F64);
  check_module_grads(
      mlp, [&](const Variable& x) { return mlp.forward(x); }, tu::randn({2, 3, 6}, DType::F64));
  RMSNorm norm(6);
  norm.to(DType::F64);
  norm.weight().data().copy_(tu::randn({6}, DType::F64));
  check_module_grads(
      norm, [&](const Variable& x) { return norm.forward(x); }, tu::randn({3, 6}, DType::F64));
  EXPECT_EQ(default_swiglu_hidden(256), 704);  // ceil(682.67) -> 683 -> 704
  EXPECT_EQ(default_swiglu_hidden(96), 256);
}

TEST(LayersCpu, BlockGradients) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config(1, 8, 5);
  c.layers = {attn({{"n_heads", "2"}, {"n_kv_heads", "1"}, {"qkv_bias", "true"}})};
  c.mlp_hidden = 8;
  c.init_std = 0.3;
  Block block(c, 0, 1);
  block.to(DType::F64);
  for (const auto& [n, v] : block.named_parameters())  // non-trivial norm weights and biases
    if (!block.decays(n)) v.data().copy_(tu::rand_uniform(v.shape(), DType::F64, 0.5, 1.5));
  const ForwardContext ctx{DType::F64, true, nullptr};
  check_module_grads(
      block, [&](const Variable& x) { return block.forward(x, ctx); },
      tu::randn({2, 5, 8}, DType::F64));
}

// A block with the Zoology-style short convolution before the mixer: gradients of every parameter
// (conv weight and bias included) against finite differences, and the conv is causal: changing
// the input at step t leaves the outputs before t unchanged.
TEST(LayersCpu, BlockWithShortConvGradientsAndCausality) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config(1, 8, 5);
  c.layers = {attn({{"n_heads", "2"}})};
  c.mlp = false;
  c.short_conv = 3;
  c.init_std = 0.3;
  Block block(c, 0, 1);
  block.to(DType::F64);
  std::vector<std::string> names;
  for (const auto& [n, v] : block.named_parameters()) names.push_back(n);
  EXPECT_NE(std::find(names.begin(), names.end(), "conv_weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "conv_bias"), names.end());
  const ForwardContext ctx{DType::F64, true, nullptr};
  const Tensor x = tu::randn({2, 6, 8}, DType::F64);
  check_module_grads(
      block, [&](const Variable& v) { return block.forward(v, ctx); }, x);
  const Tensor y0 = block.forward(Variable(x), ctx).data();
  Tensor x2 = x.clone();
  x2.narrow(1, 4, 1).fill_(3.0);
  const Tensor y1 = block.forward(Variable(x2), ctx).data();
  const auto a = y0.to_vector<double>(), b = y1.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {  // [2, 6, 8] row-major: step = (i / 8) % 6
    if ((i / 8) % 6 < 4) {
      EXPECT_EQ(a[i], b[i]) << i;
    }
  }
  EXPECT_NE(a[2 * 48 - 1], b[2 * 48 - 1]);  // the last step of the second sequence changed
}

TEST(LayersCpu, RotaryMatchesDirectFormula) {
  SEQMIX_TRACE_SEED();
  const int64_t B = 2, T = 5, H = 3, D = 8;
  const double theta = 500.0;
  Rotary rope(D, theta);
  for (int64_t start : {0, 7}) {
    const Tensor x = tu::randn({B, T, H, D}, DType::F64);
    const auto y = rope.apply(Variable(x), start).data().to_vector<double>();
    const auto xv = x.to_vector<double>();
    double err = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < H; ++h) {
          const size_t base = size_t(((b * T + t) * H + h) * D);
          for (int64_t i = 0; i < D / 2; ++i) {
            const double a = double(t + start) / std::pow(theta, 2.0 * double(i) / double(D));
            const double x1 = xv[base + size_t(i)], x2 = xv[base + size_t(i + D / 2)];
            err = std::max(err,
                           std::abs(y[base + size_t(i)] - (x1 * std::cos(a) - x2 * std::sin(a))));
            err = std::max(
                err, std::abs(y[base + size_t(i + D / 2)] - (x2 * std::cos(a) + x1 * std::sin(a))));
          }
        }
    EXPECT_LT(err, 1e-12) << "start " << start;
  }
  // Position 0 is the identity; the rotation preserves norms; gradients are right.
  const Tensor x = tu::randn({1, 1, 2, D}, DType::F64);
  EXPECT_TRUE(tu::bitwise_equal(rope.apply(Variable(x)).data(), x));
  const GradcheckResult r =
      gradcheck([&](const std::vector<Variable>& v) { return std::vector{rope.apply(v[0], 3)}; },
                {tu::randn({2, 4, 2, D}, DType::F64)});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_THROW(Rotary(7), Error);
}

TEST(AttentionMixerCpu, FusedMatchesDecomposed) {
  SEQMIX_TRACE_SEED();
  struct Case {
    int64_t h, hkv, t, window;
  };
  for (const Case& k : {Case{2, 2, 7, 0}, Case{4, 2, 9, 0}, Case{4, 1, 6, 3}, Case{2, 2, 1, 0}}) {
    SCOPED_TRACE(::testing::Message()
                 << "H=" << k.h << " Hkv=" << k.hkv << " T=" << k.t << " window=" << k.window);
    const int64_t D = 4;
    MixerSpec s = attn({{"n_heads", std::to_string(k.h)},
                        {"n_kv_heads", std::to_string(k.hkv)},
                        {"head_dim", std::to_string(D)},
                        {"window", std::to_string(k.window)}});
    auto mix = make_mixer(12, s, tu::next_seed());
    mix->to(DType::F64);
    const ForwardContext ctx{DType::F64, true, nullptr};
    // (At T = 1 the softmax has one entry: q and k rightly have no effect.)
    check_module_grads(
        *mix, [&](const Variable& x) { return mix->forward(x, ctx); },
        tu::randn({2, k.t, 12}, DType::F64), 1e-6, /*every_param_matters=*/k.t > 1);
    // The attention core: fused op (the mixer's path) vs the decomposed formulation.
    const Tensor q = tu::randn({2, k.t, k.h, D}, DType::F64),
                 kk = tu::randn({2, k.t, k.hkv, D}, DType::F64),
                 v = tu::randn({2, k.t, k.hkv, D}, DType::F64);
    Variable q1(q, true), k1(kk, true), v1(v, true), q2(q.clone(), true), k2(kk.clone(), true),
        v2(v.clone(), true);
    const Tensor w = tu::randn(q.shape(), DType::F64);
    const AttentionConfig& ac = static_cast<AttentionMixer&>(*mix).config();
    EXPECT_EQ(ac.window, k.window);
    AttentionOptions opt;
    opt.window = k.window;
    Variable o1 = attention(q1, k1, v1, opt);
    Variable o2 = attention_decomposed(q2, k2, v2, 0.0, k.window);
    sum(mul(o1, Variable(w))).backward();
    sum(mul(o2, Variable(w))).backward();
    EXPECT_TRUE(tu::close(o1.data(), o2.data(), 1e-12));
    EXPECT_TRUE(tu::close(q1.grad(), q2.grad(), 1e-12));
    EXPECT_TRUE(tu::close(k1.grad(), k2.grad(), 1e-12));
    EXPECT_TRUE(tu::close(v1.grad(), v2.grad(), 1e-12));
    // Direct check of the decomposed form on one query row: the last position of batch 0, head 0.
    const auto qv = q.to_vector<double>(), kv = kk.to_vector<double>(), vv = v.to_vector<double>();
    const int64_t i = k.t - 1;
    std::vector<double> s_row;
    double mx = -1e300;
    for (int64_t j = 0; j <= i; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d)
        dot += qv[size_t((i * k.h) * D + d)] * kv[size_t((j * k.hkv) * D + d)];
      const bool in = k.window == 0 || i - j < k.window;
      s_row.push_back(in ? dot / std::sqrt(double(D)) : -1e300);
      mx = std::max(mx, s_row.back());
    }
    double z = 0;
    for (double& e : s_row) z += (e = std::exp(e - mx));
    const auto o2v = o2.data().to_vector<double>();
    for (int64_t d = 0; d < D; ++d) {
      double o = 0;
      for (int64_t j = 0; j <= i; ++j) o += s_row[size_t(j)] / z * vv[size_t((j * k.hkv) * D + d)];
      EXPECT_NEAR(o2v[size_t((i * k.h) * D + d)], o, 1e-12);
    }
  }
}

TEST(LanguageModelCpu, ShapesLossAtInitAndGradients) {
  SEQMIX_TRACE_SEED();
  const LmConfig c = tiny_config(2, 32, 37);
  LanguageModel m(c);
  const Tensor tokens = tu::randint({3, 11}, 0, c.vocab_size);
  Tensor targets = tu::randint({3, 11}, 0, c.vocab_size);
  targets.narrow(1, 0, 2).fill_(-100);
  const ForwardContext ctx;
  const Variable logits = m.logits(tokens, ctx);
  EXPECT_EQ(logits.shape(), Shape({3, 11, 37}));
  EXPECT_EQ(logits.dtype(), DType::F32);
  const Variable loss = m.loss(tokens, targets, ctx);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_EQ(loss.dtype(), DType::F32);
  // Near chance: the tied head adds a small bias toward the input token.
  EXPECT_NEAR(loss.data().item(), std::log(37.0), 0.15);
  loss.backward();
  for (const auto& [n, v] : m.named_parameters()) {
    ASSERT_TRUE(v.grad().defined()) << n;
    EXPECT_EQ(v.grad().dtype(), DType::F32) << n;
    const double g = max_abs(v.grad());
    EXPECT_TRUE(std::isfinite(g) && g > 0) << n << " grad max " << g;
  }
  // F64 compute gives the same loss to f32 precision.
  const Variable l64 = m.loss(tokens, targets, ForwardContext{DType::F64, true, nullptr});
  EXPECT_EQ(l64.dtype(), DType::F64);
  EXPECT_NEAR(l64.data().item(), loss.data().item(), 1e-5);
  EXPECT_THROW(m.logits(tu::randint({3}, 0, 5), ctx), Error);
}

// loss_at (the head on the labelled rows only) equals loss() with every other target ignored:
// the same value and the same gradient for every parameter, tied and untied heads, f64.
TEST(LanguageModelCpu, LossAtLabelledRowsEqualsFullLoss) {
  SEQMIX_TRACE_SEED();
  for (bool tie : {true, false}) {
    LmConfig c = tiny_config(2, 32, 37);
    c.tie_embeddings = tie;
    LanguageModel full(c), sparse(c);
    const Tensor tokens = tu::randint({3, 11}, 0, c.vocab_size);
    const Tensor labels = tu::randint({3, 11}, 0, c.vocab_size);
    Tensor targets = Tensor::full({3, 11}, -100.0, DType::I64);
    std::vector<int64_t> rows, row_targets;
    const auto lv = labels.to_vector<int64_t>();
    for (int64_t i : {1, 5, 11, 12, 20, 32}) {  // a few positions of each example
      rows.push_back(i);
      row_targets.push_back(lv[size_t(i)]);
      targets.view({33}).narrow(0, i, 1).fill_(double(lv[size_t(i)]));
    }
    const ForwardContext ctx{DType::F64, true, nullptr};
    const Variable a = full.loss(tokens, targets, ctx);
    const Variable b = sparse.loss_at(tokens, Tensor::from_vector(rows, {6}),
                                      Tensor::from_vector(row_targets, {6}), ctx);
    EXPECT_NEAR(a.data().item(), b.data().item(), 1e-12);
    a.backward();
    b.backward();
    const auto pa = full.named_parameters(), pb = sparse.named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      const Tensor ga = pa[i].second.grad(), gb = pb[i].second.grad();
      ASSERT_TRUE(ga.defined() && gb.defined()) << pa[i].first;
      EXPECT_LE(max_abs(ops::sub(ga, gb)), 1e-12 * (1 + max_abs(ga))) << pa[i].first;
    }
    EXPECT_THROW(sparse.loss_at(tokens, Tensor::from_vector(rows, {6}), Tensor(), ctx), Error);
  }
}

TEST(LanguageModelCpu, TiedAndUntiedHead) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config(1, 16, 20);
  LanguageModel tied(c);
  c.tie_embeddings = false;
  LanguageModel untied(c);
  EXPECT_EQ(untied.num_parameters() - tied.num_parameters(), 20 * 16);
  // Tokens 0..9 only: rows 10..19 of the embedding get a gradient only through a tied head.
  const Tensor tokens = tu::randint({2, 6}, 0, 10), targets = tu::randint({2, 6}, 0, 20);
  for (LanguageModel* m : {&tied, &untied}) {
    m->loss(tokens, targets, ForwardContext{}).backward();
    const Tensor g = m->named_parameters()[0].second.grad().narrow(0, 10, 10);
    if (m == &tied)
      EXPECT_GT(max_abs(g), 0.0);
    else
      EXPECT_EQ(max_abs(g), 0.0);
  }
}

TEST(LanguageModelCpu, DropoutFollowsContext) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config(2, 16, 11);
  c.dropout = 0.3;
  LanguageModel m(c);
  c.dropout = 0.0;
  LanguageModel plain(c);
  const Tensor tokens = tu::randint({2, 9}, 0, 11), targets = tu::randint({2, 9}, 0, 11);
  Generator g1(tu::next_seed()), g2(g1.seed());
  const double eval = m.loss(tokens, targets, {DType::F32, false, nullptr}).data().item();
  EXPECT_EQ(eval, plain.loss(tokens, targets, {DType::F32, true, nullptr}).data().item());
  const double t1 = m.loss(tokens, targets, {DType::F32, true, &g1}).data().item();
  const double t2 = m.loss(tokens, targets, {DType::F32, true, &g2}).data().item();
  EXPECT_EQ(t1, t2);  // same generator state, same masks
  EXPECT_NE(t1, eval);
  EXPECT_GT(g1.offset(), 0u);
  m.train(false);
  EXPECT_EQ(m.loss(tokens, targets, {DType::F32, true, &g1}).data().item(), eval);
  m.train(true);
  EXPECT_EQ(error_kind_of([&] {
              m.loss(tokens, targets, {DType::F32, true, nullptr});
            }),
            ErrorKind::Usage);
}

TEST(LanguageModelCpu, TinyModelOverfitsOneBatch) {
  SEQMIX_TRACE_SEED();
  LmConfig c = tiny_config(2, 32, 16);
  LanguageModel m(c);
  const tu::OverfitResult r = tu::overfit_one_batch(m, 16, 400);
  std::printf("overfit: loss %.3f -> %.4f in %d steps\n", r.first, r.last, r.steps);
  EXPECT_NEAR(r.first, std::log(16.0), 0.1);
  EXPECT_LT(r.last, 0.1) << "after " << r.steps << " steps";
}

TEST(MixerTableCpu, OptionsAndErrors) {
  SEQMIX_TRACE_SEED();
  ASSERT_NE(find_mixer("attention"), nullptr);
  EXPECT_EQ(find_mixer("nope"), nullptr);
  for (const MixerEntry& e : mixer_table()) {
    SCOPED_TRACE(e.name);
    EXPECT_FALSE(e.doc.empty());
    for (const MixerOptionDoc& o : e.options) {
      EXPECT_TRUE(o.type == "int" || o.type == "float" || o.type == "bool" || o.type == "string")
          << o.key;
      EXPECT_FALSE(o.doc.empty()) << o.key;
    }
    // Every documented default parses (an empty spec builds).
    EXPECT_NO_THROW(e.make(64, MixerSpec{e.name, {}}, 1));
  }
  auto made = make_mixer(64, attn({{"n_heads", "8"}, {"n_kv_heads", "2"}}), 1);
  const AttentionConfig& ac = static_cast<AttentionMixer&>(*made).config();
  EXPECT_EQ(ac.head_dim, 8);
  EXPECT_EQ(ac.n_kv_heads, 2);
  EXPECT_TRUE(ac.rotary);
  EXPECT_EQ(ac.rope_theta, 10000.0);

  struct Bad {
    MixerSpec spec;
    std::vector<std::string> says;
  };
  const std::vector<Bad> bad = {
      {attn({{"n_head", "4"}}),
       {"'attention'", "unknown option 'n_head'", "did you mean 'n_heads'"}},
      {attn({{"n_heads", "four"}}), {"'n_heads'", "integer", "four"}},
      {attn({{"n_heads", "4"}, {"n_kv_heads", "3"}}), {"'n_kv_heads'", "divide"}},
      {attn({{"n_heads", "5"}}), {"'n_heads'", "d_model"}},
      {attn({{"rotary", "maybe"}}), {"'rotary'", "true or false", "maybe"}},
      {attn({{"rope_theta", "1e5x"}}), {"'rope_theta'"}},
      {attn({{"window", "-1"}}), {"'window'"}},
      {attn({{"head_dim", "7"}}), {"'head_dim'", "even"}},
      {attn({{"qqq", "1"}}), {"unknown option 'qqq'"}},
      {MixerSpec{"atention", {}}, {"unknown mixer 'atention'", "did you mean 'attention'"}},
  };
  for (const Bad& b : bad) {
    std::string msg;
    EXPECT_EQ(error_kind_of([&] { make_mixer(64, b.spec, 1); }, &msg), ErrorKind::Config);
    for (const std::string& s : b.says) EXPECT_NE(msg.find(s), std::string::npos) << msg;
  }
  EXPECT_EQ(edit_distance("n_head", "n_heads"), 1);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3);
  EXPECT_EQ(nearest_name("zzzzzz", {"n_heads", "window"}), "");
  // The model raises Config for a bad layer too.
  LmConfig c = tiny_config(1);
  c.layers = {attn({{"n_head", "2"}})};
  EXPECT_EQ(error_kind_of([&] { LanguageModel m(c); }), ErrorKind::Config);
}

// docs/mixers.md documents every registered mixer type and every one of its options, with the
// code's default (tests run from the repository root).
TEST(MixerTableCpu, EveryMixerAndOptionIsDocumented) {
  std::ifstream in("docs/mixers.md");
  ASSERT_TRUE(in.good()) << "docs/mixers.md missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const nn::MixerEntry& e : nn::mixer_table()) {
    const auto sec = doc.find("## `" + e.name + "`");
    ASSERT_NE(sec, std::string::npos) << "no section for mixer '" << e.name << "'";
    const auto end = doc.find("\n## ", sec + 1);
    const std::string body =
        doc.substr(sec, end == std::string::npos ? std::string::npos : end - sec);
    for (const nn::MixerOptionDoc& o : e.options)
      EXPECT_NE(body.find("| `" + o.key + "` | " + o.type + " | " + o.default_value + " |"),
                std::string::npos)
          << e.name << "." << o.key << " (" << o.type << ", default " << o.default_value
          << ") is not in docs/mixers.md";
  }
}
