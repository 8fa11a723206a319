// Argument validation shared by the fused-op dispatchers (host code). Errors are Error(Value)
// naming the op and the operand.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "kernels/common/op_support.h"

namespace seqmix {

// An optional tensor (output, gradient, state): when defined it must have `shape` and `dtype`,
// be contiguous and live on `dev` (the device of the op's reference operand `ref_name`).
void check_optional_like(const char* op, const char* name, const Tensor& t, const Shape& shape,
                         DType dtype, Device dev, const char* ref_name);

// Whether `t` is undefined or its data starts at a 16-byte aligned address (what kernels that move
// 16-byte pieces need; a fresh tensor always is).
bool aligned16(const Tensor& t);

// Packed-sequence offsets: `cu` [N + 1] i64 on `dev`, starting at 0, non-decreasing, ending at
// `t`; the batch `b` of the reference operand `ref_name` must be 1. Reads `cu` on the host (one
// device-to-host copy). Returns N.
int64_t check_cu_seqlens(const char* op, const Tensor& cu, Device dev, int64_t b, int64_t t,
                         const char* ref_name);

// The linear-RNN ops (gla, delta_rule): q [B, T, H, K], k like q, v [B, T, H, V]; N sequences
// (B, or the packed count of cu_seqlens); the state per (sequence, head) is K x V.
struct QkvDims {
  Device dev;
  int64_t b = 0, t = 0, h = 0, k = 0, v = 0, n = 0;
  Shape state() const { return {n, h, k, v}; }
  // Mean tokens per sequence: B·T / N (B sequences of T tokens, or with cu_seqlens B = 1 and T
  // the packed total); 0 without sequences. The dispatchers' Auto compares it with the length
  // from which the chunked kernels are preferred.
  int64_t mean_len() const { return n > 0 ? b * t / n : 0; }
};

// Checks q, k, v (defined, one device, 4-d, one dtype of bf16 / f32 / f64, contiguous, shapes),
// `scale` (finite, >= 0; 0 means 1/sqrt(K)) and `cu` when defined (read on the host).
QkvDims check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& cu, double scale);

// The dtype of a linear-RNN op's state, gates and other fp32 operands: f64 for f64 inputs, else
// f32.
DType linear_rnn_state_dtype(DType x);

// `<op>_supports` of a linear-RNN op with a chunked and a recurrent CUDA implementation (gla,
// delta_rule; `Args::algo` an enum with Auto, Chunked and Recurrent): bf16 / f32 / f64 inputs;
// the CPU reference takes every request; on CUDA the requested implementation's own check, or
// either one's under Auto. (A CPU-only build has no CUDA tensors.)
template <class Args>
Support linear_rnn_supports(const Args& a, Support (*chunked)(const Args&),
                            Support (*recurrent)(const Args&)) {
  using Algo = decltype(a.algo);
  const DType t = a.q.dtype();
  if (t != DType::BF16 && t != DType::F32 && t != DType::F64)
    return Support::no(std::string("q must be bf16, f32 or f64, got ") + dtype_name(t));
  if (!a.q.device().is_cuda()) return Support::yes();  // the reference takes every request
  if (a.algo == Algo::Chunked) return chunked(a);
  if (a.algo == Algo::Recurrent) return recurrent(a);
  return either_supports(chunked(a), recurrent(a));
}

}  // namespace seqmix
