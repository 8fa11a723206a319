// Device helpers shared by the chunked gated-linear-attention kernels (gla_chunk_fwd.cu,
// gla_chunk_bwd.cu): launch parameters, sequence / chunk bookkeeping for packed batches,
// bf16 tensor-core fragments (mma.sync m16n8k16, fp32 accumulate: sm_80 code that runs on sm_90)
// built from element functors, tile loads into padded shared memory (plain and cp.async) and the
// chunk-local cumulative log-gate. Include only from .cu files.
//
// Fragment layout of mma.m16n8k16 (lane = 4 * gq + tq):
//   A 16x16 row-major: a0 (row gq, cols 2tq..+1), a1 (row gq+8), a2 (cols +8), a3 (row+8, col+8)
//   B 16x8:            b0 (k rows 2tq..+1, col gq), b1 (k rows 2tq+8..+9)
//   C 16x8 fp32:       c0, c1 (row gq, cols 2tq..+1), c2, c3 (row gq+8)
// The C fragments of two adjacent 16x8 tiles are the A fragment of one 16x16 tile.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/half.h"
#include "kernels/common/seq_index.cuh"
#include "kernels/gla/gla.h"

namespace seqmix::gla_chunk {

constexpr int kBT = 64;  // chunk length
static_assert(kBT == kGlaChunk, "gla_chunk_states_shape (gla.h) counts chunks of kBT steps");
constexpr int kThreads = 128;  // 4 warps; warp w owns rows [16 w, 16 w + 16) of a chunk
constexpr int kBV = 64;        // V slice of the state kernels
constexpr int kBK = 64;        // K slice of the state kernels (warp w owns rows 16w..16w+15)
// The per-key-dim dq/dk/dv kernel runs 8 warps: warp w owns rows [16 (w % 4), +16) and the key
// (dq, dk) or value (dv) half w / 4, with a 64x64 f32 score exchange buffer (row stride kLdX).
constexpr int kThreadsKV = 256;
constexpr int kLdX = kBT + 8;

// Dynamic shared memory of the per-chunk kernels (bytes): gate tile (f32, per key dim or per
// step), q and k tiles, v (and dO) tiles, one state block; rows padded by 8 bf16 / 4 f32 against
// bank conflicts.
constexpr int gate_smem(int K, bool KV) {
  return (KV ? kBT * (K + 4) : kBT) * 4;
}
constexpr int out_smem(int K, int VS, bool KV) {
  return gate_smem(K, KV) + 2 * kBT * (K + 8) * 2 + kBT * (VS + 8) * 2 + K * (VS + 8) * 2 +
         (KV ? kBT * kLdX * 4 : 0);
}
constexpr int dqkv_smem(int K, int V, bool KV) {
  return gate_smem(K, KV) + 2 * kBT * (K + 8) * 2 + 2 * kBT * (V + 8) * 2 + K * (V + 8) * 2 +
         (KV ? kBT * kLdX * 4 : 0);
}

// Everything the kernels need. Rows are flattened (b * T + t) or packed (cu_seqlens) time steps;
// token `row` of head h lives at (row * H + h) * K (q, k, dq, dk, dg per key) / (row * H + h) * V.
struct Params {
  const bf16* q = nullptr;
  const bf16* k = nullptr;
  const bf16* v = nullptr;
  const float* g = nullptr;  // per GlaGate
  // Chunk-local inclusive cumulative log-gate: [rows, H, K] for KeyVector
  // (gla_chunk_fwd_kernel_cumsum), [rows, H] for HeadScalar (gla_chunk_fwd_kernel_cumsum_scalar:
  // cumsum_scalar kernel's fixed-order sums of each chunk's raw gates); read by every later
  // kernel; null for None /
  // HeadConst (computed in place).
  const float* gc = nullptr;
  const float* h0 = nullptr;  // [N, H, K, V] or null
  bf16* o = nullptr;
  float* ht = nullptr;  // [N, H, K, V] or null
  const bf16* dout = nullptr;
  const float* dht = nullptr;
  bf16* dq = nullptr;
  bf16* dk = nullptr;
  bf16* dv = nullptr;
  float* dg = nullptr;
  float* dh0 = nullptr;
  // Scratch.
  const int64_t* seq = nullptr;     // [N + 1] row offsets of packed sequences (dense: null)
  const int64_t* chunks = nullptr;  // [N + 1] chunk offsets of packed sequences (dense: null)
  int64_t tlen = 0, cps = 0;        // dense batch (seq == nullptr): T, chunks per sequence
  bf16* hs = nullptr;               // [chunks, H, K, V] state at each chunk start
  bf16* dhs = nullptr;              // [chunks, H, K, V] gradient of the state at each chunk end
  // dg scratch of per-key-dim gates (diagonal terms left out), [rows, H, K]: dgk = q dq' (dq
  // phase), then q dq' - k dk_intra (dk phase, same thread); dgk2 = k dk_inter. Scalar gates keep
  // their dg terms in shared memory.
  float* dgk = nullptr;
  float* dgk2 = nullptr;
  float* dgs = nullptr;  // [chunks, H, K] exp(B) Σ_v S_c dH (state term of the chunk's gates)
  int64_t n = 0, h = 0, kd = 0, vd = 0;
  int64_t max_chunks = 0;
  int gate = 0;  // GlaGate as int
  float scale = 1.f;
};

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float ld_bf16(const bf16* p) {
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
}

__device__ __forceinline__ uint32_t lds32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// A fragment of the 16x16 block at (row0, col0) of a row-major bf16 smem tile.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* s, int ld, int row0, int col0,
                                       int gq, int tq) {
  const bf16* p = s + (row0 + gq) * ld + col0 + 2 * tq;
  a[0] = lds32(p);
  a[1] = lds32(p + 8 * ld);
  a[2] = lds32(p + 8);
  a[3] = lds32(p + 8 * ld + 8);
}

// B fragment with k = tile columns col0..+15 and n = tile rows row0..+7 (B = tileᵀ).
__device__ __forceinline__ void load_bt(uint32_t& b0, uint32_t& b1, const bf16* s, int ld, int row0,
                                        int col0, int gq, int tq) {
  const bf16* p = s + (row0 + gq) * ld + col0 + 2 * tq;
  b0 = lds32(p);
  b1 = lds32(p + 8);
}

// B fragments of two adjacent n-blocks (cols col0..+15) with k = tile rows row0..+15 of a
// row-major tile (B = tile): b[0], b[1] for cols col0.., b[2], b[3] for cols col0+8...
__device__ __forceinline__ void load_b(uint32_t (&b)[4], const bf16* s, int ld, int row0, int col0,
                                       int lane) {
  const int m = lane >> 3;
  const bf16* p = s + (row0 + (lane & 7) + (m & 1) * 8) * ld + col0 + (m >> 1) * 8;
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(addr));
}

// acc[j] = A Bᵀ for the 16 rows row0.. of the row-major tile sa (A) and the 8 rows n0 + 8j.. of
// the row-major tile sb (B = those rows, transposed), summed over the KD shared columns: the plain
// "rows × rowsᵀ" product of the chunked kernels (e.g. the inter-chunk part of dq, dO S_cᵀ; the
// Gram K Kᵀ; the scores dO Uᵀ). Only the blocks j < jhi are formed (a causal band; the others stay
// zero); kUnroll is the unroll count of the loop over the 16-column steps.
template <int NJ, int KD, int kUnroll = 1>
__device__ __forceinline__ void mma_rows_bt(float (&acc)[NJ][4], const bf16* sa, int lda, int row0,
                                            const bf16* sb, int ldb, int n0, int gq, int tq,
                                            int jhi = NJ) {
#pragma unroll
  for (int j = 0; j < NJ; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll kUnroll
  for (int kk = 0; kk < KD / 16; ++kk) {
    uint32_t a[4];
    load_a(a, sa, lda, row0, 16 * kk, gq, tq);
#pragma unroll
    for (int j = 0; j < NJ; ++j)
      if (j < jhi) {
        uint32_t b0, b1;
        load_bt(b0, b1, sb, ldb, n0 + 8 * j, 16 * kk, gq, tq);
        mma_16816(acc[j], a, b0, b1);
      }
  }
}

// A fragment whose element (r, c) is f(r, c) (rows row0.., cols col0..).
template <class F>
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const F& f, int row0, int col0, int gq,
                                       int tq) {
  const int r = row0 + gq, c = col0 + 2 * tq;
  a[0] = pack_bf16(f(r, c), f(r, c + 1));
  a[1] = pack_bf16(f(r + 8, c), f(r + 8, c + 1));
  a[2] = pack_bf16(f(r, c + 8), f(r, c + 9));
  a[3] = pack_bf16(f(r + 8, c + 8), f(r + 8, c + 9));
}

// B fragment whose element (k, n) is f(k, n) (k = k0.., n = n0..).
template <class F>
__device__ __forceinline__ void frag_b(uint32_t& b0, uint32_t& b1, const F& f, int k0, int n0,
                                       int gq, int tq) {
  const int k = k0 + 2 * tq, n = n0 + gq;
  b0 = pack_bf16(f(k, n), f(k + 1, n));
  b1 = pack_bf16(f(k + 8, n), f(k + 9, n));
}

// A fragment of the 16x16 k-block j from the C fragments of a 16x(8 N) score tile.
template <int N>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c)[N][4], int j) {
  a[0] = pack_bf16(c[2 * j][0], c[2 * j][1]);
  a[1] = pack_bf16(c[2 * j][2], c[2 * j][3]);
  a[2] = pack_bf16(c[2 * j + 1][0], c[2 * j + 1][1]);
  a[3] = pack_bf16(c[2 * j + 1][2], c[2 * j + 1][3]);
}

// acc[n] += Σ_{j in [jlo, jhi)} (the 16x16 block j of a 16x64 fp32 score tile sc, rounded to bf16
// as the A operand) · (rows 16j.. of the row-major tile sb, columns c0 .. c0 + 8 NB): a causal band
// of the scores times a tile (e.g. the output's intra-chunk product, scores · V).
template <int NB>
__device__ __forceinline__ void mma_scores_tile(float (&acc)[NB][4], const float (&sc)[8][4],
                                                const bf16* sb, int ldb, int c0, int jlo, int jhi,
                                                int lane) {
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j >= jlo && j < jhi) {
      uint32_t a[4];
      c_to_a(a, sc, j);
#pragma unroll
      for (int jj = 0; jj < NB / 2; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, sb, ldb, 16 * j, c0 + 16 * jj, lane);
        mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
      }
    }
}

// Transpose of an 8x8 b16 matrix held one row pair per lane (lane = 4 * row + col / 2): the B
// fragment (k = 2tq.., n = gq) of an 8x8 block becomes the fragment of its transpose (sm_75+).
__device__ __forceinline__ uint32_t trans8x8(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

// sj = the 16x8 C blocks 2j and 2j + 1 of a 16x64 score tile for a j known only at run time (a
// select chain: the tile stays in registers, so loops over j need not be unrolled), and back.
__device__ __forceinline__ void pick_block(float (&sj)[2][4], const float (&sc)[8][4], int j) {
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    sj[0][e] = sc[0][e];
    sj[1][e] = sc[1][e];
  }
#pragma unroll
  for (int i = 1; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      sj[0][e] = i == j ? sc[2 * i][e] : sj[0][e];
      sj[1][e] = i == j ? sc[2 * i + 1][e] : sj[1][e];
    }
}
__device__ __forceinline__ void put_block(float (&sc)[8][4], const float (&sj)[2][4], int j) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      sc[2 * i][e] = i == j ? sj[0][e] : sc[2 * i][e];
      sc[2 * i + 1][e] = i == j ? sj[1][e] : sc[2 * i + 1][e];
    }
}

// x, y -> hi = bf16(x, y) and lo = bf16(x - hi, y - hi): hi + lo carries about 16 mantissa bits,
// so hi·b + lo·b + a·b_lo emulates a near-fp32 product with three bf16 mma.
__device__ __forceinline__ void split_bf16(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  const float2 hf = __bfloat1622float2(h);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = pack_bf16(x - hf.x, y - hf.y);
}

// frag_b split into a high and a low part.
template <class F>
__device__ __forceinline__ void frag_b_split(uint32_t& h0, uint32_t& h1, uint32_t& l0, uint32_t& l1,
                                             const F& f, int k0, int n0, int gq, int tq) {
  const int k = k0 + 2 * tq, n = n0 + gq;
  split_bf16(f(k, n), f(k + 1, n), h0, l0);
  split_bf16(f(k + 8, n), f(k + 9, n), h1, l1);
}

// c_to_a split into a high and a low part.
template <int N>
__device__ __forceinline__ void c_to_a_split(uint32_t (&hi)[4], uint32_t (&lo)[4],
                                             const float (&c)[N][4], int j) {
  split_bf16(c[2 * j][0], c[2 * j][1], hi[0], lo[0]);
  split_bf16(c[2 * j][2], c[2 * j][3], hi[1], lo[1]);
  split_bf16(c[2 * j + 1][0], c[2 * j + 1][1], hi[2], lo[2]);
  split_bf16(c[2 * j + 1][2], c[2 * j + 1][3], hi[3], lo[3]);
}

// 16-byte global -> shared copy that bypasses registers (sm_80+); `valid = false` writes zeros.
__device__ __forceinline__ void cp_async16(void* sdst, const void* gsrc, bool valid) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(sdst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gsrc),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async4(void* sdst, const void* gsrc, bool valid) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(sdst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(gsrc),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Copies rows [r0, r0 + 64) of a head slice (row `row` at base + row * stride, W bf16 wide) into
// smem [64][W + 8]; rows >= r1 and columns >= `cols` are zero-filled. 16-byte accesses (W % 8 == 0,
// cols % 8 == 0, base aligned). ASYNC: cp.async (the caller commits and waits).
template <int W, bool ASYNC = false, int NT = kThreads>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* base, int64_t r0, int64_t r1,
                                          int64_t stride, int cols = W) {
  constexpr int kC = W / 8;
  for (int idx = threadIdx.x; idx < kBT * kC; idx += NT) {
    const int r = idx / kC, c = idx % kC;
    const bool ok = r0 + r < r1 && c * 8 < cols;
    bf16* dst = s + r * (W + 8) + c * 8;
    const bf16* src = base + (ok ? (r0 + r) * stride + c * 8 : 0);
    if constexpr (ASYNC) {
      cp_async16(dst, src, ok);
    } else {
      uint4 val = make_uint4(0, 0, 0, 0);
      if (ok) val = *reinterpret_cast<const uint4*>(src);
      *reinterpret_cast<uint4*>(dst) = val;
    }
  }
}

// Copies a [K][W] bf16 block of a state (row stride `ld` elements) into smem [K][W + 8].
// ASYNC: cp.async (the caller commits and waits).
template <int K, int W, bool ASYNC = false, int NT = kThreads>
__device__ __forceinline__ void load_state(bf16* s, const bf16* src, int64_t ld) {
  constexpr int kC = W / 8;
  for (int idx = threadIdx.x; idx < K * kC; idx += NT) {
    const int r = idx / kC, c = idx % kC;
    if constexpr (ASYNC) {
      cp_async16(s + r * (W + 8) + c * 8, src + int64_t(r) * ld + c * 8, true);
    } else {
      *reinterpret_cast<uint4*>(s + r * (W + 8) + c * 8) =
          *reinterpret_cast<const uint4*>(src + int64_t(r) * ld + c * 8);
    }
  }
}

// Chunk-local inclusive cumulative log-gate of rows [r0, r0 + 64) (from p.gc; rows >= r1 repeat
// the last valid row: they add nothing). KV: sb[t * (W + 4) + d] for key dims c0 + d, d < W (0 for
// c0 + d >= K); otherwise sb[t] (None: 0; HeadConst: (t + 1) g[h]; HeadScalar: the cumulative
// gates p.gc). ASYNC: cp.async for the per-key-dim tile and HeadScalar (the caller commits and
// waits); the rest are plain stores. `gh`: head_const_gate(p, h) (0 unless HeadConst), read once
// by the caller (the state passes call this once per chunk step, and a global load there would
// sit on the sequential chain); unused for KeyVector and HeadScalar.
__device__ __forceinline__ float head_const_gate(const Params& p, int64_t h) {
  return p.gate == int(GlaGate::HeadConst) ? p.g[h] : 0.f;
}
template <int W, bool KV, bool ASYNC = false, int NT = kThreads>
__device__ __forceinline__ void load_gate(float* sb, const Params& p, int64_t h, int64_t r0,
                                          int64_t r1, int c0, float gh) {
  if constexpr (KV) {
    constexpr int kC = W / 4;
    const int kd = int(p.kd);
    for (int idx = threadIdx.x; idx < kBT * kC; idx += NT) {
      const int t = idx / kC, c = idx % kC;
      const int64_t row = r0 + t < r1 ? r0 + t : r1 - 1;
      const bool ok = c0 + 4 * c < kd;
      float* dst = sb + t * (W + 4) + 4 * c;
      const float* src = p.gc + (ok ? (row * p.h + h) * kd + c0 + 4 * c : 0);
      if constexpr (ASYNC) {
        cp_async16(dst, src, ok);
      } else {
        float4 val = make_float4(0.f, 0.f, 0.f, 0.f);
        if (ok) val = *reinterpret_cast<const float4*>(src);
        *reinterpret_cast<float4*>(dst) = val;
      }
    }
  } else {
    for (int t = threadIdx.x; t < kBT; t += NT) {
      const int64_t row = r0 + t < r1 ? r0 + t : r1 - 1;
      if (p.gate == int(GlaGate::HeadScalar)) {
        const float* src = p.gc + row * p.h + h;
        if constexpr (ASYNC)
          cp_async4(sb + t, src, true);
        else
          sb[t] = *src;
      } else {
        sb[t] = float(row - r0 + 1) * gh;  // gh = 0 for None
      }
    }
  }
}

// Host side (gla_chunk_fwd.cu): the sequence bookkeeping of p (p.n set): for a packed batch
// (`cu` defined, I64 on the device) allocates `index` and fills it on the stream; a dense batch of
// length t needs none (seq_index.cuh).
void set_index(Params& p, const Tensor& cu, int64_t t, Tensor& index, cudaStream_t st);
// Chunk-local cumulative log-gates p.gc (KeyVector; no-op otherwise). `gc` must hold rows * H * K
// floats.
void launch_cumsum(const Params& p, cudaStream_t st);
// Bytes of dynamic shared memory of the chunk kernels for head dims (K, V); 0 when unsupported.
int chunk_smem_bytes(int64_t kd, int64_t vd, bool kv);
// State recurrence over the chunks (forward: states at chunk starts + ht; reverse: gradients of
// the states at chunk ends + dh0).
void launch_states(const Params& p, bool reverse, cudaStream_t st);

}  // namespace seqmix::gla_chunk
