// Short causal depthwise convolution over time (the "short conv" of Mamba, Mamba-2, GLA variants,
// DeltaNet), with optional fused SiLU and a state for decoding.
//
//   z_t[c] = bias[c] + Σ_{i=0}^{W-1} weight[c, i] · x_{t-W+1+i}[c]      (x_{s<0} from `state0`)
//   y_t[c] = silu(z_t[c]) if `silu` else z_t[c]
//
// Layouts (contiguous): x, y: [B, T, C]; weight: [C, W] with width W in 2..4; bias: [C] or
// undefined; state0, state_t: [N, W-1, C] — the W-1 inputs before the first step (oldest first),
// and after the last step; N = B, or the number of packed sequences when `cu_seqlens` ([N + 1]
// i64 offsets into T, B = 1) is given: each sequence starts from its own state0[n] (or zeros)
// and never sees another sequence's inputs. Dtypes: x, y bf16 | f32 | f64 (f64 CPU only); weight,
// bias f32 (or x's dtype); states in x's dtype; accumulation in fp32 (fp64 for f64).
//
// Gradient contract: dx, dstate0 are written; dweight, dbias (f32, or the parameter's dtype) are
// accumulated. Undefined outputs are not needed. The weight/bias reductions over (B, T) are done
// in a fixed order (deterministic, no floating-point atomics).
#pragma once
#include <cstdint>

#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

struct ShortConvFwdArgs {
  Tensor x;           // [B, T, C]
  Tensor weight;      // [C, W]
  Tensor bias;        // [C] or undefined
  Tensor state0;      // [N, W-1, C] or undefined (zeros)
  Tensor cu_seqlens;  // [N + 1] i64 or undefined
  Tensor y;           // [B, T, C] out
  Tensor state_t;     // [N, W-1, C] out: the last W-1 inputs of each sequence, or undefined
  bool silu = false;
};

struct ShortConvBwdArgs {
  Tensor x, weight, bias, state0, cu_seqlens;  // as in the forward
  Tensor dy;                                   // [B, T, C]
  Tensor dstate_t;                             // [N, W-1, C] gradient of state_t, or undefined
  Tensor dx;                                   // [B, T, C] out, or undefined
  Tensor dweight;                              // [C, W] accumulated, or undefined
  Tensor dbias;                                // [C] accumulated, or undefined
  Tensor dstate0;                              // [N, W-1, C] out, or undefined
  bool silu = false;
};

Support short_conv_supports(const ShortConvFwdArgs& a);
void short_conv_fwd(const ShortConvFwdArgs& a);
void short_conv_bwd(const ShortConvBwdArgs& a);
void short_conv_fwd_ref(const ShortConvFwdArgs& a);
void short_conv_bwd_ref(const ShortConvBwdArgs& a);
void short_conv_fwd_cuda(const ShortConvFwdArgs& a);
void short_conv_bwd_cuda(const ShortConvBwdArgs& a);

// Differentiable: x [B, T, C], weight [C, W], bias [C] or undefined, state0 [N, W-1, C] or
// undefined. Returns {y, state_t}; state_t is undefined unless `want_final_state`.
std::pair<Variable, Variable> short_conv(const Variable& x, const Variable& weight,
                                         const Variable& bias, const Variable& state0,
                                         const Tensor& cu_seqlens, bool silu,
                                         bool want_final_state = false);

}  // namespace seqmix
