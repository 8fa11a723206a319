// Chunked gated linear attention family (one kernel family with a gate flag): linear attention,
// RetNet (retention), GLA, Mamba-2 (SSD), HGRN2, mLSTM-style decays.
//
//   per head:  S_t = G_t ⊙ S_{t-1} + k_tᵀ v_t        S_t ∈ R^{K×V}, fp32
//              o_t = scale · q_t S_t
//   G_t = exp(g_t) broadcast over V, with the log-gate g_t (≤ 0) given by `gate`:
//     None       G_t = 1                                      (linear attention)
//     HeadConst  g_t = g[h]          g: [H] f32               (RetNet: log γ_h, fixed)
//     HeadScalar g_t = g[b, t, h]    g: [B, T, H] f32         (Mamba-2 / SSD: Δ_t · A_h)
//     KeyVector  g_t = g[b, t, h, :] g: [B, T, H, K] f32      (GLA, HGRN2)
//
// Layouts (contiguous): q, k: [B, T, H, K]; v, o: [B, T, H, V]; h0, ht: [N, H, K, V] f32 where
// N = B, or the number of packed sequences when `cu_seqlens` ([N + 1] i64, offsets into T,
// cu_seqlens[0] = 0, cu_seqlens[N] = T) is given, which requires B = 1: sequence n occupies
// time steps [cu_seqlens[n], cu_seqlens[n+1]) and its state starts from h0[n] (or 0) and ends
// in ht[n]. Dtypes: q, k, v bf16 | f32 | f64 (f64 on the CPU only), o in q's dtype; g, h0, ht, dg,
// dh0, dht in f32 (f64 when q is f64). The state is always accumulated in fp32 (fp64 for f64).
//
// Gradient contract: dq, dk, dv, dg, dh0 are written (not accumulated); HeadConst has no dg (the
// decays are fixed constants). `dht` is the incoming gradient of the final state (undefined: 0).
// An undefined output means "not needed". The backward is deterministic: no floating-point
// atomics anywhere in this family.
#pragma once
#include <cstdint>

#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

enum class GlaGate { None, HeadConst, HeadScalar, KeyVector };
// Algorithm choice on CUDA: Auto picks chunked for long sequences, recurrent for short ones and
// decoding (T small); the CPU reference is always the literal recurrence.
enum class GlaAlgo { Auto, Chunked, Recurrent };

const char* gla_gate_name(GlaGate g);

struct GlaFwdArgs {
  Tensor q;           // [B, T, H, K]
  Tensor k;           // [B, T, H, K]
  Tensor v;           // [B, T, H, V]
  Tensor g;           // log-gate, see GlaGate (undefined for None)
  Tensor h0;          // [N, H, K, V] initial state, or undefined (zeros)
  Tensor cu_seqlens;  // [N + 1] i64 packed sequence offsets, or undefined (then N = B)
  Tensor o;           // [B, T, H, V] out
  Tensor ht;          // [N, H, K, V] out: final state, or undefined (not needed)
  GlaGate gate = GlaGate::None;
  double scale = 0;  // 0 means 1/sqrt(K)
  GlaAlgo algo = GlaAlgo::Auto;
  // Out, optional (HeadScalar / KeyVector, f32, shaped like g): the chunk-local cumulative
  // log-gates, written by the chunked CUDA forward only (other paths leave it untouched), for a
  // backward with the same arguments to reuse (GlaBwdArgs::gc) instead of recomputing them.
  Tensor gc;
  // Out, optional (bf16, gla_chunk_states_shape(q, v, cu_seqlens)): the state at every chunk
  // start, written by the chunked CUDA forward only (other paths leave it untouched), for a
  // backward with the same arguments to reuse (GlaBwdArgs::hs) instead of recomputing it.
  Tensor hs;
};

struct GlaBwdArgs {
  Tensor q, k, v, g, h0, cu_seqlens;  // as in the forward
  Tensor dout;                        // [B, T, H, V] gradient of o
  Tensor dht;                         // [N, H, K, V] gradient of the final state, or undefined
  Tensor dq, dk;                      // [B, T, H, K] out, or undefined
  Tensor dv;                          // [B, T, H, V] out, or undefined
  Tensor dg;                          // like g (HeadScalar / KeyVector) out, or undefined
  Tensor dh0;                         // [N, H, K, V] out, or undefined
  GlaGate gate = GlaGate::None;
  double scale = 0;
  GlaAlgo algo = GlaAlgo::Auto;
  // Optional: GlaFwdArgs::gc as written by the chunked forward with the same q, k, v, g and
  // cu_seqlens; read by the chunked CUDA backward only (the others ignore it). Undefined: the
  // backward recomputes the cumulative gates.
  Tensor gc;
  // Optional: GlaFwdArgs::hs as written by the chunked forward with the same q, k, v, g, h0 and
  // cu_seqlens; read by the chunked CUDA backward only (the others ignore it). Undefined: the
  // backward recomputes the states (one more sequential state pass).
  Tensor hs;
};

// The scale actually applied: `scale`, or 1/sqrt(K) when it is 0.
double gla_scale(double scale, int64_t k);

// Chunk length of the chunked CUDA kernels.
constexpr int64_t kGlaChunk = 64;
// Shape of GlaFwdArgs::hs / GlaBwdArgs::hs, the chunk-start states: [chunks, H, K, V] with
// chunks = B ⌈T / 64⌉, or ⌊T / 64⌋ + N for N packed sequences (cu_seqlens: every sequence's
// chunks start at its own start, so this is an upper bound; the slots past the last chunk are
// never written or read).
Shape gla_chunk_states_shape(const Tensor& q, const Tensor& v, const Tensor& cu_seqlens);

// Whether the implementation for q's device (and `algo`) computes this request exactly; the
// dispatcher raises Error(Unsupported) with `why` otherwise. Shapes are validated separately
// (Error(Value), naming the operand).
Support gla_supports(const GlaFwdArgs& a);

void gla_fwd(const GlaFwdArgs& a);
void gla_bwd(const GlaBwdArgs& a);

// Implementations (no validation: call the dispatchers above).
void gla_fwd_ref(const GlaFwdArgs& a);
void gla_bwd_ref(const GlaBwdArgs& a);
// CUDA recurrent (one thread block per (sequence, head) and V slice; any T; decoding path).
Support gla_recurrent_supports(const GlaFwdArgs& a);
void gla_recurrent_fwd_cuda(const GlaFwdArgs& a);
void gla_recurrent_bwd_cuda(const GlaBwdArgs& a);
// CUDA chunked (tensor cores; long sequences).
Support gla_chunk_supports(const GlaFwdArgs& a);
void gla_chunk_fwd_cuda(const GlaFwdArgs& a);
void gla_chunk_bwd_cuda(const GlaBwdArgs& a);

struct GlaOptions {
  GlaGate gate = GlaGate::None;
  double scale = 0;
  GlaAlgo algo = GlaAlgo::Auto;
};

// Differentiable form. q, k: [B, T, H, K]; v: [B, T, H, V]; g per `opt.gate` (an undefined
// Variable for None; a constant tensor wrapped in a Variable without grad for HeadConst);
// h0: [N, H, K, V] or undefined; cu_seqlens: [N + 1] i64 or undefined. Returns {o, ht}; ht is
// undefined unless `want_final_state`. Gradients flow to q, k, v, g, h0 (and from ht).
std::pair<Variable, Variable> gla(const Variable& q, const Variable& k, const Variable& v,
                                  const Variable& g, const Variable& h0, const Tensor& cu_seqlens,
                                  const GlaOptions& opt, bool want_final_state = false);

}  // namespace seqmix
