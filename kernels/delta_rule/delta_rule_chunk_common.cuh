// Device helpers shared by the chunked delta-rule kernels (delta_rule_chunk_fwd.cu,
// delta_rule_chunk_bwd.cu): parameters (sequence / chunk bookkeeping:
// kernels/common/seq_index.cuh), the per-row scalars of a chunk (chunk-local cumulative log-gate b,
// the l2-norm factors of k), and the kernels both directions run (the per-chunk UT transform and
// the sequential state pass). The bf16 tensor-core fragments (mma.sync m16n8k16, fp32 accumulate)
// and tile loads come from kernels/gla/gla_common.cuh. Include only from .cu files.
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
#include "kernels/common/seq_index.cuh"
#include "kernels/delta_rule/delta_rule.h"
#include "kernels/gla/gla_common.cuh"

namespace seqmix::delta_chunk {

using gla_chunk::c_to_a;
using gla_chunk::cp_async16;
using gla_chunk::cp_async_commit;
using gla_chunk::cp_async_wait;
using gla_chunk::frag_a;
using gla_chunk::frag_b;
using gla_chunk::kBT;
using gla_chunk::kThreads;
// Threads of the scalar-gate state passes (forward and reverse): 8 warps, see the forward's.
constexpr int kStatesThreads = 256;
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
  const float* g = nullptr;   // HeadScalar [rows, H] or null
  const float* gk = nullptr;  // KeyVector [rows, H, K] or null
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
  const int64_t* seq = nullptr;     // [N + 1] row offsets of packed sequences (dense: null)
  const int64_t* chunks = nullptr;  // [N + 1] chunk offsets of packed sequences (dense: null)
  int64_t tlen = 0, cps = 0;        // dense batch (seq == nullptr): T, chunks per sequence
  float* bc = nullptr;              // [rows, H] chunk-local cumulative log-gate
  float* kn = nullptr;              // [rows, H] 1 / ‖k‖ (1 without l2norm_qk; 0 past the end)
  float* w = nullptr;               // [rows, H, K] W (fp32: split into bf16 hi + lo on use)
  float* ut = nullptr;              // [rows, H, V] Ũ
  bf16* u = nullptr;                // [rows, H, V] U (bf16 hi part)
  bf16* ul = nullptr;               // [rows, H, V] U − hi (backward with dg: hi + lo ≈ fp32 U)
  float* tm = nullptr;              // [chunks, H, 64, 64] T (backward, and a keeping forward)
  bf16* hs = nullptr;               // [chunks, H, K, V] state at each chunk start (bf16)
  bf16* hsl = nullptr;              // hs's bf16 lo part, hs + hsl ≈ S_c (with dg only)
  bf16* dhs = nullptr;              // [chunks, H, K, V] gradient of the state at each chunk end
  float* sdot = nullptr;   // [chunks, H, V / 64] ⟨dS_{c+1}, S_c⟩ per V slice, fp32 (with dg)
  float* du_in = nullptr;  // [rows, H, V] scale Mᵀ dO (backward)
  bf16* duh = nullptr;     // [rows, H, V] dU split into bf16 hi + lo (backward)
  bf16* dul = nullptr;
  float* qn = nullptr;  // [rows, H] 1 / ‖q‖ (backward; written by the dui kernel)
  // [rows, H, V / 64] per V slice: U_s · (K̂ ⊙ exp(B − b))_s dS_{c+1}, the X term of db (backward
  // with dg; from the fp32 dS_{c+1} of the reverse state pass and hi + lo U)
  float* xs = nullptr;
  // KeyVector only: [rows, H, K] chunk-local cumulative log-gate per key dim (rows of a short last
  // chunk are not stored), and K̃ = K̂ ⊙ exp(B − b) (fp32, split into bf16 hi + lo on use).
  float* bk = nullptr;
  float* kt = nullptr;
  // KeyVector backward: Q̃ = scale Q̂ ⊙ exp(b) [rows, H, K] (dui kernel); per V slice Y_s =
  // dS_{c+1} U_s [rows, H, V / 64, K] and ⟨dS_{c+1}, S_c⟩ per key row [chunks, H, V / 64, K]
  // (reverse state pass, fp32; the grad kernel reads Y and writes X = K̃ ⊙ Σ_s Y_s over slice 0,
  // for dg); the row-side db terms [rows, H, K] (grad kernel, for dg).
  float* qt = nullptr;
  float* xk = nullptr;
  float* sdk = nullptr;
  float* dbk = nullptr;
  int64_t n = 0, h = 0, kd = 0, vd = 0;
  int64_t max_chunks = 0;
  int gate = 0;  // DeltaGate as int
  bool l2 = false;
  float scale = 1.f;
  int smem_optin = 0;  // opt-in shared memory per block of the device (picks the pipeline depth)
  int max_stages = 2;  // 1: single-buffered state passes (SEQMIX_DELTA_CHUNK_STAGES=1, for tests)
};

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

// The two bf16 of a packed pair as floats (low half first).
__device__ __forceinline__ float2 unpack_bf16(uint32_t x) {
  __nv_bfloat162 v;
  *reinterpret_cast<uint32_t*>(&v) = x;
  return __bfloat1622float2(v);
}

// cp.async of a [K][V] bf16 state (row stride V) into smem [K][V + 8] by the NT threads
// [first, first + NT) of the block. The caller commits, waits.
template <int K, int V, int NT = kThreads>
__device__ __forceinline__ void load_state_async(bf16* s, const bf16* src, int first = 0) {
  constexpr int kC = V / 8;
  for (int idx = int(threadIdx.x) - first; idx < K * kC; idx += NT) {
    const int r = idx / kC, c = 8 * (idx % kC);
    cp_async16(s + r * (V + 8) + c, src + int64_t(r) * V + c, true);
  }
}

// 4-byte cp.async; `valid = false` writes a zero (gsrc must still be a valid address).
__device__ __forceinline__ void cp_async4z(void* sdst, const void* gsrc, bool valid) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(sdst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(gsrc),
               "r"(valid ? 4 : 0));
}

// cp.async of rows [r0, r0 + 64) of an fp32 head slice (W floats wide, row stride `stride`)
// into smem [64][W + 4] (fp32, unconverted); rows >= r1 are zero. The caller commits and waits.
template <int W, int NT = kThreads>
__device__ __forceinline__ void load_tile_f32_async(float* s, const float* base, int64_t r0,
                                                    int64_t r1, int64_t stride) {
  constexpr int kC = W / 4;
  for (int idx = threadIdx.x; idx < kBT * kC; idx += NT) {
    const int r = idx / kC, c = 4 * (idx % kC);
    const bool ok = r0 + r < r1;
    cp_async16(s + r * (W + 4) + c, base + (ok ? (r0 + r) * stride + c : 0), ok);
  }
}

// cp.async of the per-row scalars x[row * H + h] of rows [r0, r0 + 64) (0 past r1).
__device__ __forceinline__ void load_row_scalars_async(float* s, const float* x, int64_t hh,
                                                       int64_t h, int64_t r0, int64_t r1) {
  if (threadIdx.x < kBT) {
    const int64_t row = r0 + threadIdx.x;
    const bool ok = row < r1;
    cp_async4z(s + threadIdx.x, x + (ok ? row * hh + h : 0), ok);
  }
}

// A fragment (rows row0.., cols col0..) of an fp32 smem tile (row stride ld floats, ld % 32 == 4
// or 8 keeps it free of bank conflicts), split into bf16 hi + lo.
__device__ __forceinline__ void frag_a_split_f32(uint32_t (&hi)[4], uint32_t (&lo)[4],
                                                 const float* s, int ld, int row0, int col0, int gq,
                                                 int tq) {
  const float* p0 = s + (row0 + gq) * ld + col0 + 2 * tq;
  const float2 x0 = *reinterpret_cast<const float2*>(p0);
  const float2 x1 = *reinterpret_cast<const float2*>(p0 + 8 * ld);
  const float2 x2 = *reinterpret_cast<const float2*>(p0 + 8);
  const float2 x3 = *reinterpret_cast<const float2*>(p0 + 8 * ld + 8);
  split_bf16(x0.x, x0.y, hi[0], lo[0]);
  split_bf16(x1.x, x1.y, hi[1], lo[1]);
  split_bf16(x2.x, x2.y, hi[2], lo[2]);
  split_bf16(x3.x, x3.y, hi[3], lo[3]);
}

// Chunk-local inclusive cumulative log-gate of rows [r0, r0 + 64) into sb (rows >= r1 add 0);
// beta into sbeta (0 past the end). The log-gates are loaded in parallel, then thread 0 scans
// them in shared memory (64 adds in row order). All threads must call it; the caller syncs
// before reading sb.
__device__ __forceinline__ void load_rows(float* sb, float* sbeta, const Params& p, int64_t h,
                                          int64_t r0, int64_t r1) {
  if (threadIdx.x < kBT) {
    const int64_t r = r0 + threadIdx.x;
    sbeta[threadIdx.x] = r < r1 ? p.beta[r * p.h + h] : 0.f;
    sb[threadIdx.x] = p.g && r < r1 ? p.g[r * p.h + h] : 0.f;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float acc = 0.f;
    for (int t = 0; t < kBT; ++t) {
      acc += sb[t];
      sb[t] = acc;
    }
  }
}

// Scratch of one call (stream-ordered allocations): index (packed batches), bc, kn, W, Ũ, U, hs,
// and with `backward` T, dhs, du_in, du, qn (and with `want_dg` U's lo part, xs, hs's lo part (fp32
// hs for KeyVector), sdot); with `key_vector` also bk, kt (and in the backward qt, xk, sdk, dbk).
struct Workspace {
  // own_states = false: hs, u (and hsl, ul) are left undefined, and own_prep = false: bc, kn,
  // w, tm (and bk, kt), for the caller to set (the backward given what the forward kept).
  Workspace(const Tensor& q, const Tensor& v, const Tensor& cu_seqlens, bool backward,
            bool want_dg = false, bool key_vector = false, bool own_states = true,
            bool own_prep = true);
  void fill(Params& p) const;
  int64_t n = 0, max_chunks = 0, tlen = 0;  // tlen: T (dense batches)
  Tensor cu, index, bc, kn, w, ut, u, ul, hs, hsl, tm, dhs, du_in, duh, dul, qn, xs, sdot, bk, kt,
      qt, xk, sdk, dbk;
};

// Index + prep + forward state pass into `ws` (the forward, and the backward's recompute; without
// `states`, no state pass: the backward given the forward's kept states; without `prep`, no prep
// either: given its kept outputs too); fills the input pointers, dims and scratch pointers of `p`.
void run_forward_states(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& beta,
                        const Tensor& g, const Tensor& h0, DeltaGate gate, double scale, bool l2,
                        Workspace& ws, Params& p, cudaStream_t st, bool states = true,
                        bool prep = true);

// The most dynamic shared memory per block that any kernel of the family needs for (K, V) (the
// state passes in their single-buffered form; they double-buffer when the device allows it).
int chunk_bwd_smem_bytes(int64_t k, int64_t v);
// The same for the KeyVector kernels (forward and backward), and for the forward's alone.
int chunk_bwd_kv_smem_bytes(int64_t k, int64_t v);
int chunk_kv_fwd_smem_bytes(int64_t k, int64_t v);
// Dynamic shared memory of the forward state pass with `stages` tile buffers.
int chunk_states_smem_bytes(int64_t k, int stages);

// Kernels of delta_rule_chunk_fwd.cu shared with the backward.
// Per chunk: bc, kn, W, Ũ (and T when p.tm).
void launch_prep(const Params& p, cudaStream_t st);
// Forward state pass: hs, U, ht.
void launch_states(const Params& p, cudaStream_t st);

}  // namespace seqmix::delta_chunk
