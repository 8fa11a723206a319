// Rotary position embedding (RoPE), rotate-half convention (GPT-NeoX / LLaMA layout): the head
// dim D (even) splits into halves x1 = x[..., :D/2], x2 = x[..., D/2:], and pair i = (x1_i, x2_i)
// is rotated by angle t * theta^(-2i/D) at position t:
//   y1_i = x1_i cos(a_ti) - x2_i sin(a_ti),   y2_i = x2_i cos(a_ti) + x1_i sin(a_ti)
// i.e. y = x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1] and the [T, D] tables
// cos/sin repeated over both halves. Layout: x [B, T, H, D] (any leading dims before T, H), with
// position t = index along dim 1 (plus `start`). The angles are computed in f64 on the host and
// rounded once to x's dtype, so CPU and GPU use identical tables; tables are cached per
// (T, start, device, dtype). Built from generic differentiable ops (the backward is the inverse
// rotation, obtained by autograd).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "autograd/variable.h"
#include "core/tensor.h"

namespace seqmix::nn {

class Rotary {
 public:
  Rotary(int64_t head_dim, double theta = 10000.0);
  // x: [B, T, H, D] -> same shape and dtype.
  Variable apply(const Variable& x, int64_t start = 0) const;
  // The [T, D] cos and sin tables for positions start .. start+T-1 (cached).
  std::pair<Tensor, Tensor> tables(int64_t t, int64_t start, Device device, DType dtype) const;
  int64_t head_dim() const { return d_; }
  double theta() const { return theta_; }

 private:
  int64_t d_;
  double theta_;
  using Key = std::tuple<int64_t, int64_t, int, int, int>;  // T, start, device type/index, dtype
  mutable std::mutex mu_;
  mutable std::map<Key, std::pair<Tensor, Tensor>> cache_;
};

}  // namespace seqmix::nn
