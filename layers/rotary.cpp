// Rotary position embedding, rotate-half convention: y = x * cos + [-x2, x1] * sin.
#include "layers/rotary.h"

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "core/check.h"

namespace seqmix::nn {

Rotary::Rotary(int64_t head_dim, double theta) : d_(head_dim), theta_(theta) {
  SEQMIX_CHECK(head_dim > 0 && head_dim % 2 == 0, "rotary: head_dim must be even, got {}",
               head_dim);
  SEQMIX_CHECK(theta > 0, "rotary: theta must be positive, got {}", theta);
}

std::pair<Tensor, Tensor> Rotary::tables(int64_t t, int64_t start, Device device,
                                         DType dtype) const {
  const Key key{t, start, int(device.type), device.index, int(dtype)};
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  const int64_t half = d_ / 2;
  std::vector<double> c(size_t(t * d_)), s(size_t(t * d_));
  for (int64_t p = 0; p < t; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double inv_freq = std::pow(theta_, -2.0 * double(i) / double(d_));
      const double a = double(start + p) * inv_freq;
      c[size_t(p * d_ + i)] = c[size_t(p * d_ + i + half)] = std::cos(a);
      s[size_t(p * d_ + i)] = s[size_t(p * d_ + i + half)] = std::sin(a);
    }
  }
  auto entry = std::pair{Tensor::from_vector(c, {t, d_}, dtype, device),
                         Tensor::from_vector(s, {t, d_}, dtype, device)};
  // Keep the cache small: training uses one T; evaluation may add a few more.
  if (cache_.size() >= 16) cache_.clear();
  cache_.emplace(key, entry);
  return entry;
}

Variable Rotary::apply(const Variable& x, int64_t start) const {
  SEQMIX_CHECK(x.dim() == 4 && x.size(3) == d_, "rotary: x must be [B, T, H, {}], got {}", d_,
               x.data().shape_str());
  SEQMIX_CHECK(is_floating(x.dtype()), "rotary: x must be floating, got {}", dtype_name(x.dtype()));
  const int64_t t = x.size(1), half = d_ / 2;
  auto [cos_t, sin_t] = tables(t, start, x.device(), x.dtype());
  // [T, D] -> [T, 1, D] broadcasts over B and H.
  const Variable c(cos_t.view({t, 1, d_})), s(sin_t.view({t, 1, d_}));
  const Variable x1 = narrow(x, 3, 0, half), x2 = narrow(x, 3, half, half);
  const Variable rot = cat({neg(x2), x1}, 3);
  return add(mul(x, c), mul(rot, s));
}

}  // namespace seqmix::nn
