// CPU reference for the short causal depthwise conv: the literal formula per (sequence, channel)
// in fp64 over an "extended" input xe[p], p in [-(W-1), L), where xe[p < 0] comes from state0.
// Backward recomputes z, then dx / dstate0 by the transposed conv and dweight / dbias as sums.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/common/reference.h"
#include "kernels/short_conv/short_conv.h"

namespace seqmix {

namespace {

// The sequences of a call: [start, end) token ranges into the flattened B*T axis.
struct Seqs {
  std::vector<int64_t> start, end;
};

Seqs sequences(const Tensor& x, const Tensor& cu) {
  Seqs s;
  const int64_t b = x.size(0), t = x.size(1);
  if (cu.defined()) {
    const std::vector<int64_t> o = cu.to_vector<int64_t>();
    for (size_t n = 0; n + 1 < o.size(); ++n) {
      s.start.push_back(o[n]);
      s.end.push_back(o[n + 1]);
    }
  } else {
    for (int64_t n = 0; n < b; ++n) {
      s.start.push_back(n * t);
      s.end.push_back(n * t + t);
    }
  }
  return s;
}

std::vector<double> vec_or(const Tensor& t, size_t n, double fill) {
  return t.defined() ? t.contiguous().to_vector<double>() : std::vector<double>(n, fill);
}

double sigmoid(double z) {
  return 1.0 / (1.0 + std::exp(-z));
}

// Reads the inputs shared by forward and backward.
struct Inputs {
  int64_t c = 0, w = 0, tokens = 0;
  Seqs seqs;
  std::vector<double> x, weight, bias, state0;
  Inputs(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Tensor& s0, const Tensor& cu)
      : c(xt.size(2)), w(wt.size(1)), tokens(xt.size(0) * xt.size(1)), seqs(sequences(xt, cu)) {
    x = xt.contiguous().to_vector<double>();
    weight = wt.contiguous().to_vector<double>();
    bias = vec_or(bt, size_t(c), 0.0);
    state0 = vec_or(s0, seqs.start.size() * size_t((w - 1) * c), 0.0);
  }
  // xe[p] of sequence n, channel ch (p relative to the sequence start, p >= -(W-1)).
  double xe(size_t n, int64_t p, int64_t ch) const {
    if (p >= 0) return x[size_t((seqs.start[n] + p) * c + ch)];
    return state0[size_t((int64_t(n) * (w - 1) + (w - 1) + p) * c + ch)];
  }
  double z(size_t n, int64_t p, int64_t ch) const {
    double s = bias[size_t(ch)];
    for (int64_t i = 0; i < w; ++i) s += weight[size_t(ch * w + i)] * xe(n, p - w + 1 + i, ch);
    return s;
  }
};

}  // namespace

void short_conv_fwd_ref(const ShortConvFwdArgs& a) {
  const Inputs in(a.x, a.weight, a.bias, a.state0, a.cu_seqlens);
  const int64_t c = in.c, w = in.w;
  std::vector<double> y(size_t(in.tokens * c));
  std::vector<double> st(in.seqs.start.size() * size_t((w - 1) * c));
  for (size_t n = 0; n < in.seqs.start.size(); ++n) {
    const int64_t len = in.seqs.end[n] - in.seqs.start[n];
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t p = 0; p < len; ++p) {
        const double z = in.z(n, p, ch);
        y[size_t((in.seqs.start[n] + p) * c + ch)] = a.silu ? z * sigmoid(z) : z;
      }
      for (int64_t k = 0; k < w - 1; ++k)
        st[size_t((int64_t(n) * (w - 1) + k) * c + ch)] = in.xe(n, len - (w - 1) + k, ch);
    }
  }
  a.y.copy_(Tensor::from_vector(y, a.y.shape()));
  if (a.state_t.defined()) a.state_t.copy_(Tensor::from_vector(st, a.state_t.shape()));
}

void short_conv_bwd_ref(const ShortConvBwdArgs& a) {
  const Inputs in(a.x, a.weight, a.bias, a.state0, a.cu_seqlens);
  const int64_t c = in.c, w = in.w;
  const size_t nseq = in.seqs.start.size();
  const std::vector<double> dy = a.dy.contiguous().to_vector<double>();
  const std::vector<double> dst = vec_or(a.dstate_t, nseq * size_t((w - 1) * c), 0.0);
  std::vector<double> dx(size_t(in.tokens * c)), ds0(nseq * size_t((w - 1) * c));
  std::vector<double> dw(size_t(c * w), 0.0), db(size_t(c), 0.0);
  for (size_t n = 0; n < nseq; ++n) {
    const int64_t len = in.seqs.end[n] - in.seqs.start[n];
    std::vector<double> dz(static_cast<size_t>(len));
    std::vector<double> dxe(static_cast<size_t>(len + w - 1));  // dxe[p + W - 1]
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t p = 0; p < len; ++p) {
        const double g = dy[size_t((in.seqs.start[n] + p) * c + ch)];
        if (a.silu) {
          const double z = in.z(n, p, ch), s = sigmoid(z);
          dz[size_t(p)] = g * (s + z * s * (1.0 - s));
        } else {
          dz[size_t(p)] = g;
        }
      }
      // dxe[p] = sum_i w[i] dz[p + W - 1 - i] over steps inside the sequence, plus dstate_t.
      for (int64_t p = -(w - 1); p < len; ++p) {
        double s = 0;
        for (int64_t i = 0; i < w; ++i) {
          const int64_t q = p + w - 1 - i;
          if (q >= 0 && q < len) s += in.weight[size_t(ch * w + i)] * dz[size_t(q)];
        }
        const int64_t k = p - (len - (w - 1));
        if (k >= 0) s += dst[size_t((int64_t(n) * (w - 1) + k) * c + ch)];
        dxe[size_t(p + w - 1)] = s;
      }
      for (int64_t p = 0; p < len; ++p)
        dx[size_t((in.seqs.start[n] + p) * c + ch)] = dxe[size_t(p + w - 1)];
      for (int64_t k = 0; k < w - 1; ++k)
        ds0[size_t((int64_t(n) * (w - 1) + k) * c + ch)] = dxe[size_t(k)];
      for (int64_t p = 0; p < len; ++p) {
        db[size_t(ch)] += dz[size_t(p)];
        for (int64_t i = 0; i < w; ++i)
          dw[size_t(ch * w + i)] += dz[size_t(p)] * in.xe(n, p - w + 1 + i, ch);
      }
    }
  }
  if (a.dx.defined()) a.dx.copy_(Tensor::from_vector(dx, a.dx.shape()));
  if (a.dstate0.defined()) a.dstate0.copy_(Tensor::from_vector(ds0, a.dstate0.shape()));
  if (a.dweight.defined()) add_rounded_once(a.dweight, dw);
  if (a.dbias.defined()) add_rounded_once(a.dbias, db);
}

}  // namespace seqmix
