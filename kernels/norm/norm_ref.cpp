// CPU reference for RMSNorm / LayerNorm, fp64 per row; dw/db summed in fp64, then added to the
// gradients with one rounding (add_rounded_once).
#include <cmath>
#include <vector>

#include "core/dispatch.h"
#include "kernels/common/reference.h"
#include "kernels/norm/norm.h"

namespace seqmix {

namespace {
// Reads a [C] parameter of any floating dtype as double (1 / 0 when absent).
struct Param {
  std::vector<double> v;
  Param(const Tensor& t, int64_t c, double absent) {
    v = t.defined() ? t.to_vector<double>() : std::vector<double>(size_t(c), absent);
  }
  double operator[](int64_t i) const { return v[size_t(i)]; }
};

template <typename T>
double ld(const T* p, int64_t i) {
  return double(to_acc<acc_t<T>>(p[i]));
}

template <typename T>
void fwd(const NormFwdArgs& a) {
  const int64_t c = a.x.size(-1), n = a.x.numel() / c;
  const T* x = a.x.data<T>();
  T* y = a.y.data<T>();
  const Param w(a.weight, c, 1.0), b(a.bias, c, 0.0);
  std::vector<double> mean_v(static_cast<size_t>(n)), rstd_v(static_cast<size_t>(n));
#pragma omp parallel for if (n * c > (1 << 15)) schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * c;
    double mu = 0, var = 0;
    if (a.kind == NormKind::Layer) {
      for (int64_t j = 0; j < c; ++j) mu += ld(xr, j);
      mu /= double(c);
    }
    for (int64_t j = 0; j < c; ++j) var += (ld(xr, j) - mu) * (ld(xr, j) - mu);
    const double rs = 1.0 / std::sqrt(var / double(c) + a.eps);
    for (int64_t j = 0; j < c; ++j)
      y[r * c + j] = from_acc<T>(acc_t<T>((ld(xr, j) - mu) * rs * w[j] + b[j]));
    mean_v[size_t(r)] = mu;
    rstd_v[size_t(r)] = rs;
  }
  if (a.mean.defined()) a.mean.copy_(Tensor::from_vector(mean_v, {n}));
  if (a.rstd.defined()) a.rstd.copy_(Tensor::from_vector(rstd_v, {n}));
}

template <typename T>
void bwd(const NormBwdArgs& a) {
  const int64_t c = a.x.size(-1), n = a.x.numel() / c;
  const T* x = a.x.data<T>();
  const T* dy = a.dy.data<T>();
  const Param w(a.weight, c, 1.0);
  const std::vector<double> rstd = a.rstd.to_vector<double>();
  const std::vector<double> mean =
      a.kind == NormKind::Layer ? a.mean.to_vector<double>() : std::vector<double>(size_t(n), 0.0);
  std::vector<double> dw(static_cast<size_t>(c), 0.0), db(static_cast<size_t>(c), 0.0);
  T* dx = a.dx.defined() ? a.dx.data<T>() : nullptr;
  for (int64_t r = 0; r < n; ++r) {
    const double rs = rstd[size_t(r)], mu = mean[size_t(r)];
    double sg = 0, sgx = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double xh = (ld(x, r * c + j) - mu) * rs, gy = ld(dy, r * c + j);
      const double g = gy * w[j];
      sg += g;
      sgx += g * xh;
      dw[size_t(j)] += gy * xh;
      db[size_t(j)] += gy;
    }
    sg /= double(c);
    sgx /= double(c);
    if (!dx) continue;
    for (int64_t j = 0; j < c; ++j) {
      const double xh = (ld(x, r * c + j) - mu) * rs;
      const double g = ld(dy, r * c + j) * w[j];
      const double v = rs * (g - (a.kind == NormKind::Layer ? sg : 0.0) - xh * sgx);
      dx[r * c + j] = from_acc<T>(acc_t<T>(v));
    }
  }
  if (a.dweight.defined()) add_rounded_once(a.dweight, dw);
  if (a.dbias.defined()) add_rounded_once(a.dbias, db);
}
}  // namespace

void norm_fwd_ref(const NormFwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.x.dtype(), "norm", T, fwd<T>(a));
}
void norm_bwd_ref(const NormBwdArgs& a) {
  SEQMIX_DISPATCH_FLOAT(a.x.dtype(), "norm_bwd", T, bwd<T>(a));
}

}  // namespace seqmix
