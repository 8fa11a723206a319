// Chunked delta-rule family (one kernel family with a gate flag): DeltaNet, Gated DeltaNet, KDA.
//
//   per head:  S_t = (I − β_t k_t k_tᵀ) D_t S_{t−1} + β_t k_t v_tᵀ     S_t ∈ R^{K×V}, fp32
//              o_t = scale · S_tᵀ q_t          (o_t[j] = scale Σ_i q_t[i] S_t[i, j])
//   D_t = exp(g_t) with the log-gate g_t (≤ 0) given by `gate`:
//     None        D_t = I                                          (DeltaNet)
//     HeadScalar  D_t = exp(g[b, t, h]) I     g: [B, T, H] f32     (Gated DeltaNet)
//     KeyVector   D_t = Diag(exp(g[b, t, h, :])) g: [B, T, H, K] f32 (KDA)
//   β_t = beta[b, t, h] ∈ (0, 1), or (0, 2) with negative eigenvalues; the kernels accept any
//   finite β (the range is the mixer's business).
//   With `l2norm_qk`, q and k are replaced by q / sqrt(Σ q² + 1e-6) and k / sqrt(Σ k² + 1e-6)
//   (per token and head, in fp32) inside the op, and the gradients flow through the
//   normalisation to the raw q and k.
//
// Layouts (contiguous): q, k: [B, T, H, K]; v, o: [B, T, H, V]; beta: [B, T, H];
// h0, ht: [N, H, K, V] where N = B, or the number of packed sequences when `cu_seqlens`
// ([N + 1] i64, cu_seqlens[0] = 0, cu_seqlens[N] = T) is given, which requires B = 1.
// Dtypes: q, k, v bf16 | f32 | f64 (f64 on the CPU only), o in q's dtype; beta, g, h0, ht and
// their gradients in f32 (f64 when q is f64). The state is always accumulated in fp32 (fp64 for
// f64 inputs).
//
// Gradient contract: dq, dk, dv, dbeta, dg, dh0 are written (not accumulated); an undefined
// output means "not needed". `dht` is the incoming gradient of the final state (undefined: 0).
// The backward is deterministic: no floating-point atomics anywhere in this family.
#pragma once
#include <cstdint>
#include <utility>

#include "autograd/variable.h"
#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

enum class DeltaGate { None, HeadScalar, KeyVector };
// Algorithm choice on CUDA: Auto picks chunked for long sequences, recurrent for short ones and
// decoding; the CPU reference is always the literal recurrence.
enum class DeltaAlgo { Auto, Chunked, Recurrent };

const char* delta_gate_name(DeltaGate g);

// What the chunked CUDA forward can keep for its backward, so that the backward skips its
// recompute of the forward (the per-chunk prep and the state pass):
// * the bf16 chunk-start states hs [chunks, H, K, V] and U [B·T, H, V] (bf16 hi parts), with
//   `want_dg` the bf16 lo part hsl of hs, and with `want_dg` or the KeyVector gate U's lo part ul
//   (the dg terms, and the KeyVector backward's Y = U dS', read hi + lo);
// * the prep's outputs: bc [B·T, H] (the chunk-local cumulative log-gate of the scalar gates;
//   not written for KeyVector, whose kernels do not read it), kn [B·T, H] (1 / ‖k‖), W
//   [B·T, H, K], the per-chunk T = (I + A)⁻¹ tm [chunks, H, 64, 64] (all fp32), and for
//   KeyVector the in-chunk cumulative log-gates bk and K̃ kt [B·T, H, K] (fp32);
// * the gate mode they were computed for (`gate`, set by the forward; a backward with another
//   gate is refused).
// Set `want_dg` before the forward when the backward will compute dg (without hsl such a backward
// recomputes), and pass the same object to the backward with the same arguments: the backward
// checks only the shapes, dtypes and device of what it is given, so a set kept from other values
// of the same shapes would give wrong gradients. The forward fills the tensors only when it runs
// the chunked path; a backward given empty ones recomputes (states without prep: the prep alone).
// Memory per element of q (B·T·H·K): the states 2·V/64 bytes and U 2·V/K (twice that with the lo
// parts), W 4, T 256/K, KeyVector's bk and kt 4 each.
struct DeltaChunkKeep {
  bool want_dg = false;
  DeltaGate gate = DeltaGate::None;
  Tensor hs, hsl, u, ul;
  Tensor bc, kn, w, tm, bk, kt;
};

struct DeltaFwdArgs {
  Tensor q;           // [B, T, H, K]
  Tensor k;           // [B, T, H, K]
  Tensor v;           // [B, T, H, V]
  Tensor beta;        // [B, T, H]
  Tensor g;           // log-gate, see DeltaGate (undefined for None)
  Tensor h0;          // [N, H, K, V] initial state, or undefined (zeros)
  Tensor cu_seqlens;  // [N + 1] i64 packed sequence offsets, or undefined (then N = B)
  Tensor o;           // [B, T, H, V] out
  Tensor ht;          // [N, H, K, V] out: final state, or undefined (not needed)
  DeltaGate gate = DeltaGate::None;
  double scale = 0;  // 0 means 1/sqrt(K)
  bool l2norm_qk = false;
  DeltaAlgo algo = DeltaAlgo::Auto;
  DeltaChunkKeep* keep = nullptr;  // optional: filled by the chunked CUDA forward (see above)
};

struct DeltaBwdArgs {
  Tensor q, k, v, beta, g, h0, cu_seqlens;  // as in the forward (raw q, k when l2norm_qk)
  Tensor dout;                              // [B, T, H, V] gradient of o
  Tensor dht;     // [N, H, K, V] gradient of the final state, or undefined
  Tensor dq, dk;  // [B, T, H, K] out, or undefined
  Tensor dv;      // [B, T, H, V] out, or undefined
  Tensor dbeta;   // [B, T, H] out, or undefined
  Tensor dg;      // like g (HeadScalar / KeyVector) out, or undefined
  Tensor dh0;     // [N, H, K, V] out, or undefined
  DeltaGate gate = DeltaGate::None;
  double scale = 0;
  bool l2norm_qk = false;
  DeltaAlgo algo = DeltaAlgo::Auto;
  const DeltaChunkKeep* keep = nullptr;  // what the chunked forward kept, or null (recompute)
};

// The scale actually applied: `scale`, or 1/sqrt(K) when it is 0.
double delta_scale(double scale, int64_t k);

// Whether the implementation for q's device (and `algo`) computes this request exactly; the
// dispatcher raises Error(Unsupported) with `why` otherwise. Shapes are validated separately
// (Error(Value), naming the operand).
Support delta_rule_supports(const DeltaFwdArgs& a);

void delta_rule_fwd(const DeltaFwdArgs& a);
void delta_rule_bwd(const DeltaBwdArgs& a);

// Implementations (no validation: call the dispatchers above).
void delta_rule_fwd_ref(const DeltaFwdArgs& a);
void delta_rule_bwd_ref(const DeltaBwdArgs& a);
// CUDA recurrent (state in registers, one block per (sequence, head, V slice); any T; decoding).
Support delta_rule_recurrent_supports(const DeltaFwdArgs& a);
void delta_rule_recurrent_fwd_cuda(const DeltaFwdArgs& a);
void delta_rule_recurrent_bwd_cuda(const DeltaBwdArgs& a);
// CUDA chunked (WY / UT transform, tensor cores; long sequences).
Support delta_rule_chunk_supports(const DeltaFwdArgs& a);
void delta_rule_chunk_fwd_cuda(const DeltaFwdArgs& a);
void delta_rule_chunk_bwd_cuda(const DeltaBwdArgs& a);

struct DeltaOptions {
  DeltaGate gate = DeltaGate::None;
  double scale = 0;
  bool l2norm_qk = false;
  DeltaAlgo algo = DeltaAlgo::Auto;
};

// Differentiable form. q, k: [B, T, H, K]; v: [B, T, H, V]; beta: [B, T, H]; g per `opt.gate`
// (an undefined Variable for None); h0: [N, H, K, V] or undefined; cu_seqlens: [N + 1] i64 or
// undefined. Returns {o, ht}; ht is undefined unless `want_final_state`. Gradients flow to q, k,
// v, beta, g, h0 (and from ht).
std::pair<Variable, Variable> delta_rule(const Variable& q, const Variable& k, const Variable& v,
                                         const Variable& beta, const Variable& g,
                                         const Variable& h0, const Tensor& cu_seqlens,
                                         const DeltaOptions& opt, bool want_final_state = false);

}  // namespace seqmix
