// Gated linear attention on the CPU, for every gate mode (none, head_const, head_scalar,
// key_vector): the reference's gradients against fp64 finite differences (q, k, v, g, h0 through a
// loss that also uses the final state; batched and packed with cu_seqlens, including an empty
// sequence), the reference against a second formulation (the materialised quadratic form
// o = scale (Q Kᵀ ⊙ D) V with the decay tensor D from cumulative log-gates, plus the h0 / ht terms,
// built from generic autograd ops) for o, ht and every gradient, state passing (one call == two
// calls carrying the state, values and gradients), varlen == a per-sequence loop, bf16 / f32
// inputs against fp64, the reference's chunked checkpointing across sequences longer than 64
// steps, and the validation errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "core/error.h"
#include "kernels/gla/gla.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using V = std::vector<Variable>;

namespace {

const GlaGate kGates[] = {GlaGate::None, GlaGate::HeadConst, GlaGate::HeadScalar,
                          GlaGate::KeyVector};

bool has_g(GlaGate g) {
  return g != GlaGate::None;
}
bool learnable(GlaGate g) {
  return g == GlaGate::HeadScalar || g == GlaGate::KeyVector;
}

// Log-gates for `gate` in [lo, 0) (fp64 unless told), shaped per gla.h.
Tensor make_g(GlaGate gate, int64_t b, int64_t t, int64_t h, int64_t k, double lo = -1.0,
              DType dt = DType::F64) {
  switch (gate) {
    case GlaGate::None:
      return Tensor();
    case GlaGate::HeadConst:
      return tu::rand_uniform({h}, dt, lo, -0.05);
    case GlaGate::HeadScalar:
      return tu::rand_uniform({b, t, h}, dt, lo, 0.0);
    case GlaGate::KeyVector:
      return tu::rand_uniform({b, t, h, k}, dt, lo, 0.0);
  }
  return Tensor();
}

struct Inputs {
  Tensor q, k, v, g, h0;
};

Inputs make_inputs(GlaGate gate, int64_t b, int64_t t, int64_t h, int64_t k, int64_t v, int64_t n,
                   DType dt = DType::F64) {
  Inputs x;
  x.q = tu::randn({b, t, h, k}, dt);
  x.k = tu::randn({b, t, h, k}, dt);
  x.v = tu::randn({b, t, h, v}, dt);
  x.g = make_g(gate, b, t, h, k);
  x.h0 = tu::randn({n, h, k, v}, DType::F64);
  return x;
}

// Full [B, T, H, K] log-gates from g (generic ops, so gradients flow back to g).
Variable full_log_gates(const Variable& g, GlaGate gate, int64_t b, int64_t t, int64_t h,
                        int64_t k) {
  switch (gate) {
    case GlaGate::None:
      return Variable(Tensor::zeros({b, t, h, k}, DType::F64));
    case GlaGate::HeadConst:
      return expand(reshape(g, {1, 1, h, 1}), {b, t, h, k});
    case GlaGate::HeadScalar:
      return expand(unsqueeze(g, 3), {b, t, h, k});
    case GlaGate::KeyVector:
      return g;
  }
  return Variable();
}

// The quadratic form (batched, no cu_seqlens). With a_t = Σ_{s≤t} g_s (per key dim i):
//   o_t  = scale Σ_{s≤t} Σ_i q_t[i] k_s[i] exp(a_t[i] - a_s[i]) v_s + scale (q_t ⊙ exp(a_t)) h0
//   ht   = exp(a_T) ⊙ h0 + Σ_s (k_s ⊙ exp(a_T - a_s))ᵀ v_s
V quadratic(const Variable& q, const Variable& k, const Variable& v, const Variable& g,
            const Variable& h0, GlaGate gate, double scale) {
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), kd = q.size(3);
  const Variable gl = permute(full_log_gates(g, gate, b, t, h, kd), {0, 2, 1, 3});  // [B,H,T,K]
  std::vector<double> lower(size_t(t * t), 0.0);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j <= i; ++j) lower[size_t(i * t + j)] = 1.0;
  const Tensor tri = Tensor::from_vector(lower, {t, t});
  const Variable a = matmul(Variable(tri.expand({b, h, t, t}).contiguous()), gl);  // cumsum
  const Variable qh = permute(q, {0, 2, 1, 3}), kh = permute(k, {0, 2, 1, 3}),
                 vh = permute(v, {0, 2, 1, 3});
  // D[t, s, i] = exp(a_t[i] - a_s[i]) for s <= t, else 0.
  const Variable diff = unsqueeze(a, 3) - unsqueeze(a, 2);  // [B, H, T, T, K]
  const Tensor mask = tri.reshape({1, 1, t, t, 1}).expand({b, h, t, t, kd}).contiguous();
  const Variable dec = exp(diff) * Variable(mask);
  const Variable att = sum(unsqueeze(qh, 3) * unsqueeze(kh, 2) * dec, -1);  // [B, H, T, T]
  Variable o = matmul(att, vh) + matmul(qh * exp(a), h0);
  o = permute(o * scale, {0, 2, 1, 3});
  const Variable at = select(a, 2, t - 1);       // [B, H, K]
  const Variable w = exp(unsqueeze(at, 2) - a);  // [B, H, T, K]
  const Variable ht = unsqueeze(exp(at), 3) * h0 + matmul(transpose(kh * w, 2, 3), vh);
  return {contiguous(o), ht};
}

std::string gname(GlaGate g) {
  return std::string("gate=") + gla_gate_name(g);
}

void expect_error(const std::function<void()>& f, const std::string& needle,
                  ErrorKind kind = ErrorKind::Value) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.message();
    EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
  }
}

}  // namespace

TEST(GlaCpu, GradcheckReference) {
  SEQMIX_TRACE_SEED();
  for (GlaGate gate : kGates) {
    for (bool packed : {false, true}) {
      SCOPED_TRACE(gname(gate) + (packed ? " packed" : " batched"));
      const int64_t h = 2, k = 3, v = 4;
      const int64_t b = packed ? 1 : 2, t = packed ? 9 : 5;
      Tensor cu;
      if (packed) cu = Tensor::from_vector(std::vector<int64_t>{0, 4, 4, 9}, {4});
      const int64_t n = packed ? 3 : b;
      const Inputs x = make_inputs(gate, b, t, h, k, v, n);
      std::vector<Tensor> in{x.q, x.k, x.v, x.h0};
      std::vector<bool> diff{true, true, true, true};
      if (has_g(gate)) {
        in.push_back(x.g);
        diff.push_back(learnable(gate));
      }
      const GlaOptions opt{gate, 0.7, GlaAlgo::Auto};
      const GradcheckResult res = gradcheck(
          [&](const V& a) {
            const Variable g = a.size() > 4 ? a[4] : Variable();
            auto [o, ht] = gla(a[0], a[1], a[2], g, a[3], cu, opt, true);
            return V{o, ht};
          },
          in, diff);
      EXPECT_TRUE(res.ok) << res.message;
      int64_t expect = 2 * b * t * h * k + b * t * h * v + n * h * k * v;
      if (learnable(gate)) expect += x.g.numel();
      EXPECT_EQ(res.checked, expect);
    }
  }
}

TEST(GlaCpu, MatchesQuadraticForm) {
  SEQMIX_TRACE_SEED();
  for (GlaGate gate : kGates) {
    for (int64_t t : {1, 7, 16}) {
      SCOPED_TRACE(gname(gate) + " T=" + std::to_string(t));
      const int64_t b = 2, h = 3, k = 5, v = 6;
      const double scale = t == 7 ? 0.3 : 0;
      const Inputs x = make_inputs(gate, b, t, h, k, v, b);
      const Tensor wo = tu::randn({b, t, h, v}, DType::F64),
                   wh = tu::randn({b, h, k, v}, DType::F64);
      const bool gg = learnable(gate);
      Variable qa(x.q.clone(), true), ka(x.k.clone(), true), va(x.v.clone(), true),
          ha(x.h0.clone(), true), ga = has_g(gate) ? Variable(x.g.clone(), gg) : Variable();
      Variable qb(x.q.clone(), true), kb(x.k.clone(), true), vb(x.v.clone(), true),
          hb(x.h0.clone(), true), gb = has_g(gate) ? Variable(x.g.clone(), gg) : Variable();
      auto [oa, hta] = gla(qa, ka, va, ga, ha, Tensor(), GlaOptions{gate, scale}, true);
      const V nb = quadratic(qb, kb, vb, gb, hb, gate, gla_scale(scale, k));
      EXPECT_TRUE(tu::close(oa.data(), nb[0].data(), 1e-11)) << "o";
      EXPECT_TRUE(tu::close(hta.data(), nb[1].data(), 1e-11)) << "ht";
      (sum(oa * Variable(wo)) + sum(hta * Variable(wh))).backward();
      (sum(nb[0] * Variable(wo)) + sum(nb[1] * Variable(wh))).backward();
      EXPECT_TRUE(tu::close(qa.grad(), qb.grad(), 1e-10)) << "dq";
      EXPECT_TRUE(tu::close(ka.grad(), kb.grad(), 1e-10)) << "dk";
      EXPECT_TRUE(tu::close(va.grad(), vb.grad(), 1e-10)) << "dv";
      EXPECT_TRUE(tu::close(ha.grad(), hb.grad(), 1e-10)) << "dh0";
      if (gg) {
        EXPECT_TRUE(tu::close(ga.grad(), gb.grad(), 1e-10)) << "dg";
      }
    }
  }
}

// One call over [0, T) equals two calls [0, T1), [T1, T) with the final state of the first as
// the initial state of the second: outputs, final state and every gradient (through autograd).
TEST(GlaCpu, StatePassing) {
  SEQMIX_TRACE_SEED();
  for (GlaGate gate : kGates) {
    SCOPED_TRACE(gname(gate));
    const int64_t b = 2, t = 150, t1 = 67, h = 2, k = 8, v = 5;
    const Inputs x = make_inputs(gate, b, t, h, k, v, b);
    const Tensor wo = tu::randn({b, t, h, v}, DType::F64), wh = tu::randn({b, h, k, v}, DType::F64);
    const bool gg = learnable(gate);
    const GlaOptions opt{gate, 0};
    Variable qa(x.q.clone(), true), ka(x.k.clone(), true), va(x.v.clone(), true),
        ha(x.h0.clone(), true), ga = has_g(gate) ? Variable(x.g.clone(), gg) : Variable();
    Variable qb(x.q.clone(), true), kb(x.k.clone(), true), vb(x.v.clone(), true),
        hb(x.h0.clone(), true), gb = has_g(gate) ? Variable(x.g.clone(), gg) : Variable();
    auto [oa, hta] = gla(qa, ka, va, ga, ha, Tensor(), opt, true);
    auto part = [&](const Variable& y, int64_t s, int64_t len) { return narrow(y, 1, s, len); };
    auto gpart = [&](int64_t s, int64_t len) {
      return gate == GlaGate::None || gate == GlaGate::HeadConst ? gb : part(gb, s, len);
    };
    auto [o1, h1] = gla(part(qb, 0, t1), part(kb, 0, t1), part(vb, 0, t1), gpart(0, t1), hb,
                        Tensor(), opt, true);
    auto [o2, h2] = gla(part(qb, t1, t - t1), part(kb, t1, t - t1), part(vb, t1, t - t1),
                        gpart(t1, t - t1), h1, Tensor(), opt, true);
    const Variable ob = cat({o1, o2}, 1);
    EXPECT_TRUE(tu::close(ob.data(), oa.data(), 1e-12)) << "o";
    EXPECT_TRUE(tu::close(h2.data(), hta.data(), 1e-12)) << "ht";
    (sum(oa * Variable(wo)) + sum(hta * Variable(wh))).backward();
    (sum(ob * Variable(wo)) + sum(h2 * Variable(wh))).backward();
    EXPECT_TRUE(tu::close(qb.grad(), qa.grad(), 1e-12)) << "dq";
    EXPECT_TRUE(tu::close(kb.grad(), ka.grad(), 1e-12)) << "dk";
    EXPECT_TRUE(tu::close(vb.grad(), va.grad(), 1e-12)) << "dv";
    EXPECT_TRUE(tu::close(hb.grad(), ha.grad(), 1e-12)) << "dh0";
    if (gg) {
      EXPECT_TRUE(tu::close(gb.grad(), ga.grad(), 1e-12)) << "dg";
    }
  }
}

// Packed sequences (cu_seqlens, lengths 3, 0, 70, 1, 66: checkpoint boundaries inside) equal a
// per-sequence loop of separate calls, for the forward and the backward through the args API.
TEST(GlaCpu, VarlenEqualsPerSequenceLoop) {
  SEQMIX_TRACE_SEED();
  const std::vector<int64_t> cu_v{0, 3, 3, 73, 74, 140};
  const int64_t t = cu_v.back(), n = int64_t(cu_v.size()) - 1, h = 2, k = 6, v = 7;
  const Tensor cu = Tensor::from_vector(cu_v, {n + 1});
  for (GlaGate gate : kGates) {
    SCOPED_TRACE(gname(gate));
    const Inputs x = make_inputs(gate, 1, t, h, k, v, n);
    const Tensor dout = tu::randn({1, t, h, v}, DType::F64);
    const Tensor dht = tu::randn({n, h, k, v}, DType::F64);
    GlaFwdArgs f{x.q, x.k, x.v, x.g, x.h0, cu, x.v.empty_like(), x.h0.empty_like(), gate};
    gla_fwd(f);
    GlaBwdArgs bw;
    bw.q = x.q;
    bw.k = x.k;
    bw.v = x.v;
    bw.g = x.g;
    bw.h0 = x.h0;
    bw.cu_seqlens = cu;
    bw.dout = dout;
    bw.dht = dht;
    bw.dq = x.q.empty_like();
    bw.dk = x.k.empty_like();
    bw.dv = x.v.empty_like();
    if (learnable(gate)) bw.dg = x.g.empty_like();
    bw.dh0 = x.h0.empty_like();
    bw.gate = gate;
    gla_bwd(bw);
    for (int64_t s = 0; s < n; ++s) {
      SCOPED_TRACE("sequence " + std::to_string(s));
      const int64_t b0 = cu_v[size_t(s)], len = cu_v[size_t(s) + 1] - b0;
      auto seg = [&](const Tensor& y) { return y.narrow(1, b0, len).contiguous(); };
      auto st = [&](const Tensor& y) { return y.narrow(0, s, 1).contiguous(); };
      GlaFwdArgs f1{seg(x.q), seg(x.k), seg(x.v), Tensor(), st(x.h0),
                    Tensor(), Tensor(), Tensor(), gate};
      if (gate == GlaGate::HeadConst) f1.g = x.g;
      if (learnable(gate)) f1.g = seg(x.g);
      f1.o = f1.v.empty_like();
      f1.ht = f1.h0.empty_like();
      gla_fwd(f1);
      if (len > 0) {
        EXPECT_TRUE(tu::close(f1.o, seg(f.o), 1e-13)) << "o";
      }
      EXPECT_TRUE(tu::close(f1.ht, st(f.ht), 1e-13)) << "ht";
      GlaBwdArgs b1;
      b1.q = f1.q;
      b1.k = f1.k;
      b1.v = f1.v;
      b1.g = f1.g;
      b1.h0 = f1.h0;
      b1.dout = seg(dout);
      b1.dht = st(dht);
      b1.dq = f1.q.empty_like();
      b1.dk = f1.k.empty_like();
      b1.dv = f1.v.empty_like();
      if (learnable(gate)) b1.dg = f1.g.empty_like();
      b1.dh0 = f1.h0.empty_like();
      b1.gate = gate;
      gla_bwd(b1);
      if (len > 0) {
        EXPECT_TRUE(tu::close(b1.dq, seg(bw.dq), 1e-13)) << "dq";
        EXPECT_TRUE(tu::close(b1.dk, seg(bw.dk), 1e-13)) << "dk";
        EXPECT_TRUE(tu::close(b1.dv, seg(bw.dv), 1e-13)) << "dv";
        if (learnable(gate)) {
          EXPECT_TRUE(tu::close(b1.dg, seg(bw.dg), 1e-13)) << "dg";
        }
      }
      EXPECT_TRUE(tu::close(b1.dh0, st(bw.dh0), 1e-13)) << "dh0";
    }
  }
}

// An empty sequence passes the state through: ht = h0 and dh0 = dht exactly.
TEST(GlaCpu, EmptySequencePassesStateThrough) {
  SEQMIX_TRACE_SEED();
  const Tensor cu = Tensor::from_vector(std::vector<int64_t>{0, 0, 2}, {3});
  const Inputs x = make_inputs(GlaGate::KeyVector, 1, 2, 1, 3, 2, 2);
  GlaFwdArgs f{
      x.q, x.k, x.v, x.g, x.h0, cu, x.v.empty_like(), x.h0.empty_like(), GlaGate::KeyVector};
  gla_fwd(f);
  EXPECT_TRUE(tu::bitwise_equal(f.ht.narrow(0, 0, 1), x.h0.narrow(0, 0, 1)));
  GlaBwdArgs b;
  b.q = x.q;
  b.k = x.k;
  b.v = x.v;
  b.g = x.g;
  b.h0 = x.h0;
  b.cu_seqlens = cu;
  b.dout = tu::randn(x.v.shape(), DType::F64);
  b.dht = tu::randn(x.h0.shape(), DType::F64);
  b.dh0 = x.h0.empty_like();
  b.gate = GlaGate::KeyVector;
  gla_bwd(b);
  EXPECT_TRUE(tu::bitwise_equal(b.dh0.narrow(0, 0, 1), b.dht.narrow(0, 0, 1)));
}

// bf16 / f32 inputs: the reference accumulates in fp64 whatever the input dtype, so the result
// equals the fp64 computation on the rounded inputs up to the output rounding.
TEST(GlaCpu, LowPrecisionInputs) {
  SEQMIX_TRACE_SEED();
  const int64_t b = 2, t = 80, h = 2, k = 16, v = 8;
  for (GlaGate gate : kGates) {
    for (DType dt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(gname(gate) + " " + dtype_name(dt));
      const Inputs x = make_inputs(gate, b, t, h, k, v, b);
      const Tensor ql = x.q.to(dt), kl = x.k.to(dt), vl = x.v.to(dt);
      const Tensor gl = x.g.defined() ? x.g.to(DType::F32) : Tensor();
      const Tensor hl = x.h0.to(DType::F32), dl = tu::randn({b, t, h, v}, dt);
      GlaFwdArgs lo{ql, kl, vl, gl, hl, Tensor(), vl.empty_like(), hl.empty_like(), gate};
      gla_fwd(lo);
      GlaFwdArgs ex{ql.to(DType::F64),
                    kl.to(DType::F64),
                    vl.to(DType::F64),
                    gl.defined() ? gl.to(DType::F64) : Tensor(),
                    hl.to(DType::F64),
                    Tensor(),
                    Tensor(),
                    Tensor(),
                    gate};
      ex.o = ex.v.empty_like();
      ex.ht = ex.h0.empty_like();
      gla_fwd(ex);
      EXPECT_EQ(lo.o.dtype(), dt);
      const double tol = dt == DType::F32 ? 1e-6 : 5e-3;
      EXPECT_TRUE(tu::close(lo.o.to(DType::F64), ex.o, tol)) << "o";
      EXPECT_TRUE(tu::close(lo.ht.to(DType::F64), ex.ht, 1e-6)) << "ht";
      GlaBwdArgs bl;
      bl.q = ql;
      bl.k = kl;
      bl.v = vl;
      bl.g = gl;
      bl.h0 = hl;
      bl.dout = dl;
      bl.dq = ql.empty_like();
      bl.dg = learnable(gate) ? gl.empty_like() : Tensor();
      bl.dh0 = hl.empty_like();
      bl.gate = gate;
      gla_bwd(bl);
      GlaBwdArgs be = bl;
      be.q = ex.q;
      be.k = ex.k;
      be.v = ex.v;
      be.g = ex.g;
      be.h0 = ex.h0;
      be.dout = dl.to(DType::F64);
      be.dq = ex.q.empty_like();
      be.dg = learnable(gate) ? ex.g.empty_like() : Tensor();
      be.dh0 = ex.h0.empty_like();
      gla_bwd(be);
      EXPECT_TRUE(tu::close(bl.dq.to(DType::F64), be.dq, tol)) << "dq";
      EXPECT_TRUE(tu::close(bl.dh0.to(DType::F64), be.dh0, 1e-6)) << "dh0";
      if (learnable(gate)) {
        EXPECT_TRUE(tu::close(bl.dg.to(DType::F64), be.dg, 1e-6)) << "dg";
      }
    }
  }
}

TEST(GlaCpu, RejectsBadArguments) {
  const int64_t b = 2, t = 5, h = 3, k = 4, v = 6;
  const Inputs x = make_inputs(GlaGate::KeyVector, b, t, h, k, v, b);
  const Variable q(x.q), kk(x.k), vv(x.v), g(x.g), h0(x.h0);
  const GlaOptions kv{GlaGate::KeyVector, 0};
  auto call = [&](const Variable& q1, const Variable& k1, const Variable& v1, const Variable& g1,
                  const Variable& h1, const Tensor& cu,
                  GlaOptions o) { (void)gla(q1, k1, v1, g1, h1, cu, o, true); };
  expect_error(
      [&] {
        call(Variable(tu::randn({b, t, k}, DType::F64)), kk, vv, g, h0, {}, kv);
      },
      "'q'");
  expect_error(
      [&] {
        call(q, Variable(tu::randn({b, t, h, k + 1}, DType::F64)), vv, g, h0, {}, kv);
      },
      "'k'");
  expect_error(
      [&] {
        call(q, kk, Variable(tu::randn({b, t + 1, h, v}, DType::F64)), g, h0, {}, kv);
      },
      "'v'");
  expect_error([&] { call(q, kk, Variable(x.v.to(DType::F32)), g, h0, {}, kv); }, "'v'");
  expect_error([&] { call(Variable(x.q.to(DType::F16)), kk, vv, g, h0, {}, kv); }, "'q'");
  // Gate shapes per mode.
  expect_error([&] { call(q, kk, vv, Variable(), h0, {}, kv); }, "'g'");
  expect_error(
      [&] {
        call(q, kk, vv, Variable(tu::randn({b, t, h}, DType::F64)), h0, {}, kv);
      },
      "'g'");
  expect_error([&] { call(q, kk, vv, g, h0, {}, GlaOptions{GlaGate::HeadScalar, 0}); }, "'g'");
  expect_error([&] { call(q, kk, vv, g, h0, {}, GlaOptions{GlaGate::None, 0}); }, "'g'");
  expect_error(
      [&] {
        call(q, kk, vv, Variable(tu::randn({h}, DType::F32)), h0, {},
             GlaOptions{GlaGate::HeadConst, 0});
      },
      "'g'");
  expect_error(
      [&] {
        call(q, kk, vv, Variable(tu::randn({h}, DType::F64), true), h0, {},
             GlaOptions{GlaGate::HeadConst, 0});
      },
      "head_const");
  // States.
  expect_error(
      [&] {
        call(q, kk, vv, g, Variable(tu::randn({b, h, v, k}, DType::F64)), {}, kv);
      },
      "'h0'");
  expect_error([&] { call(q, kk, vv, g, h0, {}, GlaOptions{GlaGate::KeyVector, -1.0}); }, "scale");
  // cu_seqlens: B must be 1, start at 0, non-decreasing, end at T, i64, 1-d.
  const Variable q1(x.q.narrow(0, 0, 1).contiguous()), k1(x.k.narrow(0, 0, 1).contiguous()),
      v1(x.v.narrow(0, 0, 1).contiguous()), g1(x.g.narrow(0, 0, 1).contiguous());
  const Variable h02(x.h0);  // N = 2 sequences
  auto cu = [](std::vector<int64_t> c) { return Tensor::from_vector(c, {int64_t(c.size())}); };
  expect_error([&] { call(q, kk, vv, g, h0, cu({0, 2, 5}), kv); }, "B = 1");
  expect_error([&] { call(q1, k1, v1, g1, h02, cu({1, 2, 5}), kv); }, "cu_seqlens");
  expect_error([&] { call(q1, k1, v1, g1, h02, cu({0, 4, 3}), kv); }, "non-decreasing");
  expect_error([&] { call(q1, k1, v1, g1, h02, cu({0, 2, 4}), kv); }, "T = 5");
  expect_error([&] { call(q1, k1, v1, g1, h02, cu({0, 2, 3, 5}), kv); }, "'h0'");
  expect_error(
      [&] {
        call(q1, k1, v1, g1, h02, Tensor::from_vector(std::vector<int32_t>{0, 2, 5}, {3}), kv);
      },
      "cu_seqlens");
  EXPECT_NO_THROW(call(q1, k1, v1, g1, h02, cu({0, 2, 5}), kv));
  // Args API: output / gradient shapes, and dg for a gate without learnable decays.
  GlaFwdArgs fa{x.q,
                x.k,
                x.v,
                x.g,
                x.h0,
                Tensor(),
                Tensor::empty({b, t, h, v + 1}, DType::F64),
                Tensor(),
                GlaGate::KeyVector};
  expect_error([&] { gla_fwd(fa); }, "'o'");
  fa.o = x.v.empty_like();
  fa.ht = Tensor::empty({b, h, k, v}, DType::F32);
  expect_error([&] { gla_fwd(fa); }, "'ht'");
  fa.ht = Tensor();
  fa.gc = Tensor::empty({b, t, h}, DType::F32);  // KeyVector's are [B, T, H, K]
  expect_error([&] { gla_fwd(fa); }, "'gc'");
  fa.gc = Tensor();
  // Kept chunk-start states: bf16 [chunks, H, K, V], B ⌈T / 64⌉ chunks (⌊T / 64⌋ + N packed).
  EXPECT_EQ(gla_chunk_states_shape(x.q, x.v, Tensor()), (Shape{b * ((t + 63) / 64), h, k, v}));
  EXPECT_EQ(gla_chunk_states_shape(Tensor::empty({1, 130, 3, 16}, DType::F64),
                                   Tensor::empty({1, 130, 3, 8}, DType::F64),
                                   Tensor::from_vector(std::vector<int64_t>{0, 64, 65, 130}, {4})),
            (Shape{5, 3, 16, 8}));
  fa.hs = Tensor::empty({b * ((t + 63) / 64) + 1, h, k, v}, DType::BF16);
  expect_error([&] { gla_fwd(fa); }, "'hs'");
  fa.hs = Tensor::empty(gla_chunk_states_shape(x.q, x.v, Tensor()), DType::F32);
  expect_error([&] { gla_fwd(fa); }, "'hs'");
  fa.hs = Tensor::empty(gla_chunk_states_shape(x.q, x.v, Tensor()), DType::BF16);
  EXPECT_NO_THROW(gla_fwd(fa));  // the CPU reference leaves it untouched
  fa.hs = Tensor();
  fa.q = x.q.transpose(1, 2).contiguous().transpose(1, 2);
  expect_error([&] { gla_fwd(fa); }, "contiguous");
  GlaBwdArgs ba;
  ba.q = x.q;
  ba.k = x.k;
  ba.v = x.v;
  ba.g = tu::randn({h}, DType::F64);
  ba.dout = x.v.empty_like();
  ba.dg = ba.g.empty_like();
  ba.gate = GlaGate::HeadConst;
  expect_error([&] { gla_bwd(ba); }, "'dg'");
  ba.dg = Tensor();
  ba.gc = Tensor::empty({h}, DType::F32);  // no data-dependent gate: nothing to reuse
  expect_error([&] { gla_bwd(ba); }, "'gc'");
  ba.gc = Tensor();
  ba.hs = Tensor::empty({b * ((t + 63) / 64), h, k, v + 1}, DType::BF16);
  expect_error([&] { gla_bwd(ba); }, "'hs'");
  ba.hs = Tensor();
  ba.dout = Tensor();
  expect_error([&] { gla_bwd(ba); }, "dout");
  // Every CPU request is supported; the reason is data.
  EXPECT_TRUE(gla_supports(fa).ok);
  EXPECT_STREQ(gla_gate_name(GlaGate::KeyVector), "key_vector");
  EXPECT_DOUBLE_EQ(gla_scale(0, 16), 0.25);
  EXPECT_DOUBLE_EQ(gla_scale(0.5, 16), 0.5);
}

// The identity the CUDA recurrent backward uses for dg (README.md): with a_t = Σ_{s≤t} g_s,
//   dg_t[i] = Σ_{s≥t} (q_s[i] dq_s[i] − k_s[i] dk_s[i]) + Σ_j dht[i,j] ht[i,j]
// (summed over i for head_scalar), checked here against the reference's literal dg, per packed
// sequence, with h0 and dht given and strong decays.
TEST(GlaCpu, GateGradientIdentity) {
  SEQMIX_TRACE_SEED();
  const std::vector<int64_t> cu_v{0, 5, 5, 77, 140};
  const int64_t t = cu_v.back(), n = int64_t(cu_v.size()) - 1, h = 2, k = 5, v = 3;
  const Tensor cu = Tensor::from_vector(cu_v, {n + 1});
  for (GlaGate gate : {GlaGate::HeadScalar, GlaGate::KeyVector}) {
    SCOPED_TRACE(gname(gate));
    Inputs x = make_inputs(gate, 1, t, h, k, v, n);
    x.g = make_g(gate, 1, t, h, k, -5.0);
    GlaFwdArgs f{x.q, x.k, x.v, x.g, x.h0, cu, x.v.empty_like(), x.h0.empty_like(), gate};
    gla_fwd(f);
    GlaBwdArgs b;
    b.q = x.q;
    b.k = x.k;
    b.v = x.v;
    b.g = x.g;
    b.h0 = x.h0;
    b.cu_seqlens = cu;
    b.dout = tu::randn(x.v.shape(), DType::F64);
    b.dht = tu::randn(x.h0.shape(), DType::F64);
    b.dq = x.q.empty_like();
    b.dk = x.k.empty_like();
    b.dg = x.g.empty_like();
    b.gate = gate;
    gla_bwd(b);
    const auto q = x.q.to_vector<double>(), kk = x.k.to_vector<double>();
    const auto dq = b.dq.to_vector<double>(), dk = b.dk.to_vector<double>();
    const auto dht = b.dht.to_vector<double>(), ht = f.ht.to_vector<double>();
    std::vector<double> want(size_t(x.g.numel()));
    for (int64_t s = 0; s < n; ++s)
      for (int64_t hh = 0; hh < h; ++hh)
        for (int64_t i = 0; i < k; ++i) {
          double acc = 0;
          for (int64_t j = 0; j < v; ++j) {
            const size_t o = size_t(((s * h + hh) * k + i) * v + j);
            acc += dht[o] * ht[o];
          }
          for (int64_t tok = cu_v[size_t(s) + 1] - 1; tok >= cu_v[size_t(s)]; --tok) {
            const size_t o = size_t((tok * h + hh) * k + i);
            acc += q[o] * dq[o] - kk[o] * dk[o];
            if (gate == GlaGate::KeyVector) {
              want[o] = acc;
            } else {
              want[size_t(tok * h + hh)] += acc;
            }
          }
        }
    EXPECT_TRUE(tu::close(b.dg, Tensor::from_vector(want, x.g.shape()), 1e-11));
  }
}
