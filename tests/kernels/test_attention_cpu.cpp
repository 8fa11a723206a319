// Softmax attention on the CPU: the reference's gradients against fp64 finite differences
// (causal, non-causal, sliding window, GQA), the reference against a second formulation from
// generic autograd ops (matmul + additive mask + softmax) for o, lse and every gradient, exact
// edge cases, and the validation errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "core/error.h"
#include "kernels/attention/attention.h"
#include "kernels/softmax/softmax.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using V = std::vector<Variable>;

namespace {

Tensor r(const Shape& s, DType t = DType::F64) {
  return tu::rand_uniform(s, t, -1.5, 1.5);
}

std::string name_of(const AttentionOptions& o, int64_t h, int64_t hkv) {
  return std::string(o.causal ? "causal" : "full") + " window=" + std::to_string(o.window) +
         " H=" + std::to_string(h) + " Hkv=" + std::to_string(hkv);
}

// [T, T] additive mask: 0 where query i sees key j, -1e30 elsewhere (exp underflows to exactly 0).
Tensor mask_bias(int64_t t, const AttentionOptions& o) {
  std::vector<double> m(size_t(t * t), 0.0);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < t; ++j) {
      const bool vis = (!o.causal || j <= i) && (o.window == 0 || j > i - o.window);
      if (!vis) m[size_t(i * t + j)] = -1e30;
    }
  return Tensor::from_vector(m, {t, t});
}

// [B, T, Hkv, D] -> [B, H, T, D] with each kv head repeated for its group of query heads.
Variable heads_first(const Variable& x, int64_t h) {
  const int64_t b = x.size(0), t = x.size(1), hkv = x.size(2), d = x.size(3);
  Variable y = permute(x, {0, 2, 1, 3});  // [B, Hkv, T, D]
  if (hkv == h) return y;
  y = expand(unsqueeze(y, 2), {b, hkv, h / hkv, t, d});
  return reshape(y, {b, h, t, d});
}

// The second formulation: scores by matmul, additive mask, softmax, matmul. Returns {o, lse}.
V naive(const Variable& q, const Variable& k, const Variable& v, const AttentionOptions& o) {
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), d = q.size(3);
  const Variable qh = permute(q, {0, 2, 1, 3});
  const Variable kh = heads_first(k, h), vh = heads_first(v, h);
  Variable s = matmul(qh, transpose(kh, -1, -2)) * attention_scale(o.scale, d);
  s = s + Variable(mask_bias(t, o));
  const Variable out = permute(matmul(softmax(s, -1), vh), {0, 2, 1, 3});
  (void)b;
  return {reshape(contiguous(out), {b, t, h, d}), logsumexp(s, -1)};
}

const std::vector<AttentionOptions> kOptions = {
    {0, true, 0}, {0, false, 0}, {0, true, 3}, {0.7, true, 1}, {0.3, false, 0}};

}  // namespace

TEST(AttentionCpu, GradcheckReference) {
  SEQMIX_TRACE_SEED();
  for (const AttentionOptions& o : kOptions) {
    for (const auto& [h, hkv] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}, {3, 1}}) {
      SCOPED_TRACE(name_of(o, h, hkv));
      const int64_t b = 2, t = 5, d = 3;
      const GradcheckResult res =
          gradcheck([o](const V& x) { return V{attention(x[0], x[1], x[2], o)}; },
                    {r({b, t, h, d}), r({b, t, hkv, d}), r({b, t, hkv, d})});
      EXPECT_TRUE(res.ok) << res.message;
      EXPECT_EQ(res.checked, b * t * d * (h + 2 * hkv));
    }
  }
}

TEST(AttentionCpu, MatchesSecondFormulation) {
  SEQMIX_TRACE_SEED();
  for (const AttentionOptions& o : kOptions) {
    for (const auto& [h, hkv] : {std::pair<int64_t, int64_t>{2, 2}, {4, 1}, {6, 2}}) {
      for (int64_t t : {1, 7, 16}) {
        SCOPED_TRACE(name_of(o, h, hkv) + " T=" + std::to_string(t));
        const int64_t b = 2, d = 5;
        const Tensor q = r({b, t, h, d}), k = r({b, t, hkv, d}), v = r({b, t, hkv, d});
        const Tensor w = tu::randn({b, t, h, d}, DType::F64);
        Variable qa(q.clone(), true), ka(k.clone(), true), va(v.clone(), true);
        Variable qb(q.clone(), true), kb(k.clone(), true), vb(v.clone(), true);
        const Variable oa = attention(qa, ka, va, o);
        const V nb = naive(qb, kb, vb, o);
        EXPECT_TRUE(tu::close(oa.data(), nb[0].data(), 1e-12)) << "o";
        // lse through the dispatcher.
        AttentionFwdArgs fa{
            q,       k,        v,       q.empty_like(), Tensor::empty({b, h, t}, DType::F64),
            o.scale, o.causal, o.window};
        attention_fwd(fa);
        EXPECT_TRUE(tu::close(fa.o, nb[0].data(), 1e-12)) << "o (args)";
        EXPECT_TRUE(tu::close(fa.lse, nb[1].data(), 1e-12)) << "lse";
        sum(mul(oa, Variable(w))).backward();
        sum(mul(nb[0], Variable(w))).backward();
        EXPECT_TRUE(tu::close(qa.grad(), qb.grad(), 1e-11)) << "dq";
        EXPECT_TRUE(tu::close(ka.grad(), kb.grad(), 1e-11)) << "dk";
        EXPECT_TRUE(tu::close(va.grad(), vb.grad(), 1e-11)) << "dv";
      }
    }
  }
}

TEST(AttentionCpu, LowPrecisionInputsAndPartialGradients) {
  SEQMIX_TRACE_SEED();
  const int64_t b = 2, t = 9, h = 4, hkv = 2, d = 8;
  const AttentionOptions o{0, true, 4};
  const Tensor q = r({b, t, h, d}), k = r({b, t, hkv, d}), v = r({b, t, hkv, d});
  const Tensor ref = attention(Variable(q), Variable(k), Variable(v), o).data();
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    // The inputs rounded to dt, computed in fp64, must match the dt path to output rounding.
    const Tensor ql = q.to(dt), kl = k.to(dt), vl = v.to(dt);
    const Tensor exact = attention(Variable(ql.to(DType::F64)), Variable(kl.to(DType::F64)),
                                   Variable(vl.to(DType::F64)), o)
                             .data();
    const Tensor got = attention(Variable(ql), Variable(kl), Variable(vl), o).data();
    EXPECT_EQ(got.dtype(), dt);
    EXPECT_TRUE(tu::close(got.to(DType::F64), exact, dt == DType::F32 ? 1e-6 : 5e-3));
    EXPECT_TRUE(tu::close(got.to(DType::F64), ref, dt == DType::F32 ? 1e-5 : 2e-2));
  }
  // Only q requires a gradient: dk / dv are not computed, dq equals the full backward's dq.
  const Tensor w = tu::randn({b, t, h, d}, DType::F64);
  Variable q1(q.clone(), true), q2(q.clone(), true), k2(k.clone(), true);
  sum(mul(attention(q1, Variable(k), Variable(v), o), Variable(w))).backward();
  sum(mul(attention(q2, k2, Variable(v), o), Variable(w))).backward();
  EXPECT_TRUE(tu::bitwise_equal(q1.grad(), q2.grad()));
}

TEST(AttentionCpu, ExactEdgeCases) {
  SEQMIX_TRACE_SEED();
  // window = 1: each query sees only its own key, so o = v of its kv head and lse = s_ii.
  const int64_t b = 2, t = 6, h = 4, hkv = 2, d = 3;
  const Tensor q = r({b, t, h, d}), k = r({b, t, hkv, d}), v = r({b, t, hkv, d});
  AttentionFwdArgs fa{q, k, v, q.empty_like(), Tensor::empty({b, h, t}, DType::F64), 0, true, 1};
  attention_fwd(fa);
  const auto ov = fa.o.to_vector<double>(), vv = v.to_vector<double>();
  const auto lv = fa.lse.to_vector<double>(), qv = q.to_vector<double>(),
             kv = k.to_vector<double>();
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t i = 0; i < t; ++i)
      for (int64_t hi = 0; hi < h; ++hi) {
        const int64_t g = hi / (h / hkv);
        double s = 0;
        for (int64_t x = 0; x < d; ++x) {
          ASSERT_EQ(ov[size_t(((bi * t + i) * h + hi) * d + x)],
                    vv[size_t(((bi * t + i) * hkv + g) * d + x)]);
          s += qv[size_t(((bi * t + i) * h + hi) * d + x)] *
               kv[size_t(((bi * t + i) * hkv + g) * d + x)];
        }
        EXPECT_NEAR(lv[size_t((bi * h + hi) * t + i)], s / std::sqrt(3.0), 1e-12);
      }
  // A window at least T equals plain causal attention.
  const AttentionOptions wide{0, true, t}, causal{0, true, 0};
  EXPECT_TRUE(tu::bitwise_equal(attention(Variable(q), Variable(k), Variable(v), wide).data(),
                                attention(Variable(q), Variable(k), Variable(v), causal).data()));
}

TEST(AttentionCpu, RejectsBadArguments) {
  const Variable q(r({2, 5, 4, 8})), k(r({2, 5, 2, 8})), v(r({2, 5, 2, 8}));
  auto expect_error = [](auto&& f, const std::string& needle, ErrorKind kind = ErrorKind::Value) {
    try {
      f();
      ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind) << e.message();
      EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
    }
  };
  expect_error([&] { attention(Variable(r({2, 5, 32})), k, v); }, "'q'");
  expect_error([&] { attention(q, Variable(r({2, 5, 2, 7})), v); }, "'k'");
  expect_error([&] { attention(q, Variable(r({2, 4, 2, 8})), v); }, "'k'");
  expect_error([&] { attention(q, k, Variable(r({2, 5, 1, 8}))); }, "'v'");
  expect_error(
      [&] {
        attention(q, Variable(r({2, 5, 3, 8})), Variable(r({2, 5, 3, 8})));
      },
      "kv heads");
  expect_error([&] { attention(q, k, Variable(v.data().to(DType::F32))); }, "'v'");
  expect_error([&] { attention(q, k, v, {0, false, 4}); }, "window");
  expect_error([&] { attention(q, k, v, {0, true, -1}); }, "window");
  expect_error([&] { attention(q, k, v, {-1.0, true, 0}); }, "scale");
  // Wrong output / lse shapes and dtypes through the args API.
  AttentionFwdArgs fa{q.data(), k.data(), v.data(), Tensor::empty({2, 5, 4, 7}, DType::F64),
                      Tensor()};
  expect_error([&] { attention_fwd(fa); }, "'o'");
  fa.o = q.data().empty_like();
  fa.lse = Tensor::empty({2, 5, 4}, DType::F64);
  expect_error([&] { attention_fwd(fa); }, "'lse'");
  fa.lse = Tensor::empty({2, 4, 5}, DType::F32);
  expect_error([&] { attention_fwd(fa); }, "'lse'");
  fa.lse = Tensor();
  fa.k = k.data().transpose(1, 2).contiguous().transpose(1, 2);  // right shape, not contiguous
  expect_error([&] { attention_fwd(fa); }, "contiguous");
  // A CPU request is always supported.
  EXPECT_TRUE(
      attention_supports(AttentionFwdArgs{q.data(), k.data(), v.data(), Tensor(), Tensor()}).ok);
}
