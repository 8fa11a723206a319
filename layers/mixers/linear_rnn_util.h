// Helpers shared by the gated-linear-attention mixers (linear_attn, retnet, gla, mamba2, hgrn2):
// option parsing with range checks, the fp32 gate dtype, head reshapes, uniform init draws and
// the per-head "group norm" with an optional swish output gate.
//   gated_head_norm(o, w, z) = rms_norm_V(o) * w ⊙ silu(z)      o: [B, T, H, V], w: [V]
#pragma once
#include <cstdint>
#include <string>

#include "autograd/variable.h"
#include "core/tensor.h"
#include "layers/linear.h"
#include "layers/mixers/mixer.h"

namespace seqmix::nn {

// Gates and decays are computed in fp32 (fp64 when the activations are fp64, for gradchecks):
// the dtype kernels/gla expects for g.
inline DType gate_dtype(DType compute) {
  return compute == DType::F64 ? DType::F64 : DType::F32;
}

// Reads a positive int option (raises Config naming the key otherwise); nullopt for "auto".
std::optional<int64_t> positive_int(const MixerOptions& o, const std::string& key);
// Reads a float option that must lie in (lo, hi] (or [lo, hi] when `closed_lo`).
double float_in(const MixerOptions& o, const std::string& key, double lo, double hi,
                bool closed_lo = false);
// round(d_model * ratio) when it is a positive integer multiple of `n_heads`, else Config naming
// `key` ("expand_k 0.3 gives 19.2 key dims, not a multiple of n_heads = 4").
int64_t expanded_dim(const MixerOptions& o, const std::string& key, int64_t d_model, double ratio,
                     int64_t n_heads);

// [B, T, H * D] -> [B, T, H, D] (contiguous).
Variable split_heads(const Variable& x, int64_t heads);
// [B, T, H, D] -> [B, T, H * D].
Variable merge_heads(const Variable& x);

// f32 CPU tensor of `shape` filled with U[lo, hi) from draw (seed, offset 0).
Tensor init_uniform(const Shape& shape, double lo, double hi, uint64_t seed);

// o: [B, T, H, V] -> rms_norm over V with the norm's weight [V] (shared by the heads), times
// silu(z) when z ([B, T, H * V] or [B, T, H, V]) is defined. Same dtype as o.
Variable gated_head_norm(const Variable& o, const RMSNorm& norm, const Variable& z);

}  // namespace seqmix::nn
