// Delta rule on the CPU, for every gate mode (none, head_scalar, key_vector), with and without the
// in-op L2 normalisation of q and k, β in (0, 1) and in (0, 2): the reference's gradients against
// fp64 finite differences (q, k, v, beta, g, h0 through a loss that also uses the final state;
// batched and packed with cu_seqlens, including an empty sequence), the reference against a second
// formulation built from generic autograd ops (the per-step product S_t = A_t D_t S_{t−1} + β_t
// k_t v_tᵀ with the explicit K×K matrix A_t = I − β_t k_t k_tᵀ) for o, ht and every gradient, the
// chunked WY / UT-transform form of README.md (also from generic ops) for o and ht, state passing
// (one call == two calls carrying the state, values and gradients), varlen == a per-sequence loop,
// bf16 / f32 inputs against fp64, the reference's checkpointing across sequences longer than 64
// steps, partial gradient requests, the autograd node without h0 / ht, and the validation errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "core/error.h"
#include "kernels/delta_rule/delta_rule.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using V = std::vector<Variable>;

namespace {

const DeltaGate kGates[] = {DeltaGate::None, DeltaGate::HeadScalar, DeltaGate::KeyVector};

bool has_g(DeltaGate g) {
  return g != DeltaGate::None;
}

// Log-gates for `gate` in [lo, 0), shaped per delta_rule.h.
Tensor make_g(DeltaGate gate, int64_t b, int64_t t, int64_t h, int64_t k, double lo = -1.0) {
  switch (gate) {
    case DeltaGate::None:
      return Tensor();
    case DeltaGate::HeadScalar:
      return tu::rand_uniform({b, t, h}, DType::F64, lo, 0.0);
    case DeltaGate::KeyVector:
      return tu::rand_uniform({b, t, h, k}, DType::F64, lo, 0.0);
  }
  return Tensor();
}

// Rows of the last dimension scaled to norm `norm` (so that without the in-op normalisation the
// transition I − β k kᵀ keeps its eigenvalue 1 − β norm² in (−1, 1) and long sequences stay
// bounded).
Tensor unit_rows(const Tensor& x, double norm) {
  std::vector<double> a = x.to_vector<double>();
  const int64_t k = x.size(x.dim() - 1);
  for (size_t r = 0; r < a.size(); r += size_t(k)) {
    double ss = 0;
    for (int64_t i = 0; i < k; ++i) ss += a[r + size_t(i)] * a[r + size_t(i)];
    const double f = norm / std::sqrt(ss);
    for (int64_t i = 0; i < k; ++i) a[r + size_t(i)] *= f;
  }
  return Tensor::from_vector(a, x.shape());
}

struct Inputs {
  Tensor q, k, v, beta, g, h0;
};

// Fresh fp64 inputs. `beta_hi` = 1 or 2 (β in (0, 1) or (0, 2)). Without `l2` the keys are
// rescaled to norm 0.95 (raw keys of any norm are exercised by the gradient checks with l2).
Inputs make_inputs(DeltaGate gate, int64_t b, int64_t t, int64_t h, int64_t k, int64_t v, int64_t n,
                   double beta_hi, bool l2) {
  Inputs x;
  x.q = tu::randn({b, t, h, k}, DType::F64);
  x.k = tu::randn({b, t, h, k}, DType::F64);
  if (!l2) x.k = unit_rows(x.k, 0.95);
  x.v = tu::randn({b, t, h, v}, DType::F64);
  x.beta = tu::rand_uniform({b, t, h}, DType::F64, 0.02, beta_hi - 0.02);
  x.g = make_g(gate, b, t, h, k);
  x.h0 = tu::randn({n, h, k, v}, DType::F64);
  return x;
}

// Full [B, H, T, K] log-gates from g (generic ops, so gradients flow back to g).
Variable full_log_gates(const Variable& g, DeltaGate gate, int64_t b, int64_t t, int64_t h,
                        int64_t k) {
  switch (gate) {
    case DeltaGate::None:
      return Variable(Tensor::zeros({b, h, t, k}, DType::F64));
    case DeltaGate::HeadScalar:
      return expand(unsqueeze(permute(g, {0, 2, 1}), 3), {b, h, t, k});
    case DeltaGate::KeyVector:
      return permute(g, {0, 2, 1, 3});
  }
  return Variable();
}

Variable l2n(const Variable& x) {
  return x * rsqrt(add(sum(x * x, -1, true), 1e-6));
}

// Second formulation from generic autograd ops (batched, no cu_seqlens): the per-step product
// with the explicit transition matrix,
//   S_t = (I − β_t k_t k_tᵀ) (exp(g_t) ⊙ S_{t−1}) + β_t k_t v_tᵀ,  o_t = scale S_tᵀ q_t.
V recurrence_autograd(const Variable& q, const Variable& k, const Variable& v, const Variable& beta,
                      const Variable& g, const Variable& h0, DeltaGate gate, double scale,
                      bool l2) {
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), kd = q.size(3);
  const Variable qh = permute(l2 ? l2n(q) : q, {0, 2, 1, 3}),
                 kh = permute(l2 ? l2n(k) : k, {0, 2, 1, 3}), vh = permute(v, {0, 2, 1, 3}),
                 bh = permute(beta, {0, 2, 1});  // [B, H, T, ·]
  const Variable gl = full_log_gates(g, gate, b, t, h, kd);
  std::vector<double> eye(size_t(kd * kd), 0.0);
  for (int64_t i = 0; i < kd; ++i) eye[size_t(i * kd + i)] = 1.0;
  const Variable id(Tensor::from_vector(eye, {kd, kd}).expand({b, h, kd, kd}).contiguous());
  Variable s = h0;
  std::vector<Variable> os;
  for (int64_t i = 0; i < t; ++i) {
    const Variable kt = select(kh, 2, i), vt = select(vh, 2, i), qt = select(qh, 2, i);
    const Variable bt = unsqueeze(unsqueeze(select(bh, 2, i), 2), 3);  // [B, H, 1, 1]
    const Variable p = s * unsqueeze(exp(select(gl, 2, i)), 3);
    const Variable a = id - bt * (unsqueeze(kt, 3) * unsqueeze(kt, 2));
    s = matmul(a, p) + bt * (unsqueeze(kt, 3) * unsqueeze(vt, 2));
    os.push_back(squeeze(matmul(unsqueeze(qt, 2), s), 2) * scale);  // [B, H, V]
  }
  return {contiguous(stack(os, 1)), s};
}

// The chunked WY / UT-transform form of README.md, from generic ops (batched, no cu_seqlens,
// chunk size c; forward values only). Per chunk, with the in-chunk cumulative log-gate b_r:
//   Γ[r, s] = exp(b_r − b_s) (per key dim), T = (I + StrictLower(diag(β) (K Kᵀ ⊙ Γ)))⁻¹ diag(β)
//   W = T (K ⊙ exp(b)), U = T V, K̃ = K ⊙ exp(b_C − b), Q̃ = Q ⊙ exp(b)
//   O = scale (Q̃ S + (Q Kᵀ ⊙ Γ ⊙ M)(U − W S)),  S_next = exp(b_C) ⊙ S + K̃ᵀ (U − W S)
// The inverse is formed by forward substitution, row by row.
V chunked_wy(const Variable& q, const Variable& k, const Variable& v, const Variable& beta,
             const Variable& g, const Variable& h0, DeltaGate gate, double scale, bool l2,
             int64_t c) {
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), kd = q.size(3);
  const Variable qh = permute(l2 ? l2n(q) : q, {0, 2, 1, 3}),
                 kh = permute(l2 ? l2n(k) : k, {0, 2, 1, 3}), vh = permute(v, {0, 2, 1, 3}),
                 bh = permute(beta, {0, 2, 1});
  const Variable gl = full_log_gates(g, gate, b, t, h, kd);  // [B, H, T, K]
  Variable s = h0;
  std::vector<Variable> os;
  for (int64_t t0 = 0; t0 < t; t0 += c) {
    const int64_t len = std::min(c, t - t0);
    const Variable qc = narrow(qh, 2, t0, len), kc = narrow(kh, 2, t0, len),
                   vc = narrow(vh, 2, t0, len), bc = narrow(bh, 2, t0, len);
    // In-chunk cumulative log-gates bcum [B, H, len, K] (inclusive).
    std::vector<double> lower(size_t(len * len), 0.0);
    for (int64_t i = 0; i < len; ++i)
      for (int64_t j = 0; j <= i; ++j) lower[size_t(i * len + j)] = 1.0;
    const Tensor tri = Tensor::from_vector(lower, {len, len});
    const Variable bcum =
        matmul(Variable(tri.expand({b, h, len, len}).contiguous()), narrow(gl, 2, t0, len));
    const Variable last = narrow(bcum, 2, len - 1, 1);  // [B, H, 1, K]
    // Γ-weighted products: (X Kᵀ ⊙ Γ)[r, s] = Σ_i X[r, i] exp(b_r[i]) K[s, i] exp(−b_s[i]); the
    // exponent pairs are combined before exp so that no factor overflows.
    const Variable diff = unsqueeze(bcum, 3) - unsqueeze(bcum, 2);  // [B, H, len, len, K]
    std::vector<double> strict(lower);
    for (int64_t i = 0; i < len; ++i) strict[size_t(i * len + i)] = 0.0;
    const Variable mask_strict(Tensor::from_vector(strict, {len, len}));
    const Tensor m5 = tri.reshape({1, 1, len, len, 1}).expand({b, h, len, len, kd}).contiguous();
    const Variable gam = exp(diff * Variable(m5)) * Variable(m5);            // Γ ⊙ M (inclusive)
    const Variable kk = sum(unsqueeze(kc, 3) * unsqueeze(kc, 2) * gam, -1);  // [B, H, len, len]
    const Variable qk = sum(unsqueeze(qc, 3) * unsqueeze(kc, 2) * gam, -1);
    const Variable lmat = unsqueeze(bc, 3) * kk * mask_strict;  // StrictLower(diag(β) KKᵀ⊙Γ)
    // T = (I + L)⁻¹ diag(β): row r of T = β_r e_r − Σ_{s<r} L[r, s] T[s, ·].
    std::vector<Variable> rows;
    std::vector<double> e(size_t(len), 0.0);
    for (int64_t r = 0; r < len; ++r) {
      std::fill(e.begin(), e.end(), 0.0);
      e[size_t(r)] = 1.0;
      Variable row = unsqueeze(select(bc, 2, r), 2) * Variable(Tensor::from_vector(e, {len}));
      for (int64_t s2 = 0; s2 < r; ++s2) {
        const Variable lrs = unsqueeze(select(select(lmat, 2, r), 2, s2), 2);  // [B, H, 1]
        row = row - lrs * rows[size_t(s2)];
      }
      rows.push_back(row);  // [B, H, len]
    }
    const Variable tm = stack(rows, 2);  // [B, H, len, len]
    const Variable w = matmul(tm, kc * exp(bcum));
    const Variable u = matmul(tm, vc);
    const Variable nv = u - matmul(w, s);  // new values U − W S
    os.push_back((matmul(qc * exp(bcum), s) + matmul(qk, nv)) * scale);
    const Variable ktil = kc * exp(last - bcum);
    s = unsqueeze(squeeze(exp(last), 2), 3) * s + matmul(transpose(ktil, 2, 3), nv);
  }
  return {contiguous(permute(cat(os, 2), {0, 2, 1, 3})), s};
}

std::string name(DeltaGate g, bool l2, double beta_hi) {
  return std::string("gate=") + delta_gate_name(g) + (l2 ? " l2norm" : "") + " beta<" +
         std::to_string(int(beta_hi));
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

DeltaBwdArgs bwd_args(const DeltaFwdArgs& f, const Tensor& dout, const Tensor& dht) {
  DeltaBwdArgs b;
  b.q = f.q;
  b.k = f.k;
  b.v = f.v;
  b.beta = f.beta;
  b.g = f.g;
  b.h0 = f.h0;
  b.cu_seqlens = f.cu_seqlens;
  b.dout = dout;
  b.dht = dht;
  b.dq = f.q.empty_like();
  b.dk = f.k.empty_like();
  b.dv = f.v.empty_like();
  b.dbeta = f.beta.empty_like();
  if (has_g(f.gate)) b.dg = f.g.empty_like();
  if (f.h0.defined()) b.dh0 = f.h0.empty_like();
  b.gate = f.gate;
  b.scale = f.scale;
  b.l2norm_qk = f.l2norm_qk;
  return b;
}

DeltaFwdArgs fwd_args(const Inputs& x, const Tensor& cu, DeltaGate gate, bool l2) {
  DeltaFwdArgs f;
  f.q = x.q;
  f.k = x.k;
  f.v = x.v;
  f.beta = x.beta;
  f.g = x.g;
  f.h0 = x.h0;
  f.cu_seqlens = cu;
  f.o = x.v.empty_like();
  f.ht = x.h0.empty_like();
  f.gate = gate;
  f.l2norm_qk = l2;
  return f;
}

}  // namespace

TEST(DeltaRuleCpu, GradcheckReference) {
  SEQMIX_TRACE_SEED();
  for (DeltaGate gate : kGates) {
    for (bool l2 : {false, true}) {
      for (double beta_hi : {1.0, 2.0}) {
        for (bool packed : {false, true}) {
          SCOPED_TRACE(name(gate, l2, beta_hi) + (packed ? " packed" : " batched"));
          const int64_t h = 2, k = 3, v = 4;
          const int64_t b = packed ? 1 : 2, t = packed ? 9 : 5;
          Tensor cu;
          if (packed) cu = Tensor::from_vector(std::vector<int64_t>{0, 4, 4, 9}, {4});
          const int64_t n = packed ? 3 : b;
          const Inputs x = make_inputs(gate, b, t, h, k, v, n, beta_hi, l2);
          std::vector<Tensor> in{x.q, x.k, x.v, x.beta, x.h0};
          if (has_g(gate)) in.push_back(x.g);
          const DeltaOptions opt{gate, 0.7, l2, DeltaAlgo::Auto};
          const GradcheckResult res = gradcheck(
              [&](const V& a) {
                const Variable g = a.size() > 5 ? a[5] : Variable();
                auto [o, ht] = delta_rule(a[0], a[1], a[2], a[3], g, a[4], cu, opt, true);
                return V{o, ht};
              },
              in);
          EXPECT_TRUE(res.ok) << res.message;
          int64_t expect = 2 * b * t * h * k + b * t * h * v + b * t * h + n * h * k * v;
          if (has_g(gate)) expect += x.g.numel();
          EXPECT_EQ(res.checked, expect);
        }
      }
    }
  }
}

TEST(DeltaRuleCpu, MatchesAutogradRecurrence) {
  SEQMIX_TRACE_SEED();
  for (DeltaGate gate : kGates) {
    for (bool l2 : {false, true}) {
      for (int64_t t : {1, 7, 70}) {
        const double beta_hi = t == 7 ? 2.0 : 1.0;
        SCOPED_TRACE(name(gate, l2, beta_hi) + " T=" + std::to_string(t));
        const int64_t b = 2, h = 2, k = 5, v = 6;
        const double scale = t == 7 ? 0.3 : 0;
        const Inputs x = make_inputs(gate, b, t, h, k, v, b, beta_hi, l2);
        const Tensor wo = tu::randn({b, t, h, v}, DType::F64),
                     wh = tu::randn({b, h, k, v}, DType::F64);
        const bool gg = has_g(gate);
        Variable qa(x.q.clone(), true), ka(x.k.clone(), true), va(x.v.clone(), true),
            ba(x.beta.clone(), true), ha(x.h0.clone(), true),
            ga = gg ? Variable(x.g.clone(), true) : Variable();
        Variable qb(x.q.clone(), true), kb(x.k.clone(), true), vb(x.v.clone(), true),
            bb(x.beta.clone(), true), hb(x.h0.clone(), true),
            gb = gg ? Variable(x.g.clone(), true) : Variable();
        auto [oa, hta] =
            delta_rule(qa, ka, va, ba, ga, ha, Tensor(), DeltaOptions{gate, scale, l2}, true);
        const V nb = recurrence_autograd(qb, kb, vb, bb, gb, hb, gate, delta_scale(scale, k), l2);
        EXPECT_TRUE(tu::close(oa.data(), nb[0].data(), 1e-11)) << "o";
        EXPECT_TRUE(tu::close(hta.data(), nb[1].data(), 1e-11)) << "ht";
        (sum(oa * Variable(wo)) + sum(hta * Variable(wh))).backward();
        (sum(nb[0] * Variable(wo)) + sum(nb[1] * Variable(wh))).backward();
        EXPECT_TRUE(tu::close(qa.grad(), qb.grad(), 1e-10)) << "dq";
        EXPECT_TRUE(tu::close(ka.grad(), kb.grad(), 1e-10)) << "dk";
        EXPECT_TRUE(tu::close(va.grad(), vb.grad(), 1e-10)) << "dv";
        EXPECT_TRUE(tu::close(ba.grad(), bb.grad(), 1e-10)) << "dbeta";
        EXPECT_TRUE(tu::close(ha.grad(), hb.grad(), 1e-10)) << "dh0";
        if (gg) {
          EXPECT_TRUE(tu::close(ga.grad(), gb.grad(), 1e-10)) << "dg";
        }
      }
    }
  }
}

// The chunked algorithm of README.md (WY / UT transform per chunk), written with generic ops,
// equals the reference: checks the derivation the CUDA chunked kernels implement. Chunk sizes
// that divide T and that do not; strong per-key decays.
TEST(DeltaRuleCpu, MatchesChunkedWyForm) {
  SEQMIX_TRACE_SEED();
  for (DeltaGate gate : kGates) {
    for (int64_t c : {4, 5}) {
      const bool l2 = c == 5;
      SCOPED_TRACE(name(gate, l2, 2.0) + " C=" + std::to_string(c));
      const int64_t b = 1, t = 12, h = 2, k = 4, v = 3;
      Inputs x = make_inputs(gate, b, t, h, k, v, b, 2.0, l2);
      x.g = make_g(gate, b, t, h, k, -3.0);
      const Variable q(x.q), kk(x.k), vv(x.v), bt(x.beta), h0(x.h0);
      const Variable g = has_g(gate) ? Variable(x.g) : Variable();
      auto [o, ht] = delta_rule(q, kk, vv, bt, g, h0, Tensor(), DeltaOptions{gate, 0, l2}, true);
      const V w = chunked_wy(q, kk, vv, bt, g, h0, gate, delta_scale(0, k), l2, c);
      EXPECT_TRUE(tu::close(w[0].data(), o.data(), 1e-12)) << "o";
      EXPECT_TRUE(tu::close(w[1].data(), ht.data(), 1e-12)) << "ht";
    }
  }
}

// One call over [0, T) equals two calls [0, T1), [T1, T) with the final state of the first as
// the initial state of the second: outputs, final state and every gradient (through autograd).
TEST(DeltaRuleCpu, StatePassing) {
  SEQMIX_TRACE_SEED();
  for (DeltaGate gate : kGates) {
    for (bool l2 : {false, true}) {
      SCOPED_TRACE(name(gate, l2, 2.0));
      const int64_t b = 2, t = 150, t1 = 67, h = 2, k = 8, v = 5;
      const Inputs x = make_inputs(gate, b, t, h, k, v, b, 2.0, l2);
      const Tensor wo = tu::randn({b, t, h, v}, DType::F64),
                   wh = tu::randn({b, h, k, v}, DType::F64);
      const bool gg = has_g(gate);
      const DeltaOptions opt{gate, 0, l2};
      Variable qa(x.q.clone(), true), ka(x.k.clone(), true), va(x.v.clone(), true),
          ba(x.beta.clone(), true), ha(x.h0.clone(), true),
          ga = gg ? Variable(x.g.clone(), true) : Variable();
      Variable qb(x.q.clone(), true), kb(x.k.clone(), true), vb(x.v.clone(), true),
          bb(x.beta.clone(), true), hb(x.h0.clone(), true),
          gb = gg ? Variable(x.g.clone(), true) : Variable();
      auto [oa, hta] = delta_rule(qa, ka, va, ba, ga, ha, Tensor(), opt, true);
      auto part = [&](const Variable& y, int64_t s, int64_t len) { return narrow(y, 1, s, len); };
      auto gpart = [&](int64_t s, int64_t len) { return gg ? part(gb, s, len) : gb; };
      auto [o1, h1] = delta_rule(part(qb, 0, t1), part(kb, 0, t1), part(vb, 0, t1), part(bb, 0, t1),
                                 gpart(0, t1), hb, Tensor(), opt, true);
      auto [o2, h2] = delta_rule(part(qb, t1, t - t1), part(kb, t1, t - t1), part(vb, t1, t - t1),
                                 part(bb, t1, t - t1), gpart(t1, t - t1), h1, Tensor(), opt, true);
      const Variable ob = cat({o1, o2}, 1);
      EXPECT_TRUE(tu::close(ob.data(), oa.data(), 1e-12)) << "o";
      EXPECT_TRUE(tu::close(h2.data(), hta.data(), 1e-12)) << "ht";
      (sum(oa * Variable(wo)) + sum(hta * Variable(wh))).backward();
      (sum(ob * Variable(wo)) + sum(h2 * Variable(wh))).backward();
      EXPECT_TRUE(tu::close(qb.grad(), qa.grad(), 1e-12)) << "dq";
      EXPECT_TRUE(tu::close(kb.grad(), ka.grad(), 1e-12)) << "dk";
      EXPECT_TRUE(tu::close(vb.grad(), va.grad(), 1e-12)) << "dv";
      EXPECT_TRUE(tu::close(bb.grad(), ba.grad(), 1e-12)) << "dbeta";
      EXPECT_TRUE(tu::close(hb.grad(), ha.grad(), 1e-12)) << "dh0";
      if (gg) {
        EXPECT_TRUE(tu::close(gb.grad(), ga.grad(), 1e-12)) << "dg";
      }
    }
  }
}

// Packed sequences (cu_seqlens, lengths 3, 0, 70, 1, 66: checkpoint boundaries inside) equal a
// per-sequence loop of separate calls, for the forward and the backward through the args API.
TEST(DeltaRuleCpu, VarlenEqualsPerSequenceLoop) {
  SEQMIX_TRACE_SEED();
  const std::vector<int64_t> cu_v{0, 3, 3, 73, 74, 140};
  const int64_t t = cu_v.back(), n = int64_t(cu_v.size()) - 1, h = 2, k = 6, v = 7;
  const Tensor cu = Tensor::from_vector(cu_v, {n + 1});
  for (DeltaGate gate : kGates) {
    for (bool l2 : {false, true}) {
      SCOPED_TRACE(name(gate, l2, 1.0));
      const Inputs x = make_inputs(gate, 1, t, h, k, v, n, 1.0, l2);
      const Tensor dout = tu::randn({1, t, h, v}, DType::F64);
      const Tensor dht = tu::randn({n, h, k, v}, DType::F64);
      DeltaFwdArgs f = fwd_args(x, cu, gate, l2);
      delta_rule_fwd(f);
      DeltaBwdArgs bw = bwd_args(f, dout, dht);
      delta_rule_bwd(bw);
      for (int64_t s = 0; s < n; ++s) {
        SCOPED_TRACE("sequence " + std::to_string(s));
        const int64_t b0 = cu_v[size_t(s)], len = cu_v[size_t(s) + 1] - b0;
        auto seg = [&](const Tensor& y) { return y.narrow(1, b0, len).contiguous(); };
        auto st = [&](const Tensor& y) { return y.narrow(0, s, 1).contiguous(); };
        Inputs xs{seg(x.q),
                  seg(x.k),
                  seg(x.v),
                  seg(x.beta),
                  gate == DeltaGate::None ? Tensor() : seg(x.g),
                  st(x.h0)};
        DeltaFwdArgs f1 = fwd_args(xs, Tensor(), gate, l2);
        delta_rule_fwd(f1);
        if (len > 0) {
          EXPECT_TRUE(tu::close(f1.o, seg(f.o), 1e-13)) << "o";
        }
        EXPECT_TRUE(tu::close(f1.ht, st(f.ht), 1e-13)) << "ht";
        DeltaBwdArgs b1 = bwd_args(f1, seg(dout), st(dht));
        delta_rule_bwd(b1);
        if (len > 0) {
          EXPECT_TRUE(tu::close(b1.dq, seg(bw.dq), 1e-13)) << "dq";
          EXPECT_TRUE(tu::close(b1.dk, seg(bw.dk), 1e-13)) << "dk";
          EXPECT_TRUE(tu::close(b1.dv, seg(bw.dv), 1e-13)) << "dv";
          EXPECT_TRUE(tu::close(b1.dbeta, seg(bw.dbeta), 1e-13)) << "dbeta";
          if (has_g(gate)) {
            EXPECT_TRUE(tu::close(b1.dg, seg(bw.dg), 1e-13)) << "dg";
          }
        }
        EXPECT_TRUE(tu::close(b1.dh0, st(bw.dh0), 1e-13)) << "dh0";
      }
    }
  }
}

// An empty sequence passes the state through: ht = h0 and dh0 = dht exactly.
TEST(DeltaRuleCpu, EmptySequencePassesStateThrough) {
  SEQMIX_TRACE_SEED();
  const Tensor cu = Tensor::from_vector(std::vector<int64_t>{0, 0, 2}, {3});
  const Inputs x = make_inputs(DeltaGate::KeyVector, 1, 2, 1, 3, 2, 2, 1.0, true);
  DeltaFwdArgs f = fwd_args(x, cu, DeltaGate::KeyVector, true);
  delta_rule_fwd(f);
  EXPECT_TRUE(tu::bitwise_equal(f.ht.narrow(0, 0, 1), x.h0.narrow(0, 0, 1)));
  DeltaBwdArgs b =
      bwd_args(f, tu::randn(x.v.shape(), DType::F64), tu::randn(x.h0.shape(), DType::F64));
  delta_rule_bwd(b);
  EXPECT_TRUE(tu::bitwise_equal(b.dh0.narrow(0, 0, 1), b.dht.narrow(0, 0, 1)));
}

// Only the requested gradients are written; the others stay undefined and the written ones equal
// those of a full request.
TEST(DeltaRuleCpu, PartialGradientRequests) {
  SEQMIX_TRACE_SEED();
  const Inputs x = make_inputs(DeltaGate::HeadScalar, 2, 9, 2, 4, 3, 2, 1.0, true);
  DeltaFwdArgs f = fwd_args(x, Tensor(), DeltaGate::HeadScalar, true);
  delta_rule_fwd(f);
  const Tensor dout = tu::randn(x.v.shape(), DType::F64);
  DeltaBwdArgs full = bwd_args(f, dout, Tensor());
  delta_rule_bwd(full);
  DeltaBwdArgs part = bwd_args(f, dout, Tensor());
  part.dq = Tensor();
  part.dv = Tensor();
  part.dh0 = Tensor();
  delta_rule_bwd(part);
  EXPECT_TRUE(tu::bitwise_equal(part.dk, full.dk));
  EXPECT_TRUE(tu::bitwise_equal(part.dbeta, full.dbeta));
  EXPECT_TRUE(tu::bitwise_equal(part.dg, full.dg));
}

// The autograd node without h0 and without the final state equals the call with h0 = 0 (values
// and gradients); a gate that does not require grad gets none.
TEST(DeltaRuleCpu, OptionalStatesInAutograd) {
  SEQMIX_TRACE_SEED();
  const int64_t b = 2, t = 6, h = 2, k = 4, v = 3;
  const Inputs x = make_inputs(DeltaGate::KeyVector, b, t, h, k, v, b, 2.0, true);
  const DeltaOptions opt{DeltaGate::KeyVector, 0, true};
  const Tensor wo = tu::randn({b, t, h, v}, DType::F64);
  Variable qa(x.q.clone(), true), ka(x.k.clone(), true), va(x.v.clone(), true),
      ba(x.beta.clone(), true), ga(x.g.clone(), false);
  Variable qb(x.q.clone(), true), kb(x.k.clone(), true), vb(x.v.clone(), true),
      bb(x.beta.clone(), true), gb(x.g.clone(), true), hb(x.h0.zeros_like(), true);
  auto [oa, hta] = delta_rule(qa, ka, va, ba, ga, Variable(), Tensor(), opt);
  EXPECT_FALSE(hta.defined());
  auto [ob, htb] = delta_rule(qb, kb, vb, bb, gb, hb, Tensor(), opt, true);
  EXPECT_TRUE(tu::bitwise_equal(oa.data(), ob.data()));
  sum(oa * Variable(wo)).backward();
  sum(ob * Variable(wo)).backward();
  EXPECT_TRUE(tu::bitwise_equal(qa.grad(), qb.grad()));
  EXPECT_TRUE(tu::bitwise_equal(ka.grad(), kb.grad()));
  EXPECT_TRUE(tu::bitwise_equal(va.grad(), vb.grad()));
  EXPECT_TRUE(tu::bitwise_equal(ba.grad(), bb.grad()));
  EXPECT_FALSE(ga.grad().defined());
  EXPECT_TRUE(gb.grad().defined());
}

// bf16 / f32 inputs: the reference accumulates in fp64 whatever the input dtype, so the result
// equals the fp64 computation on the rounded inputs up to the output rounding.
TEST(DeltaRuleCpu, LowPrecisionInputs) {
  SEQMIX_TRACE_SEED();
  const int64_t b = 2, t = 80, h = 2, k = 16, v = 8;
  for (DeltaGate gate : kGates) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const bool l2 = dt == DType::BF16;
      SCOPED_TRACE(name(gate, l2, 1.0) + " " + dtype_name(dt));
      const Inputs x = make_inputs(gate, b, t, h, k, v, b, 1.0, l2);
      Inputs lo{x.q.to(dt),
                x.k.to(dt),
                x.v.to(dt),
                x.beta.to(DType::F32),
                x.g.defined() ? x.g.to(DType::F32) : Tensor(),
                x.h0.to(DType::F32)};
      Inputs ex{lo.q.to(DType::F64),
                lo.k.to(DType::F64),
                lo.v.to(DType::F64),
                lo.beta.to(DType::F64),
                lo.g.defined() ? lo.g.to(DType::F64) : Tensor(),
                lo.h0.to(DType::F64)};
      DeltaFwdArgs fl = fwd_args(lo, Tensor(), gate, l2), fe = fwd_args(ex, Tensor(), gate, l2);
      delta_rule_fwd(fl);
      delta_rule_fwd(fe);
      EXPECT_EQ(fl.o.dtype(), dt);
      EXPECT_EQ(fl.ht.dtype(), DType::F32);
      const double tol = dt == DType::F32 ? 1e-6 : 5e-3;
      EXPECT_TRUE(tu::close(fl.o.to(DType::F64), fe.o, tol)) << "o";
      EXPECT_TRUE(tu::close(fl.ht.to(DType::F64), fe.ht, 1e-6)) << "ht";
      const Tensor dl = tu::randn({b, t, h, v}, dt), dhl = tu::randn({b, h, k, v}, DType::F32);
      DeltaBwdArgs bl = bwd_args(fl, dl, dhl),
                   be = bwd_args(fe, dl.to(DType::F64), dhl.to(DType::F64));
      delta_rule_bwd(bl);
      delta_rule_bwd(be);
      EXPECT_TRUE(tu::close(bl.dq.to(DType::F64), be.dq, tol)) << "dq";
      EXPECT_TRUE(tu::close(bl.dk.to(DType::F64), be.dk, tol)) << "dk";
      EXPECT_TRUE(tu::close(bl.dv.to(DType::F64), be.dv, tol)) << "dv";
      EXPECT_TRUE(tu::close(bl.dbeta.to(DType::F64), be.dbeta, 1e-6)) << "dbeta";
      EXPECT_TRUE(tu::close(bl.dh0.to(DType::F64), be.dh0, 1e-6)) << "dh0";
      if (has_g(gate)) {
        EXPECT_TRUE(tu::close(bl.dg.to(DType::F64), be.dg, 1e-6)) << "dg";
      }
    }
  }
}

TEST(DeltaRuleCpu, RejectsBadArguments) {
  const int64_t b = 2, t = 5, h = 3, k = 4, v = 6;
  const Inputs x = make_inputs(DeltaGate::KeyVector, b, t, h, k, v, b, 1.0, true);
  const Variable q(x.q), kk(x.k), vv(x.v), bt(x.beta), g(x.g), h0(x.h0);
  const DeltaOptions kv{DeltaGate::KeyVector, 0, true};
  auto call = [&](const Variable& q1, const Variable& k1, const Variable& v1, const Variable& b1,
                  const Variable& g1, const Variable& h1, const Tensor& cu,
                  DeltaOptions o) { (void)delta_rule(q1, k1, v1, b1, g1, h1, cu, o, true); };
  auto rnd = [](const Shape& s, DType dt = DType::F64) { return Variable(tu::randn(s, dt)); };
  expect_error([&] { call(rnd({b, t, k}), kk, vv, bt, g, h0, {}, kv); }, "'q'");
  expect_error([&] { call(q, rnd({b, t, h, k + 1}), vv, bt, g, h0, {}, kv); }, "'k'");
  expect_error([&] { call(q, kk, rnd({b, t + 1, h, v}), bt, g, h0, {}, kv); }, "'v'");
  expect_error([&] { call(q, kk, Variable(x.v.to(DType::F32)), bt, g, h0, {}, kv); }, "'v'");
  expect_error([&] { call(Variable(x.q.to(DType::F16)), kk, vv, bt, g, h0, {}, kv); }, "'q'");
  // β: required, [B, T, H], the state dtype.
  expect_error([&] { call(q, kk, vv, Variable(), g, h0, {}, kv); }, "'beta'");
  expect_error([&] { call(q, kk, vv, rnd({b, t, h, 1}), g, h0, {}, kv); }, "'beta'");
  expect_error([&] { call(q, kk, vv, rnd({b, t, h}, DType::F32), g, h0, {}, kv); }, "'beta'");
  // Gate shapes per mode.
  expect_error([&] { call(q, kk, vv, bt, Variable(), h0, {}, kv); }, "'g'");
  expect_error([&] { call(q, kk, vv, bt, rnd({b, t, h}), h0, {}, kv); }, "'g'");
  expect_error(
      [&] {
        call(q, kk, vv, bt, g, h0, {}, DeltaOptions{DeltaGate::HeadScalar, 0});
      },
      "'g'");
  expect_error([&] { call(q, kk, vv, bt, g, h0, {}, DeltaOptions{DeltaGate::None, 0}); }, "'g'");
  expect_error(
      [&] {
        call(q, kk, vv, bt, rnd({b, t, h}, DType::F32), h0, {},
             DeltaOptions{DeltaGate::HeadScalar, 0});
      },
      "'g'");
  // States.
  expect_error([&] { call(q, kk, vv, bt, g, rnd({b, h, v, k}), {}, kv); }, "'h0'");
  expect_error(
      [&] {
        call(q, kk, vv, bt, g, h0, {}, DeltaOptions{DeltaGate::KeyVector, -1.0});
      },
      "scale");
  // cu_seqlens: B must be 1, start at 0, non-decreasing, end at T.
  auto first = [](const Tensor& y) { return Variable(y.narrow(0, 0, 1).contiguous()); };
  const Variable q1 = first(x.q), k1 = first(x.k), v1 = first(x.v), b1 = first(x.beta),
                 g1 = first(x.g);
  auto cu = [](std::vector<int64_t> c) { return Tensor::from_vector(c, {int64_t(c.size())}); };
  expect_error([&] { call(q, kk, vv, bt, g, h0, cu({0, 2, 5}), kv); }, "B = 1");
  expect_error([&] { call(q1, k1, v1, b1, g1, h0, cu({0, 4, 3}), kv); }, "non-decreasing");
  expect_error([&] { call(q1, k1, v1, b1, g1, h0, cu({0, 2, 3, 5}), kv); }, "'h0'");
  EXPECT_NO_THROW(call(q1, k1, v1, b1, g1, h0, cu({0, 2, 5}), kv));
  // Args API: output / gradient shapes and dtypes.
  DeltaFwdArgs fa = fwd_args(x, Tensor(), DeltaGate::KeyVector, true);
  fa.o = Tensor::empty({b, t, h, v + 1}, DType::F64);
  expect_error([&] { delta_rule_fwd(fa); }, "'o'");
  fa.o = x.v.empty_like();
  fa.ht = Tensor::empty({b, h, k, v}, DType::F32);
  expect_error([&] { delta_rule_fwd(fa); }, "'ht'");
  fa.ht = Tensor();
  fa.q = x.q.transpose(1, 2).contiguous().transpose(1, 2);
  expect_error([&] { delta_rule_fwd(fa); }, "contiguous");
  fa.q = x.q;
  DeltaBwdArgs ba = bwd_args(fa, x.v.zeros_like(), Tensor());
  ba.dbeta = Tensor::empty({b, t, h}, DType::F32);
  expect_error([&] { delta_rule_bwd(ba); }, "'dbeta'");
  ba.dbeta = Tensor();
  ba.dg = Tensor::empty({b, t, h}, DType::F64);
  expect_error([&] { delta_rule_bwd(ba); }, "'dg'");
  ba.dg = Tensor();
  ba.dout = Tensor();
  expect_error([&] { delta_rule_bwd(ba); }, "dout");
  // Every CPU request is supported; the CUDA paths of a CPU-only build refuse with the reason.
  EXPECT_TRUE(delta_rule_supports(fa).ok);
  EXPECT_STREQ(delta_gate_name(DeltaGate::KeyVector), "key_vector");
  EXPECT_STREQ(delta_gate_name(DeltaGate::HeadScalar), "head_scalar");
  EXPECT_STREQ(delta_gate_name(DeltaGate::None), "none");
  EXPECT_DOUBLE_EQ(delta_scale(0, 16), 0.25);
  EXPECT_DOUBLE_EQ(delta_scale(0.5, 16), 0.5);
}
