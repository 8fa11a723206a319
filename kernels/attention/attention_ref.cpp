// CPU reference for softmax attention: the literal formula per query row (scores over the visible
// keys, max-subtracted softmax, weighted sum), fp64 accumulation, OpenMP over (B, heads).
//   o_i = sum_j softmax_j(scale q_i . k_j) v_j over j in [lo(i), hi(i))
// Backward from the saved lse: p_ij = exp(s_ij - lse_i), Di = dO_i . O_i,
//   dS_ij = p_ij (dO_i . v_j - Di); dq_i = scale sum_j dS_ij k_j; dk_j = scale sum_i dS_ij q_i;
//   dv_j = sum_i p_ij dO_i.
// Memory: one [T] row buffer per thread (forward), one [T, D] fp64 dK/dV buffer per kv head being
// reduced (backward); O(T^2 D) work, never a [T, T] matrix.
// Layouts as in attention.h: q/o [B, T, H, D], k/v [B, T, Hkv, D], lse [B, H, T].
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/dispatch.h"
#include "kernels/attention/attention.h"

namespace seqmix {

namespace {

template <typename T>
inline double ld(const T* p, int64_t i) {
  return double(to_acc<acc_t<T>>(p[i]));
}

template <typename T>
inline T st(double v) {
  return from_acc<T>(acc_t<T>(v));
}

// Visible keys [lo, hi) of query i.
struct Range {
  int64_t t;
  bool causal;
  int64_t window;
  int64_t lo(int64_t i) const { return window > 0 ? std::max<int64_t>(0, i - window + 1) : 0; }
  int64_t hi(int64_t i) const { return causal ? i + 1 : t; }
};

template <typename T>
void fwd(const AttentionFwdArgs& a) {
  const int64_t b_n = a.q.size(0), t_n = a.q.size(1), h_n = a.q.size(2), d_n = a.q.size(3);
  const int64_t hkv = a.k.size(2), group = h_n / hkv;
  const double scale = attention_scale(a.scale, d_n);
  const Range rg{t_n, a.causal, a.window};
  const T* q = a.q.data<T>();
  const T* k = a.k.data<T>();
  const T* v = a.v.data<T>();
  T* o = a.o.data<T>();
  const bool f64_lse = a.lse.defined() && a.lse.dtype() == DType::F64;
  float* lse32 = a.lse.defined() && !f64_lse ? a.lse.data<float>() : nullptr;
  double* lse64 = f64_lse ? a.lse.data<double>() : nullptr;
#pragma omp parallel
  {
    std::vector<double> s(static_cast<size_t>(t_n)), acc(static_cast<size_t>(d_n));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < b_n; ++b) {
      for (int64_t h = 0; h < h_n; ++h) {
        const int64_t g = h / group;
        for (int64_t i = 0; i < t_n; ++i) {
          const T* qi = q + ((b * t_n + i) * h_n + h) * d_n;
          const int64_t lo = rg.lo(i), hi = rg.hi(i);
          double m = -std::numeric_limits<double>::infinity();
          for (int64_t j = lo; j < hi; ++j) {
            const T* kj = k + ((b * t_n + j) * hkv + g) * d_n;
            double dot = 0;
            for (int64_t d = 0; d < d_n; ++d) dot += ld(qi, d) * ld(kj, d);
            s[size_t(j)] = dot * scale;
            m = std::max(m, s[size_t(j)]);
          }
          double l = 0;
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t j = lo; j < hi; ++j) {
            const double p = std::exp(s[size_t(j)] - m);
            l += p;
            const T* vj = v + ((b * t_n + j) * hkv + g) * d_n;
            for (int64_t d = 0; d < d_n; ++d) acc[size_t(d)] += p * ld(vj, d);
          }
          T* oi = o + ((b * t_n + i) * h_n + h) * d_n;
          for (int64_t d = 0; d < d_n; ++d) oi[d] = st<T>(acc[size_t(d)] / l);
          const double lse = m + std::log(l);
          if (lse32) lse32[(b * h_n + h) * t_n + i] = float(lse);
          if (lse64) lse64[(b * h_n + h) * t_n + i] = lse;
        }
      }
    }
  }
}

template <typename T>
void bwd(const AttentionBwdArgs& a) {
  const int64_t b_n = a.q.size(0), t_n = a.q.size(1), h_n = a.q.size(2), d_n = a.q.size(3);
  const int64_t hkv = a.k.size(2), group = h_n / hkv;
  const double scale = attention_scale(a.scale, d_n);
  const Range rg{t_n, a.causal, a.window};
  const T* q = a.q.data<T>();
  const T* k = a.k.data<T>();
  const T* v = a.v.data<T>();
  const T* o = a.o.data<T>();
  const T* dout = a.dout.data<T>();
  const std::vector<double> lse = a.lse.to_vector<double>();
  T* dq = a.dq.defined() ? a.dq.data<T>() : nullptr;
  T* dk = a.dk.defined() ? a.dk.data<T>() : nullptr;
  T* dv = a.dv.defined() ? a.dv.data<T>() : nullptr;
  if (!dq && !dk && !dv) return;
    // One task per (b, kv head): it owns dk/dv of that head and dq of the heads of its group, so
    // every output element is written by exactly one thread.
#pragma omp parallel
  {
    const size_t td = size_t(t_n * d_n);
    std::vector<double> dkb(dk ? td : 0), dvb(dv ? td : 0), dqi(static_cast<size_t>(d_n));
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t b = 0; b < b_n; ++b) {
      for (int64_t g = 0; g < hkv; ++g) {
        std::fill(dkb.begin(), dkb.end(), 0.0);
        std::fill(dvb.begin(), dvb.end(), 0.0);
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          for (int64_t i = 0; i < t_n; ++i) {
            const int64_t row = ((b * t_n + i) * h_n + h) * d_n;
            const T* qi = q + row;
            const T* doi = dout + row;
            double di = 0;
            for (int64_t d = 0; d < d_n; ++d) di += ld(doi, d) * ld(o + row, d);
            const double lse_i = lse[size_t((b * h_n + h) * t_n + i)];
            std::fill(dqi.begin(), dqi.end(), 0.0);
            for (int64_t j = rg.lo(i); j < rg.hi(i); ++j) {
              const int64_t krow = ((b * t_n + j) * hkv + g) * d_n;
              const T* kj = k + krow;
              const T* vj = v + krow;
              double sdot = 0, dp = 0;
              for (int64_t d = 0; d < d_n; ++d) {
                sdot += ld(qi, d) * ld(kj, d);
                dp += ld(doi, d) * ld(vj, d);
              }
              const double p = std::exp(sdot * scale - lse_i);
              const double ds = p * (dp - di) * scale;
              for (int64_t d = 0; d < d_n; ++d) {
                if (dq) dqi[size_t(d)] += ds * ld(kj, d);
                if (dk) dkb[size_t(j * d_n + d)] += ds * ld(qi, d);
                if (dv) dvb[size_t(j * d_n + d)] += p * ld(doi, d);
              }
            }
            if (dq)
              for (int64_t d = 0; d < d_n; ++d) dq[row + d] = st<T>(dqi[size_t(d)]);
          }
        }
        for (int64_t j = 0; j < t_n; ++j) {
          const int64_t krow = ((b * t_n + j) * hkv + g) * d_n;
          for (int64_t d = 0; d < d_n; ++d) {
            if (dk) dk[krow + d] = st<T>(dkb[size_t(j * d_n + d)]);
            if (dv) dv[krow + d] = st<T>(dvb[size_t(j * d_n + d)]);
          }
        }
      }
    }
  }
}

}  // namespace

double attention_scale(double scale, int64_t d) {
  return scale != 0 ? scale : 1.0 / std::sqrt(double(d));
}

void attention_fwd_ref(const AttentionFwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.q.dtype(), "attention", T, fwd<T>(a));
}
void attention_bwd_ref(const AttentionBwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.q.dtype(), "attention_bwd", T, bwd<T>(a));
}

}  // namespace seqmix
