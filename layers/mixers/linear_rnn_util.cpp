// Helpers shared by the gated-linear-attention mixers (see linear_rnn_util.h).
#include "layers/mixers/linear_rnn_util.h"

#include <cmath>

#include "autograd/functions.h"
#include "core/check.h"
#include "core/ops/random.h"

namespace seqmix::nn {

std::optional<int64_t> positive_int(const MixerOptions& o, const std::string& key) {
  const std::optional<int64_t> v = o.get_int(key);
  if (v && *v <= 0) o.fail(key, fmt::format("must be positive, got {}", *v));
  return v;
}

double float_in(const MixerOptions& o, const std::string& key, double lo, double hi,
                bool closed_lo) {
  const std::optional<double> v = o.get_float(key);
  if (!v) o.fail(key, "must be a number, got 'auto'");
  const bool ok = (closed_lo ? *v >= lo : *v > lo) && *v <= hi;
  if (!ok)
    o.fail(key, fmt::format("must be in {}{}, {}], got {}", closed_lo ? "[" : "(", lo, hi, *v));
  return *v;
}

int64_t expanded_dim(const MixerOptions& o, const std::string& key, int64_t d_model, double ratio,
                     int64_t n_heads) {
  const double dim = double(d_model) * ratio;
  const int64_t n = int64_t(std::llround(dim));
  if (n <= 0 || std::abs(dim - double(n)) > 1e-9 || n % n_heads != 0)
    o.fail(key, fmt::format("{} gives {} dims at d_model = {}: need a positive integer multiple of "
                            "n_heads = {}",
                            ratio, dim, d_model, n_heads));
  return n;
}

Variable split_heads(const Variable& x, int64_t heads) {
  SEQMIX_CHECK(x.dim() == 3 && x.size(2) % heads == 0,
               "split_heads: x must be [B, T, H * D] with H = {}, got {}", heads,
               x.data().shape_str());
  return contiguous(reshape(x, {x.size(0), x.size(1), heads, x.size(2) / heads}));
}

Variable merge_heads(const Variable& x) {
  SEQMIX_CHECK(x.dim() == 4, "merge_heads: x must be [B, T, H, D], got {}", x.data().shape_str());
  return reshape(contiguous(x), {x.size(0), x.size(1), x.size(2) * x.size(3)});
}

Tensor init_uniform(const Shape& shape, double lo, double hi, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32, Device::cpu());
  ops::uniform_draw(t, lo, hi, seed, 0);
  return t;
}

Variable gated_head_norm(const Variable& o, const RMSNorm& norm, const Variable& z) {
  SEQMIX_CHECK(o.dim() == 4, "gated_head_norm: o must be [B, T, H, V], got {}",
               o.data().shape_str());
  Variable y = norm.forward(contiguous(o));
  if (!z.defined()) return y;
  return mul(y, silu(reshape(z, o.shape())));
}

}  // namespace seqmix::nn
