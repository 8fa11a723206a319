// CPU reference for cross-entropy, fp64 per row.
#include <cmath>

#include "core/check.h"
#include "core/dispatch.h"
#include "kernels/cross_entropy/cross_entropy.h"

namespace seqmix {

namespace {
template <typename T, typename I, typename S>
void fwd(const CrossEntropyFwdArgs& a) {
  const int64_t n = a.logits.size(0), v = a.logits.size(1);
  const T* x = a.logits.data<T>();
  const I* t = a.targets.data<I>();
  S* lse = a.lse.data<S>();
  double total = 0, count = 0;
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * v;
    double m = -INFINITY;
    for (int64_t j = 0; j < v; ++j) m = std::max(m, double(to_acc<acc_t<T>>(xr[j])));
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(double(to_acc<acc_t<T>>(xr[j])) - m);
    const double l = m + std::log(s);
    lse[r] = S(l);
    const int64_t tr = int64_t(t[r]);
    if (tr == a.ignore_index) continue;
    SEQMIX_CHECK(tr >= 0 && tr < v, "cross_entropy: target {} of row {} is outside [0, {})", tr, r,
                 v);
    total += l - double(to_acc<acc_t<T>>(xr[tr]));
    count += 1;
  }
  *a.count.data<S>() = S(count);
  *a.loss.data<S>() = S(a.reduction == LossReduction::Mean ? total / count : total);
}

template <typename T, typename I, typename S>
void bwd(const CrossEntropyBwdArgs& a) {
  const int64_t n = a.logits.size(0), v = a.logits.size(1);
  const T* x = a.logits.data<T>();
  const I* t = a.targets.data<I>();
  const S* lse = a.lse.data<S>();
  T* dx = a.dlogits.data<T>();
  const double count = double(*a.count.data<S>());
  const double scale =
      double(*a.dloss.data<S>()) / (a.reduction == LossReduction::Mean ? count : 1.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t tr = int64_t(t[r]);
    const bool ignored = tr == a.ignore_index;
    for (int64_t j = 0; j < v; ++j) {
      double g = 0;
      if (!ignored) {
        const double p = std::exp(double(to_acc<acc_t<T>>(x[r * v + j])) - double(lse[r]));
        g = scale * (p - (j == tr ? 1.0 : 0.0));
      }
      dx[r * v + j] = from_acc<T>(acc_t<T>(g));
    }
  }
}
}  // namespace

void cross_entropy_fwd_ref(const CrossEntropyFwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.logits.dtype(), "cross_entropy", T, {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    SEQMIX_DISPATCH_INDEX(a.targets.dtype(), "cross_entropy", I, (fwd<T, I, S>(a)));
  });
}

void cross_entropy_bwd_ref(const CrossEntropyBwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.logits.dtype(), "cross_entropy_bwd", T, {
    using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
    SEQMIX_DISPATCH_INDEX(a.targets.dtype(), "cross_entropy_bwd", I, (bwd<T, I, S>(a)));
  });
}

}  // namespace seqmix
