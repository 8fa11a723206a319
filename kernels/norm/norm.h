// RMSNorm and LayerNorm over the last dimension, fused forward and backward (one kernel family
// with a flag).
//   RMS:    rstd = 1/sqrt(mean(x^2) + eps),            xh = x * rstd
//   Layer:  mu = mean(x), rstd = 1/sqrt(var(x) + eps), xh = (x - mu) * rstd
//   y = xh * w + b                                     (w, b optional; b only for Layer)
//   backward with g = dy * w:
//   RMS:    dx = rstd * (g - xh * mean(g xh))
//   Layer:  dx = rstd * (g - mean(g) - xh * mean(g xh))
//   dw += sum_rows dy * xh,  db += sum_rows dy
// Layouts: x, y, dy, dx: [N, C] rows contiguous (leading dims flatten); w, b: [C] in x's dtype or
// f32; mean, rstd: [N] f32 (f64 for f64 x). Activation grads (dx) are written; parameter grads
// (dw, db; f32 or the parameter's dtype) are accumulated. The column sums for dw/db are done in
// fixed row-chunk order, then chunks summed in order: deterministic, no atomics.
#pragma once
#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

enum class NormKind { Rms, Layer };

struct NormFwdArgs {
  NormKind kind = NormKind::Rms;
  Tensor x;       // [N, C]
  Tensor weight;  // [C] or undefined (scale 1)
  Tensor bias;    // [C] or undefined (Layer only)
  Tensor y;       // [N, C] out
  Tensor mean;    // [N] out (Layer; undefined = not needed)
  Tensor rstd;    // [N] out (undefined = not needed)
  double eps = 1e-6;
};

struct NormBwdArgs {
  NormKind kind = NormKind::Rms;
  Tensor x;        // [N, C]
  Tensor weight;   // [C] or undefined
  Tensor mean;     // [N] (Layer)
  Tensor rstd;     // [N]
  Tensor dy;       // [N, C]
  Tensor dx;       // [N, C] out, or undefined
  Tensor dweight;  // [C] accumulated, or undefined
  Tensor dbias;    // [C] accumulated, or undefined (Layer)
};

Support norm_supports(const NormFwdArgs& a);
void norm_fwd(const NormFwdArgs& a);
void norm_bwd(const NormBwdArgs& a);
void norm_fwd_ref(const NormFwdArgs& a);
void norm_bwd_ref(const NormBwdArgs& a);
void norm_fwd_cuda(const NormFwdArgs& a);
void norm_bwd_cuda(const NormBwdArgs& a);

// Differentiable forms. `weight` / `bias` may be undefined Variables.
Variable rms_norm(const Variable& x, const Variable& weight, double eps = 1e-6);
Variable layer_norm(const Variable& x, const Variable& weight, const Variable& bias,
                    double eps = 1e-5);

}  // namespace seqmix
