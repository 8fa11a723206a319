// CPU reference for the delta-rule family (DeltaNet, Gated DeltaNet, KDA): the literal recurrence
// per (sequence, head), state and every sum in fp64 whatever the input dtype, OpenMP over
// (sequence, head). One step, with P = D_t S_{t-1} (D_t = exp(g_t), per key row):
//   u_t = v_t − Pᵀ k_t;  S_t = P + β_t k_t u_tᵀ;  o_t = scale · S_tᵀ q_t
// which is S_t = (I − β_t k_t k_tᵀ) D_t S_{t-1} + β_t k_t v_tᵀ. With l2norm_qk, q and k are first
// replaced by x / sqrt(Σ x² + 1e-6) (in fp64 here).
// Backward, from states recomputed forward (checkpoints every kCkpt steps, then one chunk of
// states at a time), walking time in reverse with dS = the gradient of S_t (dht after the end):
//   dS += scale q_t do_tᵀ;  dq_t = scale S_t do_t;  du = β_t dSᵀ k_t;  dv_t = du;
//   dβ_t = k_tᵀ dS u_t;  dk_t = β_t dS u_t − P du;  dP = dS − k_t duᵀ;
//   dg_t[i] = Σ_j dP[i,j] P[i,j] (summed over i too for HeadScalar);  dS ← D_t dP
// then dq, dk through the L2 normalisation: dx = (dx̂ − x̂ (x̂·dx̂)) / sqrt(Σ x² + 1e-6).
// Layouts as in delta_rule.h: q, k [B, T, H, K]; v, o [B, T, H, V]; beta [B, T, H];
// h0, ht [N, H, K, V]; g per gate mode. Memory per task: ceil(L / kCkpt) + kCkpt + 1 states of
// K×V doubles.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "kernels/delta_rule/delta_rule.h"

namespace seqmix {

namespace {

constexpr int64_t kCkpt = 64;    // steps between stored states in the backward
constexpr double kL2Eps = 1e-6;  // q / sqrt(Σ q² + kL2Eps)

template <typename T>
inline double ld(const T* p, int64_t i) {
  return double(to_acc<acc_t<T>>(p[i]));
}

template <typename T>
inline T st(double v) {
  return from_acc<T>(acc_t<T>(v));
}

// Per-thread scratch for one token: normalised q, k (and the norms' reciprocals), v, the decay
// D_t per key row, and β_t.
struct Token {
  std::vector<double> q, k, v, d;
  double rq = 1, rk = 1, beta = 0;
  Token(int64_t kn, int64_t vn) : q(size_t(kn)), k(size_t(kn)), v(size_t(vn)), d(size_t(kn)) {}
};

// Dimensions, pointers and sequence bounds shared by forward and backward. A = the state/gate
// element type (float, or double for f64 inputs).
template <typename T>
struct Problem {
  using A = acc_t<T>;
  int64_t b_n = 0, t_n = 0, h_n = 0, k_n = 0, v_n = 0, n_n = 0;
  double scale = 1;
  DeltaGate gate = DeltaGate::None;
  bool l2 = false;
  const T *q = nullptr, *k = nullptr, *v = nullptr;
  const A* beta = nullptr;
  const A* g = nullptr;
  const A* h0 = nullptr;
  const int64_t* cu = nullptr;

  Problem(const Tensor& tq, const Tensor& tk, const Tensor& tv, const Tensor& tbeta,
          const Tensor& tg, const Tensor& th0, const Tensor& tcu, DeltaGate gt, double sc,
          bool l2norm) {
    b_n = tq.size(0);
    t_n = tq.size(1);
    h_n = tq.size(2);
    k_n = tq.size(3);
    v_n = tv.size(3);
    gate = gt;
    l2 = l2norm;
    scale = delta_scale(sc, k_n);
    q = tq.data<T>();
    k = tk.data<T>();
    v = tv.data<T>();
    beta = tbeta.data<A>();
    g = gt == DeltaGate::None ? nullptr : tg.data<A>();
    h0 = th0.defined() ? th0.data<A>() : nullptr;
    cu = tcu.defined() ? tcu.data<int64_t>() : nullptr;
    n_n = cu ? tcu.size(0) - 1 : b_n;
  }
  // Token range [bos, eos) of sequence n in the flattened B·T time axis.
  int64_t bos(int64_t n) const { return cu ? cu[n] : n * t_n; }
  int64_t eos(int64_t n) const { return cu ? cu[n + 1] : (n + 1) * t_n; }

  // Loads the K values of `src` into `dst`, L2-normalised when l2; returns 1/sqrt(Σ x² + eps) (1
  // without normalisation).
  double load_vec(const T* src, double* dst) const {
    double ss = 0;
    for (int64_t i = 0; i < k_n; ++i) {
      dst[i] = ld(src, i);
      ss += dst[i] * dst[i];
    }
    if (!l2) return 1.0;
    const double r = 1.0 / std::sqrt(ss + kL2Eps);
    for (int64_t i = 0; i < k_n; ++i) dst[i] *= r;
    return r;
  }
  // Everything token `tok` (flattened B·T index) of head h contributes.
  void load(int64_t tok, int64_t h, Token& x) const {
    const int64_t qk_off = (tok * h_n + h) * k_n, v_off = (tok * h_n + h) * v_n;
    x.rq = load_vec(q + qk_off, x.q.data());
    x.rk = load_vec(k + qk_off, x.k.data());
    for (int64_t j = 0; j < v_n; ++j) x.v[size_t(j)] = ld(v + v_off, j);
    x.beta = double(beta[tok * h_n + h]);
    switch (gate) {
      case DeltaGate::None:
        std::fill(x.d.begin(), x.d.end(), 1.0);
        break;
      case DeltaGate::HeadScalar:
        std::fill(x.d.begin(), x.d.end(), std::exp(double(g[tok * h_n + h])));
        break;
      case DeltaGate::KeyVector:
        for (int64_t i = 0; i < k_n; ++i) x.d[size_t(i)] = std::exp(double(g[qk_off + i]));
        break;
    }
  }
  // One step in place: S ← P + β k uᵀ with P = D S, u = v − Pᵀ k (`u` receives u, [V]).
  void step(const Token& x, double* s, double* u) const {
    for (int64_t j = 0; j < v_n; ++j) u[j] = x.v[size_t(j)];
    for (int64_t i = 0; i < k_n; ++i) {
      double* row = s + i * v_n;
      const double di = x.d[size_t(i)], ki = x.k[size_t(i)];
      for (int64_t j = 0; j < v_n; ++j) {
        row[j] *= di;
        u[j] -= ki * row[j];
      }
    }
    for (int64_t i = 0; i < k_n; ++i) {
      double* row = s + i * v_n;
      const double bk = x.beta * x.k[size_t(i)];
      for (int64_t j = 0; j < v_n; ++j) row[j] += bk * u[j];
    }
  }
  void load_h0(int64_t n, int64_t h, double* s) const {
    const int64_t kv = k_n * v_n;
    if (!h0) {
      std::fill(s, s + kv, 0.0);
      return;
    }
    const A* src = h0 + (n * h_n + h) * kv;
    for (int64_t x = 0; x < kv; ++x) s[x] = double(src[x]);
  }
};

template <typename T>
void fwd(const DeltaFwdArgs& a) {
  using A = acc_t<T>;
  const Problem<T> p(a.q, a.k, a.v, a.beta, a.g, a.h0, a.cu_seqlens, a.gate, a.scale, a.l2norm_qk);
  T* o = a.o.data<T>();
  A* ht = a.ht.defined() ? a.ht.data<A>() : nullptr;
  const int64_t kv = p.k_n * p.v_n;
#pragma omp parallel
  {
    std::vector<double> s(static_cast<size_t>(kv)), u(size_t(p.v_n)), ob(size_t(p.v_n));
    Token x(p.k_n, p.v_n);
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t n = 0; n < p.n_n; ++n) {
      for (int64_t h = 0; h < p.h_n; ++h) {
        p.load_h0(n, h, s.data());
        for (int64_t tok = p.bos(n); tok < p.eos(n); ++tok) {
          p.load(tok, h, x);
          p.step(x, s.data(), u.data());
          std::fill(ob.begin(), ob.end(), 0.0);
          for (int64_t i = 0; i < p.k_n; ++i) {
            const double qi = x.q[size_t(i)];
            const double* row = s.data() + i * p.v_n;
            for (int64_t j = 0; j < p.v_n; ++j) ob[size_t(j)] += qi * row[j];
          }
          T* ot = o + (tok * p.h_n + h) * p.v_n;
          for (int64_t j = 0; j < p.v_n; ++j) ot[j] = st<T>(p.scale * ob[size_t(j)]);
        }
        if (ht) {
          A* dst = ht + (n * p.h_n + h) * kv;
          for (int64_t e = 0; e < kv; ++e) dst[e] = A(s[size_t(e)]);
        }
      }
    }
  }
}

// dx̂ (in `dxh`, [K]) → dx through x̂ = x r, r = 1/sqrt(Σ x² + eps): dx = r (dx̂ − x̂ (x̂·dx̂)).
// Without normalisation dx = dx̂.
template <typename T>
void write_grad_through_l2(bool l2, const double* xh, double r, const double* dxh, int64_t kn,
                           T* dst) {
  if (!l2) {
    for (int64_t i = 0; i < kn; ++i) dst[i] = st<T>(dxh[i]);
    return;
  }
  double dot = 0;
  for (int64_t i = 0; i < kn; ++i) dot += xh[i] * dxh[i];
  for (int64_t i = 0; i < kn; ++i) dst[i] = st<T>(r * (dxh[i] - xh[i] * dot));
}

template <typename T>
void bwd(const DeltaBwdArgs& a) {
  using A = acc_t<T>;
  const Problem<T> p(a.q, a.k, a.v, a.beta, a.g, a.h0, a.cu_seqlens, a.gate, a.scale, a.l2norm_qk);
  const T* dout = a.dout.data<T>();
  const A* dht = a.dht.defined() ? a.dht.data<A>() : nullptr;
  T* dq = a.dq.defined() ? a.dq.data<T>() : nullptr;
  T* dk = a.dk.defined() ? a.dk.data<T>() : nullptr;
  T* dv = a.dv.defined() ? a.dv.data<T>() : nullptr;
  A* dbeta = a.dbeta.defined() ? a.dbeta.data<A>() : nullptr;
  const bool gated = p.gate != DeltaGate::None;
  A* dg = gated && a.dg.defined() ? a.dg.data<A>() : nullptr;
  A* dh0 = a.dh0.defined() ? a.dh0.data<A>() : nullptr;
  if (!dq && !dk && !dv && !dbeta && !dg && !dh0) return;
  const int64_t kn = p.k_n, vn = p.v_n, kv = kn * vn;
#pragma omp parallel
  {
    // Unlike gated linear attention, every gradient of the delta rule needs the states (the
    // update u_t = v_t − Pᵀ k_t depends on the state), so they are always recomputed.
    std::vector<double> ckpt, states, pm(static_cast<size_t>(kv)), ds(static_cast<size_t>(kv)),
        u(static_cast<size_t>(vn)), du(static_cast<size_t>(vn)), dob(static_cast<size_t>(vn)),
        dqh(static_cast<size_t>(kn)), dkh(static_cast<size_t>(kn));
    Token x(kn, vn);
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t n = 0; n < p.n_n; ++n) {
      for (int64_t h = 0; h < p.h_n; ++h) {
        const int64_t bos = p.bos(n), eos = p.eos(n), len = eos - bos;
        const int64_t n_ck = (len + kCkpt - 1) / kCkpt;
        // Forward pass: the state before each chunk of kCkpt steps.
        ckpt.resize(size_t(n_ck * kv));
        states.resize(size_t((std::min(len, kCkpt) + 1) * kv));
        double* s = states.data();  // scratch for the checkpoint pass
        p.load_h0(n, h, s);
        for (int64_t tok = bos; tok < eos; ++tok) {
          if ((tok - bos) % kCkpt == 0)
            std::copy(s, s + kv, ckpt.begin() + (tok - bos) / kCkpt * kv);
          p.load(tok, h, x);
          p.step(x, s, u.data());
        }
        // dS = dht (the gradient flowing into the state after the last step).
        if (dht) {
          const A* src = dht + (n * p.h_n + h) * kv;
          for (int64_t e = 0; e < kv; ++e) ds[size_t(e)] = double(src[e]);
        } else {
          std::fill(ds.begin(), ds.end(), 0.0);
        }
        for (int64_t c = n_ck - 1; c >= 0; --c) {
          const int64_t t0 = bos + c * kCkpt, t1 = std::min(eos, t0 + kCkpt);
          // states[w] = S_{t0 + w - 1}: the state before token t0 + w.
          std::copy(ckpt.begin() + c * kv, ckpt.begin() + (c + 1) * kv, states.begin());
          for (int64_t tok = t0; tok < t1; ++tok) {
            double* next = states.data() + (tok - t0 + 1) * kv;
            std::copy(next - kv, next, next);
            p.load(tok, h, x);
            p.step(x, next, u.data());
          }
          for (int64_t tok = t1 - 1; tok >= t0; --tok) {
            const int64_t qk_off = (tok * p.h_n + h) * kn, v_off = (tok * p.h_n + h) * vn;
            p.load(tok, h, x);
            for (int64_t j = 0; j < vn; ++j) dob[size_t(j)] = ld(dout + v_off, j);
            const double* s_prev = states.data() + (tok - t0) * kv;
            const double* s_t = s_prev + kv;
            // P = D S_{t-1}; u = v − Pᵀ k.
            std::copy(x.v.begin(), x.v.end(), u.begin());
            for (int64_t i = 0; i < kn; ++i) {
              const double di = x.d[size_t(i)], ki = x.k[size_t(i)];
              for (int64_t j = 0; j < vn; ++j) {
                const double pij = di * s_prev[i * vn + j];
                pm[size_t(i * vn + j)] = pij;
                u[size_t(j)] -= ki * pij;
              }
            }
            // dq̂_t = scale S_t do_t (o_t reads S_t, so before dS takes o_t's term it is only
            // needed for dq; the order of the two does not matter).
            for (int64_t i = 0; i < kn; ++i) {
              double acc = 0;
              for (int64_t j = 0; j < vn; ++j) acc += s_t[i * vn + j] * dob[size_t(j)];
              dqh[size_t(i)] = p.scale * acc;
            }
            // dS_t += scale q̂_t do_tᵀ.
            for (int64_t i = 0; i < kn; ++i) {
              const double sq = p.scale * x.q[size_t(i)];
              double* row = ds.data() + i * vn;
              for (int64_t j = 0; j < vn; ++j) row[j] += sq * dob[size_t(j)];
            }
            // du = β dSᵀ k;  dβ = kᵀ dS u;  dS u (→ dk̂ first term).
            std::fill(du.begin(), du.end(), 0.0);
            double dbeta_t = 0;
            for (int64_t i = 0; i < kn; ++i) {
              const double ki = x.k[size_t(i)];
              const double* row = ds.data() + i * vn;
              double dsu = 0;
              for (int64_t j = 0; j < vn; ++j) {
                du[size_t(j)] += ki * row[j];
                dsu += row[j] * u[size_t(j)];
              }
              dkh[size_t(i)] = x.beta * dsu;
              dbeta_t += ki * dsu;
            }
            for (int64_t j = 0; j < vn; ++j) du[size_t(j)] *= x.beta;
            // dk̂ −= P du;  dP = dS − k duᵀ (in place);  dg from dP ⊙ P;  dS_{t-1} = D dP.
            double dg_total = 0;
            for (int64_t i = 0; i < kn; ++i) {
              const double ki = x.k[size_t(i)], di = x.d[size_t(i)];
              const double* prow = pm.data() + i * vn;
              double* row = ds.data() + i * vn;
              double pdu = 0, dgi = 0;
              for (int64_t j = 0; j < vn; ++j) {
                pdu += prow[j] * du[size_t(j)];
                row[j] -= ki * du[size_t(j)];
                dgi += row[j] * prow[j];
                row[j] *= di;
              }
              dkh[size_t(i)] -= pdu;
              if (dg && p.gate == DeltaGate::KeyVector) dg[qk_off + i] = A(dgi);
              dg_total += dgi;
            }
            if (dg && p.gate == DeltaGate::HeadScalar) dg[tok * p.h_n + h] = A(dg_total);
            if (dbeta) dbeta[tok * p.h_n + h] = A(dbeta_t);
            if (dv)
              for (int64_t j = 0; j < vn; ++j) dv[v_off + j] = st<T>(du[size_t(j)]);
            if (dq) write_grad_through_l2(p.l2, x.q.data(), x.rq, dqh.data(), kn, dq + qk_off);
            if (dk) write_grad_through_l2(p.l2, x.k.data(), x.rk, dkh.data(), kn, dk + qk_off);
          }
        }
        if (dh0) {
          A* dst = dh0 + (n * p.h_n + h) * kv;
          for (int64_t e = 0; e < kv; ++e) dst[e] = A(ds[size_t(e)]);
        }
      }
    }
  }
}

}  // namespace

void delta_rule_fwd_ref(const DeltaFwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.q.dtype(), "delta_rule", T, fwd<T>(a));
}

void delta_rule_bwd_ref(const DeltaBwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.q.dtype(), "delta_rule_bwd", T, bwd<T>(a));
}

}  // namespace seqmix
