// train/optim on the CPU: LR schedule values at key steps and validation; AdamW against a scalar
// textbook implementation in double (several steps, weight decay on/off, clipping scale); the
// gradient clipper against an fp64 sum; non-finite gradients skip the update bitwise; state
// save/restore.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <numbers>

#include "core/error.h"
#include "tests/testing/testing.h"
#include "train/optim/adamw.h"
#include "train/optim/grad_norm.h"
#include "train/optim/schedule.h"

using namespace seqmix;

namespace {

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "expected an seqmix::Error";
  return ErrorKind::Internal;
}

ScheduleConfig sched(const std::string& kind) {
  ScheduleConfig c;
  c.kind = kind;
  c.warmup_steps = 10;
  c.total_steps = 110;
  c.lr_max = 1.0;
  c.lr_min = 0.1;
  c.decay_fraction = 0.2;
  return c;
}

// Textbook AdamW on one parameter in double.
struct RefAdam {
  std::vector<double> p, m, v;
  void step(const std::vector<float>& g, double scale, double lr, const AdamWConfig& c, bool decay,
            int64_t t) {
    for (size_t i = 0; i < p.size(); ++i) {
      const double gi = double(g[i]) * scale;
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * gi;
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * gi * gi;
      const double mh = m[i] / (1 - std::pow(c.beta1, double(t)));
      const double vh = v[i] / (1 - std::pow(c.beta2, double(t)));
      p[i] -= lr * (mh / (std::sqrt(vh) + c.eps) + (decay ? c.weight_decay : 0.0) * p[i]);
    }
  }
};

Tensor as_tensor(const std::vector<double>& v, const Shape& s) {
  return Tensor::from_vector(v, s, DType::F64);
}

std::vector<Shape> odd_shapes() {
  return {{1}, {3, 5}, {17}, {7, 129}, {40000}, {2, 3, 4}, {0, 4}, {}};
}

}  // namespace

TEST(LrSchedule, KeyStepsPerKind) {
  const double tol = 1e-12;
  for (const std::string kind : {"cosine", "linear", "wsd", "constant"}) {
    SCOPED_TRACE(kind);
    const LrSchedule s(sched(kind));
    // Warmup: lr_max * (step + 1) / warmup.
    EXPECT_NEAR(s.lr(0), 0.1, tol);
    EXPECT_NEAR(s.lr(4), 0.5, tol);
    EXPECT_NEAR(s.lr(9), 1.0, tol);
    EXPECT_NEAR(s.lr(10), 1.0, tol);  // first step after warmup: progress 0
  }
  const LrSchedule cos(sched("cosine")), lin(sched("linear")), wsd(sched("wsd")),
      cst(sched("constant"));
  EXPECT_NEAR(cos.lr(60), 0.55, 1e-12);  // halfway: (lr_max + lr_min) / 2
  EXPECT_NEAR(cos.lr(35), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-12);
  EXPECT_NEAR(cos.lr(110), 0.1, 1e-12);
  EXPECT_NEAR(cos.lr(100000), 0.1, 1e-12);
  EXPECT_NEAR(lin.lr(60), 0.55, 1e-12);
  EXPECT_NEAR(lin.lr(35), 1.0 - 0.9 * 0.25, 1e-12);
  EXPECT_NEAR(lin.lr(110), 0.1, 1e-12);
  // wsd: 22 decay steps starting at step 88.
  EXPECT_NEAR(wsd.lr(50), 1.0, 1e-12);
  EXPECT_NEAR(wsd.lr(87), 1.0, 1e-12);
  EXPECT_NEAR(wsd.lr(88), 1.0, 1e-12);
  EXPECT_NEAR(wsd.lr(99), 0.55, 1e-12);
  EXPECT_NEAR(wsd.lr(109), 1.0 - 0.9 * 21.0 / 22.0, 1e-12);
  EXPECT_NEAR(wsd.lr(110), 0.1, 1e-12);
  EXPECT_NEAR(cst.lr(60), 1.0, 1e-12);
  EXPECT_NEAR(cst.lr(5000), 1.0, 1e-12);
  // No warmup: step 0 is at lr_max; monotone non-increasing decay.
  ScheduleConfig c = sched("cosine");
  c.warmup_steps = 0;
  const LrSchedule nw(c);
  EXPECT_NEAR(nw.lr(0), 1.0, 1e-12);
  for (int64_t i = 1; i < 120; ++i) EXPECT_LE(nw.lr(i), nw.lr(i - 1));
}

TEST(LrSchedule, ValidationErrors) {
  auto bad = [](auto mutate) {
    ScheduleConfig c = sched("wsd");
    mutate(c);
    return kind_of([&] { LrSchedule s(c); });
  };
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.kind = "cosin"; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.total_steps = 0; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.warmup_steps = 111; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.warmup_steps = -1; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.lr_max = 0; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.lr_min = 2; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.decay_fraction = 0; }), ErrorKind::Config);
  EXPECT_EQ(bad([](ScheduleConfig& c) { c.decay_fraction = 0.95; }), ErrorKind::Config);
  EXPECT_EQ(kind_of([] { LrSchedule(sched("linear")).lr(-1); }), ErrorKind::Value);
  try {
    ScheduleConfig c = sched("cosine");
    c.lr_min = 5;
    LrSchedule s(c);
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("lr_min"), std::string::npos) << e.message();
  }
}

TEST(GradClipper, NormScaleAndFlagCpu) {
  SEQMIX_TRACE_SEED();
  std::vector<Tensor> grads;
  double ss = 0;
  for (const Shape& s : odd_shapes()) {
    grads.push_back(tu::randn(s, DType::F32, Device::cpu(), 0.7));
    for (float x : grads.back().to_vector<float>()) ss += double(x) * double(x);
  }
  const double norm = std::sqrt(ss);
  for (double max_norm : {0.0, -1.0, norm * 0.25, norm * 4}) {
    GradClipper clip(grads, max_norm);
    clip.compute();
    EXPECT_NEAR(clip.read_norm(), norm, 1e-6 * norm);
    const double want = max_norm > 0 ? std::min(1.0, max_norm / (norm + 1e-6)) : 1.0;
    EXPECT_NEAR(clip.read_scale(), want, 1e-6 * want);
    EXPECT_FALSE(clip.read_nonfinite());
  }
  GradClipper clip(grads, 1.0);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    const float keep = grads[4].data<float>()[12345];
    grads[4].data<float>()[12345] = bad;
    clip.compute();
    EXPECT_TRUE(clip.read_nonfinite()) << bad;
    grads[4].data<float>()[12345] = keep;
    clip.compute();
    EXPECT_FALSE(clip.read_nonfinite());
    EXPECT_NEAR(clip.read_norm(), norm, 1e-6 * norm);
  }
  // Huge finite values do not count as non-finite (fp64 squares do not overflow).
  grads[0].data<float>()[0] = 3e38f;
  clip.compute();
  EXPECT_FALSE(clip.read_nonfinite());
  EXPECT_EQ(kind_of([] { GradClipper c({}, 1.0); }), ErrorKind::Value);
  EXPECT_EQ(kind_of([] { GradClipper c({Tensor::zeros({3}, DType::F64)}, 1.0); }),
            ErrorKind::Value);
}

TEST(AdamW, MatchesTextbookDoubleCpu) {
  SEQMIX_TRACE_SEED();
  AdamWConfig cfg;
  cfg.beta1 = 0.9;
  cfg.beta2 = 0.95;
  cfg.eps = 1e-8;
  cfg.weight_decay = 0.1;
  const std::vector<Shape> shapes = odd_shapes();
  std::vector<ParamRef> refs;
  std::vector<RefAdam> ref(shapes.size());
  std::vector<Tensor> grads;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Tensor p = tu::randn(shapes[i], DType::F32);
    const Tensor g = Tensor::zeros(shapes[i], DType::F32);
    refs.push_back({p, g, i % 2 == 0, "layer" + std::to_string(i) + ".weight"});
    grads.push_back(g);
    for (float x : p.to_vector<float>()) ref[i].p.push_back(x);
    ref[i].m.assign(ref[i].p.size(), 0.0);
    ref[i].v.assign(ref[i].p.size(), 0.0);
  }
  std::vector<Tensor> p0;
  for (const ParamRef& r : refs) p0.push_back(r.param.clone());
  AdamW opt(refs, cfg);
  // Clip hard on odd steps (scale < 1), not at all on even ones.
  GradClipper tight(grads, 0.5), loose(grads, 0.0);
  const double lrs[] = {1e-2, 3e-3, 5e-2, 1e-3, 2e-2, 7e-3};
  for (int step = 0; step < 6; ++step) {
    for (Tensor& g : grads) g.copy_(tu::randn(g.shape(), DType::F32, Device::cpu(), 0.3));
    GradClipper& clip = step % 2 ? tight : loose;
    clip.compute();
    const double scale = clip.read_scale();
    if (step % 2) {
      EXPECT_LT(scale, 1.0);
    }
    opt.step(lrs[step], clip);
    for (size_t i = 0; i < shapes.size(); ++i)
      ref[i].step(grads[i].to_vector<float>(), scale, lrs[step], cfg, refs[i].decay, step + 1);
  }
  EXPECT_EQ(opt.attempted_steps(), 6);
  EXPECT_EQ(opt.read_applied_steps(), 6);
  const auto state = opt.state();
  for (size_t i = 0; i < shapes.size(); ++i) {
    SCOPED_TRACE(refs[i].name + " " + shapes[i].str());
    if (shapes[i].numel() == 0) continue;
    const Tensor want = as_tensor(ref[i].p, shapes[i]);
    // Each quantity within a relative tolerance, or, for tiny tensors whose values may sit near 0
    // (a one-element parameter made relative checks flaky), within an absolute f32-rounding one.
    auto near = [](const Tensor& got, const Tensor& ref, double rel, double abs) {
      const tu::Comparison c = tu::compare(got, ref);
      return ::testing::AssertionResult(c.nan_count == 0 && (c.rel_rms < rel || c.max_abs < abs))
             << c.str();
    };
    EXPECT_TRUE(near(refs[i].param.to(DType::F64), want, 1e-6, 1e-6));
    // The update itself (p - p0), to a tolerance set by the f32 rounding of p.
    std::vector<double> dref(ref[i].p.size()), dgot(ref[i].p.size());
    const auto pg = refs[i].param.to_vector<float>(), pz = p0[i].to_vector<float>();
    for (size_t k = 0; k < dref.size(); ++k) {
      dref[k] = ref[i].p[k] - double(pz[k]);
      dgot[k] = double(pg[k]) - double(pz[k]);
    }
    EXPECT_TRUE(near(as_tensor(dgot, shapes[i]), as_tensor(dref, shapes[i]), 2e-4, 1e-6));
    // The moments: m is an average of gradients of both signs and can be near 0 (a one-element
    // tensor made a relative check flaky), so m is held to f32 rounding of the gradients' scale
    // (|g| <= ~5 for these normal draws); v (non-negative, no cancellation) relatively.
    const tu::Comparison cm =
        tu::compare(state[2 * i].second.to(DType::F64), as_tensor(ref[i].m, shapes[i]));
    EXPECT_EQ(cm.nan_count, 0);
    EXPECT_LT(cm.max_abs, 5e-6) << cm.str();
    if (shapes[i].numel() >= 64) {
      EXPECT_LT(cm.rel_rms, 1e-5) << cm.str();
    }
    EXPECT_TRUE(
        near(state[2 * i + 1].second.to(DType::F64), as_tensor(ref[i].v, shapes[i]), 1e-6, 1e-7));
  }
}

TEST(AdamW, NonFiniteGradientSkipsStepBitwiseCpu) {
  SEQMIX_TRACE_SEED();
  const Tensor p = tu::randn({33, 65}, DType::F32), g = tu::randn({33, 65}, DType::F32);
  const Tensor p2 = tu::randn({1000}, DType::F32), g2 = tu::randn({1000}, DType::F32);
  AdamW opt({{p, g, true, "a"}, {p2, g2, false, "b"}});
  GradClipper clip({g, g2}, 1.0);
  // A clean twin that never sees the bad step.
  const Tensor q = p.clone(), q2 = p2.clone();
  AdamW twin({{q, g, true, "a"}, {q2, g2, false, "b"}});

  clip.compute();
  opt.step(1e-2, clip);
  twin.step(1e-2, clip);
  const Tensor before = p.clone(), before2 = p2.clone();
  const auto st_before = opt.state();
  std::vector<Tensor> mv_before;
  for (const auto& [k, t] : st_before) mv_before.push_back(t.clone());

  const float keep = g2.data<float>()[7];
  g2.data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
  clip.compute();
  EXPECT_TRUE(clip.read_nonfinite());
  opt.step(1e-2, clip);
  EXPECT_TRUE(tu::bitwise_equal(p, before));
  EXPECT_TRUE(tu::bitwise_equal(p2, before2));
  const auto st_after = opt.state();
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(tu::bitwise_equal(st_after[i].second, mv_before[i]));
  EXPECT_EQ(opt.attempted_steps(), 2);
  EXPECT_EQ(opt.read_applied_steps(), 1);

  // The next good step is applied as the second step (t = 2), exactly like the clean twin's.
  g2.data<float>()[7] = keep;
  g.copy_(tu::randn(g.shape(), DType::F32));
  clip.compute();
  opt.step(2e-2, clip);
  twin.step(2e-2, clip);
  EXPECT_EQ(opt.read_applied_steps(), 2);
  EXPECT_EQ(twin.read_applied_steps(), 2);
  EXPECT_TRUE(tu::bitwise_equal(p, q));
  EXPECT_TRUE(tu::bitwise_equal(p2, q2));
  EXPECT_FALSE(tu::bitwise_equal(p, before));
}

TEST(AdamW, StateRoundTripAndErrorsCpu) {
  SEQMIX_TRACE_SEED();
  auto make = [](Tensor& p, Tensor& g, Tensor& p2, Tensor& g2) {
    return AdamW({{p, g, true, "x.w"}, {p2, g2, false, "x.b"}});
  };
  Tensor p = tu::randn({5, 7}, DType::F32), g = tu::randn({5, 7}, DType::F32);
  Tensor p2 = tu::randn({7}, DType::F32), g2 = tu::randn({7}, DType::F32);
  AdamW a = make(p, g, p2, g2);
  for (int i = 0; i < 3; ++i) a.step(1e-2);
  Tensor q = p.clone(), q2 = p2.clone();
  AdamW b = make(q, g, q2, g2);
  std::vector<std::pair<std::string, Tensor>> st;
  for (const auto& [k, t] : a.state()) st.emplace_back(k, t.clone());
  b.load_state(st);
  EXPECT_EQ(b.attempted_steps(), 3);
  EXPECT_EQ(b.read_applied_steps(), 3);
  a.step(3e-3);
  b.step(3e-3);
  EXPECT_TRUE(tu::bitwise_equal(p, q));
  EXPECT_TRUE(tu::bitwise_equal(p2, q2));

  auto without = [&](const std::string& key) {
    std::vector<std::pair<std::string, Tensor>> s;
    for (const auto& e : st)
      if (e.first != key) s.push_back(e);
    return s;
  };
  for (const std::string key : {"m.x.w", "v.x.b", "step", "attempted_steps"}) {
    try {
      b.load_state(without(key));
      ADD_FAILURE() << "missing " << key << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Checkpoint);
      EXPECT_NE(e.message().find(key), std::string::npos) << e.message();
    }
  }
  auto wrong = st;
  for (auto& [k, t] : wrong)
    if (k == "v.x.w") t = Tensor::zeros({7, 5}, DType::F32);
  EXPECT_EQ(kind_of([&] { b.load_state(wrong); }), ErrorKind::Checkpoint);

  // Construction errors name the parameter.
  try {
    AdamW bad({{p, Tensor::zeros({5, 6}, DType::F32), true, "enc.w"}});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Value);
    EXPECT_NE(e.message().find("enc.w"), std::string::npos) << e.message();
  }
  EXPECT_EQ(kind_of([&] {
              AdamW bad({{p, g, true, "a"}, {p2, g2, true, "a"}});
            }),
            ErrorKind::Value);
  EXPECT_EQ(kind_of([&] { AdamW bad({{p.to(DType::F64), g, true, "a"}}); }), ErrorKind::Value);
  EXPECT_EQ(kind_of([&] { a.step(-1.0); }), ErrorKind::Value);
}
