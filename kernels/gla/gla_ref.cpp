// CPU reference for the gated linear attention family: the literal recurrence per (sequence,
// head), state and every sum in fp64 whatever the input dtype, OpenMP over (sequence, head).
//   S_t = G_t ⊙ S_{t-1} + k_tᵀ v_t,  o_t = scale · q_t S_t,  G_t = exp(g_t) broadcast over V
// Backward, from states recomputed forward (checkpoints every kCkpt steps, then one chunk of
// states at a time), walking time in reverse with D = G_{t+1} ⊙ dS_{t+1} (D = dht after the end):
//   dS_t = D + scale q_tᵀ do_t;  dq_t = scale do_t S_tᵀ;  dk_t = v_t dS_tᵀ;  dv_t = k_t dS_t;
//   dg_t[i] = G_t[i] Σ_j dS_t[i,j] S_{t-1}[i,j] (summed over i too for HeadScalar);
//   D ← G_t ⊙ dS_t;  dh0 = D at the start of the sequence.
// Layouts as in gla.h: q, k [B, T, H, K]; v, o [B, T, H, V]; h0, ht [N, H, K, V]; g per gate mode.
// Memory per task: ceil(L / kCkpt) checkpoints plus kCkpt + 1 states of K×V doubles.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/dispatch.h"
#include "kernels/gla/gla.h"

namespace seqmix {

namespace {

constexpr int64_t kCkpt = 64;  // steps between stored states in the backward

template <typename T>
inline double ld(const T* p, int64_t i) {
  return double(to_acc<acc_t<T>>(p[i]));
}

template <typename T>
inline T st(double v) {
  return from_acc<T>(acc_t<T>(v));
}

// Dimensions, pointers and sequence bounds shared by forward and backward. A = the state/gate
// element type (float, or double for f64 inputs).
template <typename T>
struct Problem {
  using A = acc_t<T>;
  int64_t b_n = 0, t_n = 0, h_n = 0, k_n = 0, v_n = 0, n_n = 0;
  double scale = 1;
  GlaGate gate = GlaGate::None;
  const T *q = nullptr, *k = nullptr, *v = nullptr;
  const A* g = nullptr;
  const A* h0 = nullptr;
  const int64_t* cu = nullptr;

  Problem(const Tensor& tq, const Tensor& tk, const Tensor& tv, const Tensor& tg, const Tensor& th0,
          const Tensor& tcu, GlaGate gt, double sc) {
    b_n = tq.size(0);
    t_n = tq.size(1);
    h_n = tq.size(2);
    k_n = tq.size(3);
    v_n = tv.size(3);
    gate = gt;
    scale = gla_scale(sc, k_n);
    q = tq.data<T>();
    k = tk.data<T>();
    v = tv.data<T>();
    g = gt == GlaGate::None ? nullptr : tg.data<A>();
    h0 = th0.defined() ? th0.data<A>() : nullptr;
    cu = tcu.defined() ? tcu.data<int64_t>() : nullptr;
    n_n = cu ? tcu.size(0) - 1 : b_n;
  }
  // Token range [bos, eos) of sequence n in the flattened B·T time axis.
  int64_t bos(int64_t n) const { return cu ? cu[n] : n * t_n; }
  int64_t eos(int64_t n) const { return cu ? cu[n + 1] : (n + 1) * t_n; }
  // Log-gates of token `tok` (flattened B·T index), head h, into `lg` [K] (zeros for None).
  void log_gate(int64_t tok, int64_t h, double* lg) const {
    switch (gate) {
      case GlaGate::None:
        std::fill(lg, lg + k_n, 0.0);
        break;
      case GlaGate::HeadConst:
        std::fill(lg, lg + k_n, double(g[h]));
        break;
      case GlaGate::HeadScalar:
        std::fill(lg, lg + k_n, double(g[tok * h_n + h]));
        break;
      case GlaGate::KeyVector:
        for (int64_t i = 0; i < k_n; ++i) lg[i] = double(g[(tok * h_n + h) * k_n + i]);
        break;
    }
  }
  // One step S ← G ⊙ S + kᵀ v for token `tok`; `gexp` receives G (K values).
  void step(int64_t tok, int64_t h, double* s, double* gexp, double* kb, double* vb) const {
    log_gate(tok, h, gexp);
    const T* kt = k + (tok * h_n + h) * k_n;
    const T* vt = v + (tok * h_n + h) * v_n;
    for (int64_t i = 0; i < k_n; ++i) {
      gexp[i] = gate == GlaGate::None ? 1.0 : std::exp(gexp[i]);
      kb[i] = ld(kt, i);
    }
    for (int64_t j = 0; j < v_n; ++j) vb[j] = ld(vt, j);
    for (int64_t i = 0; i < k_n; ++i) {
      double* row = s + i * v_n;
      const double gi = gexp[i], ki = kb[i];
      for (int64_t j = 0; j < v_n; ++j) row[j] = gi * row[j] + ki * vb[j];
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
void fwd(const GlaFwdArgs& a) {
  using A = acc_t<T>;
  const Problem<T> p(a.q, a.k, a.v, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  T* o = a.o.data<T>();
  A* ht = a.ht.defined() ? a.ht.data<A>() : nullptr;
  const int64_t kv = p.k_n * p.v_n;
#pragma omp parallel
  {
    std::vector<double> s(static_cast<size_t>(kv)), gexp(size_t(p.k_n)), kb(size_t(p.k_n)),
        qb(size_t(p.k_n)), vb(size_t(p.v_n)), ob(size_t(p.v_n));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t n = 0; n < p.n_n; ++n) {
      for (int64_t h = 0; h < p.h_n; ++h) {
        p.load_h0(n, h, s.data());
        for (int64_t tok = p.bos(n); tok < p.eos(n); ++tok) {
          p.step(tok, h, s.data(), gexp.data(), kb.data(), vb.data());
          const T* qt = p.q + (tok * p.h_n + h) * p.k_n;
          std::fill(ob.begin(), ob.end(), 0.0);
          for (int64_t i = 0; i < p.k_n; ++i) {
            const double qi = ld(qt, i);
            const double* row = s.data() + i * p.v_n;
            for (int64_t j = 0; j < p.v_n; ++j) ob[size_t(j)] += qi * row[j];
          }
          T* ot = o + (tok * p.h_n + h) * p.v_n;
          for (int64_t j = 0; j < p.v_n; ++j) ot[j] = st<T>(p.scale * ob[size_t(j)]);
        }
        if (ht) {
          A* dst = ht + (n * p.h_n + h) * kv;
          for (int64_t x = 0; x < kv; ++x) dst[x] = A(s[size_t(x)]);
        }
      }
    }
  }
}

template <typename T>
void bwd(const GlaBwdArgs& a) {
  using A = acc_t<T>;
  const Problem<T> p(a.q, a.k, a.v, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  const T* dout = a.dout.data<T>();
  const A* dht = a.dht.defined() ? a.dht.data<A>() : nullptr;
  T* dq = a.dq.defined() ? a.dq.data<T>() : nullptr;
  T* dk = a.dk.defined() ? a.dk.data<T>() : nullptr;
  T* dv = a.dv.defined() ? a.dv.data<T>() : nullptr;
  const bool gated = p.gate == GlaGate::HeadScalar || p.gate == GlaGate::KeyVector;
  A* dg = gated && a.dg.defined() ? a.dg.data<A>() : nullptr;
  A* dh0 = a.dh0.defined() ? a.dh0.data<A>() : nullptr;
  if (!dq && !dk && !dv && !dg && !dh0) return;
  const int64_t kn = p.k_n, vn = p.v_n, kv = kn * vn;
  // States are needed for dq and dg only; dk, dv, dh0 need just the reverse recurrence of dS.
  const bool need_states = dq || dg;
#pragma omp parallel
  {
    std::vector<double> ckpt, states, s(static_cast<size_t>(kv)), ds(static_cast<size_t>(kv)),
        gexp(static_cast<size_t>(kn)), kb(static_cast<size_t>(kn)), qb(static_cast<size_t>(kn)),
        vb(static_cast<size_t>(vn)), dob(static_cast<size_t>(vn)), acc(static_cast<size_t>(kn));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t n = 0; n < p.n_n; ++n) {
      for (int64_t h = 0; h < p.h_n; ++h) {
        const int64_t bos = p.bos(n), eos = p.eos(n), len = eos - bos;
        const int64_t n_ck = (len + kCkpt - 1) / kCkpt;
        // Forward pass: the state before each chunk of kCkpt steps.
        if (need_states) {
          ckpt.resize(size_t(n_ck * kv));
          p.load_h0(n, h, s.data());
          for (int64_t tok = bos; tok < eos; ++tok) {
            if ((tok - bos) % kCkpt == 0)
              std::copy(s.begin(), s.end(), ckpt.begin() + (tok - bos) / kCkpt * kv);
            p.step(tok, h, s.data(), gexp.data(), kb.data(), vb.data());
          }
          states.resize(size_t((std::min(len, kCkpt) + 1) * kv));
        }
        // D = dht (the gradient flowing into the state after the last step).
        if (dht) {
          const A* src = dht + (n * p.h_n + h) * kv;
          for (int64_t x = 0; x < kv; ++x) ds[size_t(x)] = double(src[x]);
        } else {
          std::fill(ds.begin(), ds.end(), 0.0);
        }
        for (int64_t c = n_ck - 1; c >= 0; --c) {
          const int64_t t0 = bos + c * kCkpt, t1 = std::min(eos, t0 + kCkpt);
          // states[u] = S_{t0 + u - 1}: the state before token t0 + u.
          if (need_states) {
            std::copy(ckpt.begin() + c * kv, ckpt.begin() + (c + 1) * kv, states.begin());
            for (int64_t tok = t0; tok < t1; ++tok) {
              double* next = states.data() + (tok - t0 + 1) * kv;
              std::copy(next - kv, next, next);
              p.step(tok, h, next, gexp.data(), kb.data(), vb.data());
            }
          }
          for (int64_t tok = t1 - 1; tok >= t0; --tok) {
            const int64_t qk_off = (tok * p.h_n + h) * kn, v_off = (tok * p.h_n + h) * vn;
            p.log_gate(tok, h, gexp.data());
            for (int64_t i = 0; i < kn; ++i) {
              gexp[size_t(i)] = p.gate == GlaGate::None ? 1.0 : std::exp(gexp[size_t(i)]);
              qb[size_t(i)] = ld(p.q + qk_off, i);
              kb[size_t(i)] = ld(p.k + qk_off, i);
            }
            for (int64_t j = 0; j < vn; ++j) {
              vb[size_t(j)] = ld(p.v + v_off, j);
              dob[size_t(j)] = ld(dout + v_off, j);
            }
            // dq_t = scale · do_t S_tᵀ
            if (dq) {
              const double* s_t = states.data() + (tok - t0 + 1) * kv;
              for (int64_t i = 0; i < kn; ++i) {
                double x = 0;
                for (int64_t j = 0; j < vn; ++j) x += dob[size_t(j)] * s_t[i * vn + j];
                dq[qk_off + i] = st<T>(p.scale * x);
              }
            }
            // dS_t = D + scale q_tᵀ do_t
            for (int64_t i = 0; i < kn; ++i) {
              const double sq = p.scale * qb[size_t(i)];
              double* row = ds.data() + i * vn;
              for (int64_t j = 0; j < vn; ++j) row[j] += sq * dob[size_t(j)];
            }
            if (dk) {
              for (int64_t i = 0; i < kn; ++i) {
                double x = 0;
                const double* row = ds.data() + i * vn;
                for (int64_t j = 0; j < vn; ++j) x += row[j] * vb[size_t(j)];
                dk[qk_off + i] = st<T>(x);
              }
            }
            if (dv) {
              std::fill(dob.begin(), dob.end(), 0.0);  // reused as the dv accumulator
              for (int64_t i = 0; i < kn; ++i) {
                const double ki = kb[size_t(i)];
                const double* row = ds.data() + i * vn;
                for (int64_t j = 0; j < vn; ++j) dob[size_t(j)] += ki * row[j];
              }
              for (int64_t j = 0; j < vn; ++j) dv[v_off + j] = st<T>(dob[size_t(j)]);
            }
            // dg_t[i] = G_t[i] Σ_j dS_t[i,j] S_{t-1}[i,j]
            if (dg) {
              const double* s_prev = states.data() + (tok - t0) * kv;
              double total = 0;
              for (int64_t i = 0; i < kn; ++i) {
                double x = 0;
                const double* row = ds.data() + i * vn;
                for (int64_t j = 0; j < vn; ++j) x += row[j] * s_prev[i * vn + j];
                acc[size_t(i)] = gexp[size_t(i)] * x;
                total += acc[size_t(i)];
              }
              if (p.gate == GlaGate::KeyVector) {
                for (int64_t i = 0; i < kn; ++i) dg[qk_off + i] = A(acc[size_t(i)]);
              } else {
                dg[tok * p.h_n + h] = A(total);
              }
            }
            // D ← G_t ⊙ dS_t
            if (p.gate != GlaGate::None) {
              for (int64_t i = 0; i < kn; ++i) {
                const double gi = gexp[size_t(i)];
                double* row = ds.data() + i * vn;
                for (int64_t j = 0; j < vn; ++j) row[j] *= gi;
              }
            }
          }
        }
        if (dh0) {
          A* dst = dh0 + (n * p.h_n + h) * kv;
          for (int64_t x = 0; x < kv; ++x) dst[x] = A(ds[size_t(x)]);
        }
      }
    }
  }
}

}  // namespace

void gla_fwd_ref(const GlaFwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.q.dtype(), "gla", T, fwd<T>(a));
}

void gla_bwd_ref(const GlaBwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.q.dtype(), "gla_bwd", T, bwd<T>(a));
}

}  // namespace seqmix
