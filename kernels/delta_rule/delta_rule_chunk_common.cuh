// Device helpers shared by the chunked delta-rule kernels (delta_rule_chunk_fwd.cu,
// delta_rule_chunk_bwd.cu): parameters, sequence / chunk bookkeeping for packed batches, the
// per-row scalars of a chunk (chunk-local cumulative log-gate b, the l2-norm factors of k), and
// the kernels both directions run (the per-chunk UT transform and the sequential state pass).
// The bf16 tensor-core fragments (mma.sync m16n8k16, fp32 accumulate) and tile loads come from
// kernels/gla/gla_common.cuh. Include only from .cu files.
//
// Per chunk of BT = 64 steps (rows t), with scalar gates (None / HeadScalar), k̂ = kn·k the
// (optionally l2-normalised) key, b_t the chunk-local inclusive cumulative log-gate, B = b_63:
//   A = StrictLower(diag(β) (K̂ K̂ᵀ ⊙ exp(b_t − b_s))),   T = (I + A)⁻¹      (fp32, smem)
//   W = T diag(β exp(b)) K̂,   Ũ = T diag(β) V                                (prep kernel)
//   U = Ũ − W S_c,   S_{c+1} = exp(B) S_c + (K̂ ⊙ exp(B − b))ᵀ U                 (state kernel)
//   o = scale [diag(exp(b)) Q̂ S_c + (Q̂ K̂ᵀ ⊙ exp(b_t − b_s))_{s≤t} U]          (output kernel)
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/half.h"
#include "kernels/delta_rule/delta_rule.h"
#include "kernels/gla/gla_common.cuh"

namespace seqmix::delta_chunk {

using gla_chunk::c_to_a;
using gla_chunk::frag_a;
using gla_chunk::frag_b;
using gla_chunk::kBT;
using gla_chunk::kThreads;
using gla_chunk::ld_bf16;
using gla_chunk::load_a;
using gla_chunk::load_b;
using gla_chunk::load_bt;
using gla_chunk::load_tile;
using gla_chunk::mma_16816;
using gla_chunk::pack_bf16;
using gla_chunk::split_bf16;

constexpr int kBV = 64;  // V slice of the state kernels
constexpr float kNormEps = 1e-6f;

struct Params {
  const bf16* q = nullptr;
  const bf16* k = nullptr;
  const bf16* v = nullptr;
  const float* beta = nullptr;
  const float* g = nullptr;  // HeadScalar [rows, H] or null
  const float* h0 = nullptr;
  bf16* o = nullptr;
  float* ht = nullptr;
  const bf16* dout = nullptr;
  const float* dht = nullptr;
  bf16* dq = nullptr;
  bf16* dk = nullptr;
  bf16* dv = nullptr;
  float* dbeta = nullptr;
  float* dg = nullptr;
  float* dh0 = nullptr;
  // Scratch.
  const int64_t* seq = nullptr;     // [N + 1] row offsets of the sequences
  const int64_t* chunks = nullptr;  // [N + 1] chunk offsets of the sequences
  float* bc = nullptr;              // [rows, H] chunk-local cumulative log-gate
  float* kn = nullptr;              // [rows, H] 1 / ‖k‖ (1 without l2norm_qk; 0 past the end)
  float* w = nullptr;               // [rows, H, K] W (fp32: split into bf16 hi + lo on use)
  float* ut = nullptr;              // [rows, H, V] Ũ
  bf16* u = nullptr;                // [rows, H, V] U
  float* tm = nullptr;              // [chunks, H, 64, 64] T (backward only)
  float* hs = nullptr;              // [chunks, H, K, V] state at each chunk start
  float* dhs = nullptr;             // [chunks, H, K, V] gradient of the state at each chunk end
  float* du_in = nullptr;           // [rows, H, V] scale Mᵀ dO (backward)
  float* du = nullptr;              // [rows, H, V] dU (backward)
  int64_t n = 0, h = 0, kd = 0, vd = 0;
  int64_t max_chunks = 0;
  int gate = 0;  // DeltaGate as int
  bool l2 = false;
  float scale = 1.f;
};

// Sequence n of chunk slot x (largest n with chunks[n] <= x), or -1 past the last chunk.
__device__ __forceinline__ int64_t find_seq(const Params& p, int64_t x) {
  if (x >= p.chunks[p.n]) return -1;
  int64_t lo = 0, hi = p.n - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.chunks[mid] <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// 1 / sqrt(Σ x² + eps) of each of the 64 rows of a bf16 smem tile [64][W + 8] (rows >= valid: 0;
// without l2: 1). Two threads per row, fixed order.
template <int W>
__device__ __forceinline__ void row_norms(float* out, const bf16* s, int valid, bool l2) {
  const int row = threadIdx.x >> 1, half = threadIdx.x & 1;
  float acc = 0.f;
  if (l2)
    for (int i = half * (W / 2); i < (half + 1) * (W / 2); ++i) {
      const float x = ld_bf16(s + row * (W + 8) + i);
      acc = fmaf(x, x, acc);
    }
  acc += __shfl_xor_sync(0xffffffffu, acc, 1);
  if (half == 0) out[row] = row >= valid ? 0.f : (l2 ? 1.f / sqrtf(acc + kNormEps) : 1.f);
}

// A fragment whose element (r, c) is f(r, c), split into bf16 hi + lo.
template <class F>
__device__ __forceinline__ void frag_a_split(uint32_t (&hi)[4], uint32_t (&lo)[4], const F& f,
                                             int row0, int col0, int gq, int tq) {
  const int r = row0 + gq, c = col0 + 2 * tq;
  split_bf16(f(r, c), f(r, c + 1), hi[0], lo[0]);
  split_bf16(f(r + 8, c), f(r + 8, c + 1), hi[1], lo[1]);
  split_bf16(f(r, c + 8), f(r, c + 9), hi[2], lo[2]);
  split_bf16(f(r + 8, c + 8), f(r + 8, c + 9), hi[3], lo[3]);
}

// acc += (ahi + alo)(bhi + blo) without the lo·lo term: three bf16 mma, ~16 mantissa bits.
__device__ __forceinline__ void mma_split(float (&acc)[4], const uint32_t (&ahi)[4],
                                          const uint32_t (&alo)[4], uint32_t bh0, uint32_t bh1,
                                          uint32_t bl0, uint32_t bl1) {
  mma_16816(acc, ahi, bh0, bh1);
  mma_16816(acc, alo, bh0, bh1);
  mma_16816(acc, ahi, bl0, bl1);
}

// Copies rows [r0, r0 + 64) of an fp32 head slice (W floats wide, row stride `stride`) into two
// bf16 smem tiles hi, lo [64][W + 8] (hi + lo ≈ the fp32 value); rows >= r1 are zero.
template <int W>
__device__ __forceinline__ void load_tile_split(bf16* hi, bf16* lo, const float* base, int64_t r0,
                                                int64_t r1, int64_t stride) {
  constexpr int kC = W / 2;
  for (int idx = threadIdx.x; idx < kBT * kC; idx += kThreads) {
    const int r = idx / kC, c = 2 * (idx % kC);
    float2 val = make_float2(0.f, 0.f);
    if (r0 + r < r1) val = *reinterpret_cast<const float2*>(base + (r0 + r) * stride + c);
    uint32_t h, l;
    split_bf16(val.x, val.y, h, l);
    *reinterpret_cast<uint32_t*>(hi + r * (W + 8) + c) = h;
    *reinterpret_cast<uint32_t*>(lo + r * (W + 8) + c) = l;
  }
}

// Copies a [K][V] fp32 state (row stride V) into a bf16 smem tile [K][V + 8].
template <int K, int V>
__device__ __forceinline__ void load_state_f32(bf16* s, const float* src) {
  constexpr int kC = V / 2;
  for (int idx = threadIdx.x; idx < K * kC; idx += kThreads) {
    const int r = idx / kC, c = 2 * (idx % kC);
    const float2 val = *reinterpret_cast<const float2*>(src + int64_t(r) * V + c);
    *reinterpret_cast<uint32_t*>(s + r * (V + 8) + c) = pack_bf16(val.x, val.y);
  }
}

// Chunk-local inclusive cumulative log-gate of rows [r0, r0 + 64) into sb (rows >= r1 add 0);
// beta into sbeta (0 past the end). Thread 0 scans (64 adds).
__device__ __forceinline__ void load_rows(float* sb, float* sbeta, const Params& p, int64_t h,
                                          int64_t r0, int64_t r1) {
  if (threadIdx.x < kBT) {
    const int64_t r = r0 + threadIdx.x;
    sbeta[threadIdx.x] = r < r1 ? p.beta[r * p.h + h] : 0.f;
  }
  if (threadIdx.x == 0) {
    float acc = 0.f;
    for (int t = 0; t < kBT; ++t) {
      if (p.g && r0 + t < r1) acc += p.g[(r0 + t) * p.h + h];
      sb[t] = acc;
    }
  }
}

// Scratch of one call (stream-ordered allocations): index, bc, kn, W, Ũ, U, hs, and with
// `backward` T, dhs, du_in, du.
struct Workspace {
  Workspace(const Tensor& q, const Tensor& v, const Tensor& cu_seqlens, bool backward);
  void fill(Params& p) const;
  int64_t n = 0, max_chunks = 0;
  Tensor cu, index, bc, kn, w, ut, u, hs, tm, dhs, du_in, du;
};

// Index + prep + forward state pass into `ws` (the forward, and the backward's recompute); fills
// the input pointers, dims and scratch pointers of `p`.
void run_forward_states(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& beta,
                        const Tensor& g, const Tensor& h0, DeltaGate gate, double scale, bool l2,
                        Workspace& ws, Params& p, cudaStream_t st);

// Dynamic shared memory of the backward's gradient kernel (the largest of the family).
int chunk_bwd_smem_bytes(int64_t k, int64_t v);

// Kernels of delta_rule_chunk_fwd.cu shared with the backward.
void build_index(const Tensor& cu_seqlens, int64_t b, int64_t t, int64_t n, int64_t* seq,
                 int64_t* chunks, cudaStream_t st);
// Per chunk: bc, kn, W, Ũ (and T when p.tm).
void launch_prep(const Params& p, cudaStream_t st);
// Forward state pass: hs, U, ht.
void launch_states(const Params& p, cudaStream_t st);

}  // namespace seqmix::delta_chunk
