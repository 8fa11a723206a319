// Short causal depthwise conv on the CPU: the reference's gradients against fp64 finite
// differences (widths 2..4, SiLU on/off, bias on/off, state0 + a loss using state_t, cu_seqlens),
// the reference against a second formulation from generic autograd ops (pad + slices + mul + sum)
// for y, state_t and every gradient, state passing (one call == two calls carrying the state,
// values and gradients), varlen == a per-sequence loop, and the validation errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "core/error.h"
#include "kernels/short_conv/short_conv.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using V = std::vector<Variable>;

namespace {

Tensor r(const Shape& s, DType t = DType::F64) {
  return tu::rand_uniform(s, t, -1.5, 1.5);
}

Tensor cu_of(const std::vector<int64_t>& o) {
  return Tensor::from_vector(o, {int64_t(o.size())});
}

// sum(<y, gy>) + sum(<st, gs>): a scalar loss touching every output.
Variable loss(const Variable& y, const Tensor& gy, const Variable& st, const Tensor& gs) {
  Variable l = sum(y * Variable(gy));
  if (st.defined()) l = l + sum(st * Variable(gs));
  return l;
}

// The second formulation for a batch of equal-length sequences: xe = cat(state0 | 0, x) along T,
// z = bias + sum_i xe[:, i : i + T] * weight[:, i], y = silu(z) or z, state_t = xe[:, T:].
V naive(const Variable& x, const Variable& w, const Variable& b, const Variable& s0, bool silu_on) {
  const int64_t bsz = x.size(0), t = x.size(1), c = x.size(2), width = w.size(1);
  const Variable pad = s0.defined() ? s0 : Variable(Tensor::zeros({bsz, width - 1, c}, x.dtype()));
  const Variable xe = cat({pad, x}, 1);
  Variable z = b.defined() ? Variable(b) : Variable(Tensor::zeros({c}, x.dtype()));
  for (int64_t i = 0; i < width; ++i) z = z + slice(xe, 1, i, i + t) * select(w, 1, i);
  const Variable y = silu_on ? silu(z) : z;
  return {y, slice(xe, 1, t, t + width - 1)};
}

struct GradCase {
  int64_t w;
  bool silu, bias;
  int mode;  // 0: batched, no state; 1: batched with state0 and state_t; 2: cu_seqlens + states
  std::string str() const {
    return "W=" + std::to_string(w) + (silu ? " silu" : "") + (bias ? " bias" : "") +
           " mode=" + std::to_string(mode);
  }
};

}  // namespace

TEST(ShortConvCpu, GradcheckReference) {
  SEQMIX_TRACE_SEED();
  for (int64_t w : {2, 3, 4})
    for (bool s : {false, true})
      for (bool b : {false, true})
        for (int mode : {0, 1, 2}) {
          const GradCase gc{w, s, b, mode};
          SCOPED_TRACE(gc.str());
          const int64_t c = 3;
          // Varlen: an empty sequence and one shorter than W - 1.
          const Tensor cu = mode == 2 ? cu_of({0, 3, 3, 4, 9}) : Tensor();
          const int64_t bsz = mode == 2 ? 1 : 2, t = mode == 2 ? 9 : 5, n = mode == 2 ? 4 : 2;
          std::vector<Tensor> in{r({bsz, t, c}), r({c, w})};
          in.push_back(b ? r({c}) : Tensor::zeros({c}, DType::F64));
          in.push_back(r({n, w - 1, c}));
          const bool states = mode != 0;
          const GradcheckResult res = gradcheck(
              [&](const V& v) {
                const auto [y, st] = short_conv(v[0], v[1], b ? v[2] : Variable(),
                                                states ? v[3] : Variable(), cu, s, states);
                return states ? V{y, st} : V{y};
              },
              in, {true, true, b, states});
          EXPECT_TRUE(res.ok) << res.message;
          EXPECT_EQ(res.checked,
                    bsz * t * c + c * w + (b ? c : 0) + (states ? n * (w - 1) * c : 0));
        }
}

TEST(ShortConvCpu, MatchesGenericOps) {
  SEQMIX_TRACE_SEED();
  for (DType dt : {DType::F64, DType::F32})
    for (int64_t w : {2, 3, 4})
      for (bool s : {false, true})
        for (bool b : {false, true})
          for (bool st0 : {false, true}) {
            SCOPED_TRACE(std::string(dtype_name(dt)) + " W=" + std::to_string(w) +
                         (s ? " silu" : "") + (b ? " bias" : "") + (st0 ? " state0" : ""));
            const int64_t bsz = 3, t = 17, c = 5;
            const Tensor x = r({bsz, t, c}, dt), wt = r({c, w}, DType::F32),
                         bt = r({c}, DType::F32), s0 = r({bsz, w - 1, c}, dt);
            const Tensor gy = r({bsz, t, c}, dt), gs = r({bsz, w - 1, c}, dt);
            Variable x1(x, true), w1(wt, true), b1(bt, true), s1(s0, true);
            const auto [y1, st1] =
                short_conv(x1, w1, b ? b1 : Variable(), st0 ? s1 : Variable(), {}, s, true);
            loss(y1, gy, st1, gs).backward();
            // The generic path computes in f64 from the same values.
            Variable x2(x.to(DType::F64), true), w2(wt.to(DType::F64), true),
                b2(bt.to(DType::F64), true), s2(s0.to(DType::F64), true);
            const V o2 = naive(x2, w2, b ? b2 : Variable(), st0 ? s2 : Variable(), s);
            loss(o2[0], gy.to(DType::F64), o2[1], gs.to(DType::F64)).backward();
            const double tol = tu::tol_for(dt);
            EXPECT_TRUE(tu::close(y1.data(), o2[0].data(), tol)) << "y";
            EXPECT_TRUE(tu::close(st1.data(), o2[1].data(), tol)) << "state_t";
            EXPECT_TRUE(tu::close(x1.grad(), x2.grad(), tol)) << "dx";
            EXPECT_TRUE(tu::close(w1.grad(), w2.grad(), tol)) << "dweight";
            EXPECT_EQ(w1.grad().dtype(), DType::F32);
            if (b) {
              EXPECT_TRUE(tu::close(b1.grad(), b2.grad(), tol)) << "dbias";
            }
            if (st0) {
              EXPECT_TRUE(tu::close(s1.grad(), s2.grad(), tol)) << "dstate0";
            }
          }
}

TEST(ShortConvCpu, StatePassing) {
  SEQMIX_TRACE_SEED();
  for (int64_t w : {2, 3, 4})
    for (int64_t t1 : {1, 2, 6}) {
      SCOPED_TRACE("W=" + std::to_string(w) + " T1=" + std::to_string(t1));
      const int64_t bsz = 2, t = 11, c = 4;
      const Tensor x = r({bsz, t, c}), wt = r({c, w}), bt = r({c}), s0 = r({bsz, w - 1, c});
      const Tensor gy = r({bsz, t, c}), gs = r({bsz, w - 1, c});
      // One call over [0, T).
      Variable xa(x, true), wa(wt, true), ba(bt, true), sa(s0, true);
      const auto [ya, sta] = short_conv(xa, wa, ba, sa, {}, true, true);
      loss(ya, gy, sta, gs).backward();
      // Two calls, [0, T1) then [T1, T), the second starting from the first's final state.
      Variable xb(x, true), wb(wt, true), bb(bt, true), sb(s0, true);
      const auto [y1, st1] = short_conv(slice(xb, 1, 0, t1), wb, bb, sb, {}, true, true);
      const auto [y2, st2] = short_conv(slice(xb, 1, t1, t), wb, bb, st1, {}, true, true);
      const Variable yb = cat({y1, y2}, 1);
      loss(yb, gy, st2, gs).backward();
      EXPECT_TRUE(tu::close(yb.data(), ya.data(), 1e-12)) << "y";
      EXPECT_TRUE(tu::close(st2.data(), sta.data(), 1e-12)) << "state_t";
      EXPECT_TRUE(tu::close(xb.grad(), xa.grad(), 1e-12)) << "dx";
      EXPECT_TRUE(tu::close(wb.grad(), wa.grad(), 1e-12)) << "dweight";
      EXPECT_TRUE(tu::close(bb.grad(), ba.grad(), 1e-12)) << "dbias";
      EXPECT_TRUE(tu::close(sb.grad(), sa.grad(), 1e-12)) << "dstate0";
    }
}

TEST(ShortConvCpu, VarlenEqualsPerSequenceLoop) {
  SEQMIX_TRACE_SEED();
  const std::vector<int64_t> offs{0, 5, 6, 6, 13, 15};
  const int64_t n = int64_t(offs.size()) - 1, t = offs.back(), c = 6;
  for (int64_t w : {2, 3, 4})
    for (bool s : {false, true}) {
      SCOPED_TRACE("W=" + std::to_string(w) + (s ? " silu" : ""));
      const Tensor x = r({1, t, c}), wt = r({c, w}), bt = r({c}), s0 = r({n, w - 1, c});
      const Tensor gy = r({1, t, c}), gs = r({n, w - 1, c});
      Variable xa(x, true), wa(wt, true), ba(bt, true), sa(s0, true);
      const auto [ya, sta] = short_conv(xa, wa, ba, sa, cu_of(offs), s, true);
      loss(ya, gy, sta, gs).backward();
      Variable xb(x, true), wb(wt, true), bb(bt, true), sb(s0, true);
      V ys, sts;
      for (int64_t i = 0; i < n; ++i) {
        const auto [yi, sti] = short_conv(slice(xb, 1, offs[size_t(i)], offs[size_t(i) + 1]), wb,
                                          bb, narrow(sb, 0, i, 1), {}, s, true);
        if (yi.size(1) > 0) ys.push_back(yi);
        sts.push_back(sti);
      }
      const Variable yb = cat(ys, 1), stb = cat(sts, 0);
      loss(yb, gy, stb, gs).backward();
      EXPECT_TRUE(tu::close(ya.data(), yb.data(), 1e-12)) << "y";
      EXPECT_TRUE(tu::close(sta.data(), stb.data(), 1e-12)) << "state_t";
      EXPECT_TRUE(tu::close(xa.grad(), xb.grad(), 1e-12)) << "dx";
      EXPECT_TRUE(tu::close(wa.grad(), wb.grad(), 1e-12)) << "dweight";
      EXPECT_TRUE(tu::close(ba.grad(), bb.grad(), 1e-12)) << "dbias";
      EXPECT_TRUE(tu::close(sa.grad(), sb.grad(), 1e-12)) << "dstate0";
    }
}

TEST(ShortConvCpu, ZeroStateEqualsNoState) {
  SEQMIX_TRACE_SEED();
  const Tensor x = r({2, 7, 3}), wt = r({3, 4});
  const auto [ya, sa] = short_conv(Variable(x), Variable(wt), {}, {}, {}, true, true);
  const auto [yb, sb] = short_conv(Variable(x), Variable(wt), {},
                                   Variable(Tensor::zeros({2, 3, 3}, DType::F64)), {}, true, true);
  EXPECT_TRUE(tu::bitwise_equal(ya.data(), yb.data()));
  EXPECT_TRUE(tu::bitwise_equal(sa.data(), sb.data()));
  // state_t is the last W - 1 inputs.
  EXPECT_TRUE(tu::bitwise_equal(sa.data(), x.slice(1, 4, 7).contiguous()));
}

TEST(ShortConvCpu, Errors) {
  auto expect_value = [](const std::string& what, const std::string& operand, auto&& f) {
    try {
      f();
      ADD_FAILURE() << what << ": expected Error(Value)";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Value) << what << ": " << e.message();
      EXPECT_NE(e.message().find(operand), std::string::npos)
          << what << ": the message should name '" << operand << "': " << e.message();
    }
  };
  const Variable x(r({2, 5, 3})), w(r({3, 3})), b(r({3}));
  expect_value("width 5", "weight", [&] { short_conv(x, Variable(r({3, 5})), b, {}, {}, false); });
  expect_value("width 1", "weight", [&] { short_conv(x, Variable(r({3, 1})), b, {}, {}, false); });
  expect_value("weight channels", "weight", [&] {
    short_conv(x, Variable(r({4, 3})), b, {}, {}, false);
  });
  expect_value("weight dtype", "weight", [&] {
    short_conv(x, Variable(r({3, 3}, DType::BF16)), b, {}, {}, false);
  });
  expect_value("bias shape", "bias", [&] { short_conv(x, w, Variable(r({4})), {}, {}, false); });
  expect_value("x 2-d", "x", [&] { short_conv(Variable(r({5, 3})), w, b, {}, {}, false); });
  expect_value("state0 shape", "state0", [&] {
    short_conv(x, w, b, Variable(r({2, 3, 3})), {}, false);
  });
  expect_value("state0 dtype", "state0", [&] {
    short_conv(x, w, b, Variable(r({2, 2, 3}, DType::F32)), {}, false);
  });
  const Variable xp(r({1, 5, 3}));
  expect_value("cu_seqlens with B=2", "cu_seqlens", [&] {
    short_conv(x, w, b, {}, cu_of({0, 2, 5}), false);
  });
  expect_value("cu_seqlens end", "cu_seqlens", [&] {
    short_conv(xp, w, b, {}, cu_of({0, 2, 4}), false);
  });
  expect_value("cu_seqlens order", "cu_seqlens", [&] {
    short_conv(xp, w, b, {}, cu_of({0, 3, 2, 5}), false);
  });
  expect_value("cu_seqlens dtype", "cu_seqlens", [&] {
    short_conv(xp, w, b, {}, Tensor::from_vector(std::vector<int32_t>{0, 5}, {2}), false);
  });
  expect_value("state0 vs cu_seqlens", "state0", [&] {
    short_conv(xp, w, b, Variable(r({1, 2, 3})), cu_of({0, 2, 5}), false);
  });
}
