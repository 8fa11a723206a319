// Device helpers shared by the attention kernels: the launch parameters, the visibility mask,
// bf16 tensor-core fragments (mma.sync m16n8k16, fp32 accumulate; sm_80 code that runs on sm_90),
// ldmatrix.trans, cp.async tile loads into padded shared memory. Include only from .cu files.
//
// Fragment layout of mma.m16n8k16 (lane = 4 * gq + tq, gq = lane / 4, tq = lane % 4):
//   A 16x16 row-major: a0 (row gq, cols 2tq..+1), a1 (row gq+8), a2 (cols +8), a3 (row+8, col+8)
//   B 16x8  "col":     b0 (k rows 2tq..+1, col gq), b1 (k rows 2tq+8..+9)
//   C 16x8  fp32:      c0, c1 (row gq, cols 2tq..+1), c2, c3 (row gq+8)
// so the C fragments of two adjacent 16x8 score tiles are exactly the A fragment of a 16x16 P tile
// (FlashAttention-2 keeps P in registers).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/half.h"
#include "kernels/attention/attention.h"

namespace seqmix::attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Everything a kernel needs; element offsets are 64-bit. Token t of batch b, head h lives at
// ((b * T + t) * heads + h) * D for q/o/dout/dq (heads = H) and k/v/dk/dv (heads = Hkv).
struct Params {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  float* lse = nullptr;  // [B, H, T] natural log; forward output, backward input
  const void* dout = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  float* di = nullptr;  // [B, H, T] rowsum(dO * O) (backward scratch)
  int64_t b = 0, t = 0, h = 0, hkv = 0, d = 0;
  int64_t group = 1;  // H / Hkv
  int64_t window = 0;
  float scale = 1.f;       // softmax scale
  float scale_log2 = 1.f;  // scale * log2(e): scores are kept in the base-2 domain
  bool causal = true;
};

// Query i sees key j.
__device__ __forceinline__ bool visible(const Params& p, int64_t i, int64_t j) {
  return j < p.t && (!p.causal || j <= i) && (p.window == 0 || j > i - p.window);
}

// Keys [begin, end) seen by any query in [q0, q1) (q1 exclusive).
__host__ __device__ __forceinline__ void key_range(const Params& p, int64_t q0, int64_t q1,
                                                   int64_t& begin, int64_t& end) {
  end = p.causal ? (q1 < p.t ? q1 : p.t) : p.t;
  begin = p.window > 0 ? (q0 - p.window + 1 > 0 ? q0 - p.window + 1 : 0) : 0;
}
// Queries [begin, end) that see any key in [k0, k1).
__host__ __device__ __forceinline__ void query_range(const Params& p, int64_t k0, int64_t k1,
                                                     int64_t& begin, int64_t& end) {
  begin = p.causal ? k0 : 0;
  end = p.window > 0 ? (k1 - 1 + p.window < p.t ? k1 - 1 + p.window : p.t) : p.t;
}

__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices, transposed: lanes 8m..8m+7 give the row addresses of matrix m.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t lds32(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// A fragment of the 16x16 block at (row0, col0) of a row-major smem tile with leading dim ld.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* s, int ld, int row0, int col0,
                                       int gq, int tq) {
  const bf16* p = s + (row0 + gq) * ld + col0 + 2 * tq;
  a[0] = lds32(p);
  a[1] = lds32(p + 8 * ld);
  a[2] = lds32(p + 8);
  a[3] = lds32(p + 8 * ld + 8);
}

// B fragment (k = tile columns col0..col0+15, n = tile rows row0..row0+7) of a row-major tile
// whose rows are the n index: B = tile^T, e.g. K^T for S = Q K^T.
__device__ __forceinline__ void load_bt(uint32_t& b0, uint32_t& b1, const bf16* s, int ld, int row0,
                                        int col0, int gq, int tq) {
  const bf16* p = s + (row0 + gq) * ld + col0 + 2 * tq;
  b0 = lds32(p);
  b1 = lds32(p + 8);
}

// B fragments of two adjacent n-blocks (cols col0..col0+15) with k = tile rows row0..row0+15 of a
// row-major tile (e.g. V for O = P V): b[0], b[1] for cols col0.., b[2], b[3] for cols col0+8...
__device__ __forceinline__ void load_b_trans(uint32_t (&b)[4], const bf16* s, int ld, int row0,
                                             int col0, int lane) {
  const int m = lane >> 3;
  ldmatrix_x4_trans(b, s + (row0 + (lane & 7) + (m & 1) * 8) * ld + col0 + (m >> 1) * 8);
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;  // 0: nothing is read, the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Starts the copy of rows [r0, r0 + ROWS) of a [T, D] head slice (row stride `stride` elements)
// into smem [ROWS][D + 8]; rows >= t are zero-filled.
template <int ROWS, int D, int THREADS>
__device__ __forceinline__ void load_tile_async(bf16* s, const bf16* base, int64_t r0, int64_t t,
                                                int64_t stride) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kLd = D + 8;
  for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += THREADS) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int64_t row = r0 + r;
    const bool ok = row < t;
    cp_async16(s + r * kLd + c * 8, base + (ok ? row : 0) * stride + c * 8, ok);
  }
}

// Launch helpers (host; defined in attention_flash_fwd.cu / attention_flash_bwd.cu /
// attention_simt.cu).
Params make_params(const Tensor& q, const Tensor& k, double scale, bool causal, int64_t window);
void simt_fwd(const Params& p, cudaStream_t st);
void simt_bwd(const Params& p, cudaStream_t st);
void bwd_preprocess(const Params& p, bool bf16_inputs, cudaStream_t st);

}  // namespace seqmix::attn
