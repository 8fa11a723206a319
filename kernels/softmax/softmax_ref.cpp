// CPU reference for softmax / log_softmax: per row, in fp64.
#include <cmath>

#include "core/dispatch.h"
#include "kernels/softmax/softmax.h"

namespace seqmix {

namespace {
template <typename T>
void fwd(const T* x, T* y, int64_t n, int64_t c, bool log) {
#pragma omp parallel for if (n * c > (1 << 15)) schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * c;
    T* yr = y + r * c;
    double m = -INFINITY;
    for (int64_t j = 0; j < c; ++j) m = std::max(m, double(to_acc<acc_t<T>>(xr[j])));
    double s = 0;
    for (int64_t j = 0; j < c; ++j) s += std::exp(double(to_acc<acc_t<T>>(xr[j])) - m);
    const double lse = m + std::log(s);
    for (int64_t j = 0; j < c; ++j) {
      const double v = double(to_acc<acc_t<T>>(xr[j])) - lse;
      yr[j] = from_acc<T>(acc_t<T>(log ? v : std::exp(v)));
    }
  }
}

template <typename T>
void bwd(const T* y, const T* dy, T* dx, int64_t n, int64_t c, bool log) {
#pragma omp parallel for if (n * c > (1 << 15)) schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const T *yr = y + r * c, *gr = dy + r * c;
    T* dr = dx + r * c;
    double s = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double g = double(to_acc<acc_t<T>>(gr[j]));
      s += log ? g : g * double(to_acc<acc_t<T>>(yr[j]));
    }
    for (int64_t j = 0; j < c; ++j) {
      const double yv = double(to_acc<acc_t<T>>(yr[j])), g = double(to_acc<acc_t<T>>(gr[j]));
      const double v = log ? g - std::exp(yv) * s : yv * (g - s);
      dr[j] = from_acc<T>(acc_t<T>(v));
    }
  }
}
}  // namespace

void softmax_fwd_ref(const SoftmaxFwdArgs& a) {
  const int64_t c = a.x.size(-1), n = c ? a.x.numel() / c : 0;
  SEQMIX_DISPATCH_FLOAT(a.x.dtype(), "softmax", T,
                        fwd<T>(a.x.data<T>(), a.y.data<T>(), n, c, a.log));
}

void softmax_bwd_ref(const SoftmaxBwdArgs& a) {
  const int64_t c = a.y.size(-1), n = c ? a.y.numel() / c : 0;
  SEQMIX_DISPATCH_FLOAT(a.y.dtype(), "softmax_bwd", T,
                        bwd<T>(a.y.data<T>(), a.dy.data<T>(), a.dx.data<T>(), n, c, a.log));
}

}  // namespace seqmix
