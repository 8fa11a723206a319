// Fused softmax attention (causal / sliding window / grouped-query), forward and backward.
//   s_ij = scale * q_i . k_j      (masked: j > i when causal; j <= i - window when window > 0)
//   p_ij = softmax_j(s_ij),  o_i = sum_j p_ij v_j,  lse_i = log sum_j exp(s_ij)
//   backward (Di = dO_i . O_i):  dv_j = sum_i p_ij dO_i,  dS_ij = p_ij (dO_i . v_j - Di),
//                                dq_i = scale sum_j dS_ij k_j,  dk_j = scale sum_i dS_ij q_i
// Layouts (all contiguous): q, o, dout, dq: [B, T, H, D]; k, v, dk, dv: [B, T, Hkv, D] with
// H % Hkv == 0 (query head h reads kv head h / (H / Hkv)); lse: [B, H, T] f32 (f64 for f64 q).
// Dtypes: bf16 | f32 | f64 (f64 on the CPU only); k, v, o and the gradients share q's dtype.
// Gradient contract: dq, dk, dv are activation gradients, written (not accumulated). An undefined
// output tensor means "not needed". The CUDA backward is deterministic (no floating-point atomics:
// dK/dV and dQ are computed by separate kernels that each own their output tile). See README.md.
#pragma once
#include <cstdint>

#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

struct AttentionFwdArgs {
  Tensor q;          // [B, T, H, D]   contiguous, bf16 | f32 | f64(CPU only)
  Tensor k;          // [B, T, Hkv, D] same dtype, H % Hkv == 0 (grouped-query attention)
  Tensor v;          // [B, T, Hkv, D]
  Tensor o;          // [B, T, H, D] out (q's dtype)
  Tensor lse;        // [B, H, T] f32 out (f64 for f64 inputs): log-sum-exp of the scaled scores;
                     // undefined = not needed
  double scale = 0;  // 0 means 1/sqrt(D)
  bool causal = true;
  int64_t window =
      0;  // 0: none; else query i attends keys j with i - window < j <= i (needs causal)
};

struct AttentionBwdArgs {
  Tensor q, k, v;  // as in AttentionFwdArgs
  Tensor o;        // [B, T, H, D] the forward output
  Tensor lse;      // [B, H, T] the forward log-sum-exp (f32; f64 for f64 inputs)
  Tensor dout;     // [B, T, H, D] gradient of o
  Tensor dq;       // [B, T, H, D] out, or undefined
  Tensor dk, dv;   // [B, T, Hkv, D] out, or undefined
  double scale = 0;
  bool causal = true;
  int64_t window = 0;
};

struct AttentionOptions {
  double scale = 0;  // 0 means 1/sqrt(D)
  bool causal = true;
  int64_t window = 0;
};

// The scale actually applied: `scale`, or 1/sqrt(d) when it is 0.
double attention_scale(double scale, int64_t d);

// Whether the device implementation for q's device computes this request (dtype, head dim,
// alignment); the dispatcher raises Error(Unsupported) with `why` otherwise. Shapes are validated
// separately (Error(Value)).
Support attention_supports(const AttentionFwdArgs& a);

void attention_fwd(const AttentionFwdArgs& a);
void attention_bwd(const AttentionBwdArgs& a);
// Implementations (no validation; call the dispatchers above).
void attention_fwd_ref(const AttentionFwdArgs& a);
void attention_bwd_ref(const AttentionBwdArgs& a);
void attention_fwd_cuda(const AttentionFwdArgs& a);
void attention_bwd_cuda(const AttentionBwdArgs& a);

// Differentiable attention: q [B, T, H, D], k, v [B, T, Hkv, D] -> o [B, T, H, D]. Saves q, k, v,
// o and lse for the backward.
Variable attention(const Variable& q, const Variable& k, const Variable& v,
                   const AttentionOptions& opt = {});

}  // namespace seqmix
