// CUDA chunked gated linear attention forward (bf16 in, fp32 accumulate, mma.sync m16n8k16).
//   S_{c+1} = exp(B_c) ⊙ S_c + K̃_cᵀ V_c,  K̃_s = k_s ⊙ exp(B_c - b_s)      (state kernel)
//   o_t = scale · [(q_t ⊙ exp(b_t)) S_c + Σ_{s≤t in chunk} (q_t ⊙ exp(b_t - b_s)) · k_s v_s]
// with b the chunk-local inclusive cumulative log-gate (per key dim for KeyVector, a scalar per
// step otherwise) and B_c = b at the chunk's last step. Chunks of 64 steps never cross sequence
// boundaries (packed batches use per-sequence chunk offsets).
// Kernels: (the index of packed batches: kernels/common/seq_index), cumsum / cumsum_scalar
// (chunk-local cumulative log-gates of per-key-dim / HeadScalar gates, once, read by every later
// kernel), states (one block per sequence, head, 64-row K slice and one or two 64-wide V slices or
// one 32-wide half slice, sequential over chunks with cp.async prefetch, fp32 state in registers,
// each chunk-start state stored in bf16), output (one block per chunk, head and V slice; scalar
// gates: 4 warps, warp w computes rows [16w, 16w + 16); per-key-dim gates: 8 warps, rows and
// value halves).
// Shapes: K in {64, 96, 128}, V in {64, 128, 192, 256}.
// Exactness of per-key-dim gates: the intra-chunk scores of rows [16i, 16i + 16) use the
// reference point r = b at row 16i + 7: q̃_t = q_t exp(b_t - r), k̃_s = k_s exp(r - b_s); every
// exponent spans at most 8 steps, so nothing overflows while 8 consecutive log-gates sum to more
// than about -80 (per step >= -10), and exp(+cumsum) of a whole chunk is never formed. Scalar
// gates apply exp(b_t - b_s) (<= 1) to the scores after the product: exact for any decay.
// Layouts: see kernels/gla/gla.h. Also the host entry points gla_chunk_supports / _fwd_cuda.
#include <cuda_runtime.h>
#include <cstdlib>

#include <algorithm>
#include <string>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "kernels/common/launch.cuh"
#include "kernels/common/validate.h"
#include "kernels/gla/gla_common.cuh"

namespace seqmix {
namespace gla_chunk {
namespace {

// Chunk-local inclusive cumulative log-gate (per-key-dim gates), one block per (chunk, head):
// thread d sums key dim d over the chunk's rows in order (loads issued 16 at a time).
// Deterministic; rows past the sequence are not written.
__global__ void __launch_bounds__(kThreads) gla_chunk_fwd_kernel_cumsum(const Params p) {
  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  float* gc = const_cast<float*>(p.gc);
  const int64_t kd = p.kd, stride = p.h * kd;
  for (int64_t d = threadIdx.x; d < kd; d += kThreads) {
    const float* src = p.g + (r0 * p.h + h) * kd + d;
    float* dst = gc + (r0 * p.h + h) * kd + d;
    float acc = 0.f;
    const int len = int(r1 - r0 < kBT ? r1 - r0 : kBT);
#pragma unroll 1
    for (int t0 = 0; t0 < len; t0 += 16) {
      float buf[16];
#pragma unroll
      for (int t = 0; t < 16; ++t) buf[t] = t0 + t < len ? src[t * stride] : 0.f;
#pragma unroll
      for (int t = 0; t < 16; ++t) {
        acc += buf[t];
        if (t0 + t < len) dst[t * stride] = acc;
      }
      src += 16 * stride;
      dst += 16 * stride;
    }
  }
}

// Chunk-local inclusive cumulative log-gate (HeadScalar), one block per (chunk, 16 heads): thread
// (segment s, head) sums rows [8s, 8s + 8) of its head in order, then adds the totals of the
// segments before it (in segment order): a fixed order, deterministic. Each warp reads and writes
// whole rows of 16 consecutive heads (the gates are [rows, H]). Rows past the sequence are not
// written (the later kernels' clamped loads repeat its last row). A separate kernel, not a step of
// the sequential state pass, where the scan was on every step's critical path (measured on an
// H100: +5 µs per pass at (4, 4096, 16, 128), +36 µs at (2, 16384, 8, 128)).
constexpr int kCsHeads = 16, kCsSegs = kThreads / kCsHeads, kCsRows = kBT / kCsSegs;
static_assert(kCsSegs * kCsRows == kBT, "segments cover the chunk");
__global__ void __launch_bounds__(kThreads) gla_chunk_fwd_kernel_cumsum_scalar(const Params p) {
  __shared__ float tot[kCsSegs][kCsHeads];
  const int hl = int(threadIdx.x) % kCsHeads, seg = int(threadIdx.x) / kCsHeads;
  const int64_t x = blockIdx.x, h = int64_t(blockIdx.y) * kCsHeads + hl;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;  // uniform over the block
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT + seg * kCsRows,
                r1 = seq_row(p, n + 1);
  const bool hok = h < p.h;
  float v[kCsRows];
#pragma unroll
  for (int i = 0; i < kCsRows; ++i) v[i] = hok && r0 + i < r1 ? p.g[(r0 + i) * p.h + h] : 0.f;
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < kCsRows; ++i) {
    acc += v[i];
    v[i] = acc;
  }
  tot[seg][hl] = acc;
  __syncthreads();
  float off = 0.f;
  for (int s = 0; s < seg; ++s) off += tot[s][hl];
  float* gc = const_cast<float*>(p.gc);
#pragma unroll
  for (int i = 0; i < kCsRows; ++i)
    if (hok && r0 + i < r1) gc[(r0 + i) * p.h + h] = off + v[i];
}

// Forward (REV = false): state at each chunk start -> p.hs, final state -> p.ht.
// Reverse (REV = true): dS_c = exp(B_c) dS_{c+1} + scale Q̂_cᵀ dO_c with Q̂_t = q_t exp(b_t); the
// gradient at each chunk end -> p.dhs, at the sequence start -> p.dh0.
// One block per (sequence, head, 64-row K slice, NVS VW-wide V slices; VW = 64, or 32 with
// NVS = 1): the rows of the state are independent (row d only needs key dim d and its gate), and
// so are its columns, so slicing K and V multiplies the blocks of this sequential kernel. Warp w
// owns rows k0 + 16 (w % 4)..+15 (none past K: K = 96 leaves the upper half of the second slice
// idle) of V slice w / 4; with NVS = 2 (V = 128, 256) the gate and k / q tiles serve two V slices
// (half the bytes of the gate tile, the largest, per state). The tiles of the next kStages - 1
// chunks are in flight (cp.async) while one chunk is computed.
template <bool KV, int NVS = 1, int VW = kBV>
constexpr int states_stage_bytes() {
  return (KV ? kBT * (kBK + 4) : kBT) * 4 + kBT * (kBK + 8) * 2 + kBT * (NVS * VW + 8) * 2;
}
constexpr int kStages = 3;

template <int K, bool KV, bool REV, int NVS, int VW>
__global__ void __launch_bounds__(kThreads* NVS) gla_chunk_fwd_kernel_states(const Params p) {
  constexpr int kLdA = kBK + 8, kLdV = NVS * VW + 8, kLdB = kBK + 4, NT = kThreads * NVS;
  constexpr int kGateBytes = (KV ? kBT * kLdB : kBT) * 4;
  constexpr int kStage = states_stage_bytes<KV, NVS, VW>();
  static_assert(VW == kBV || (VW == kBV / 2 && NVS == 1), "64-wide slices, or one 32-wide");
  static_assert(kStage % 16 == 0 && kGateBytes % 16 == 0, "16-byte aligned stages");
  extern __shared__ __align__(16) unsigned char smem_raw[];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int wr = warp & 3, ws = warp >> 2;  // row block, V slice within the block
  const int nvs = int(p.vd / (NVS * VW));
  const int64_t vb = int64_t(blockIdx.x % nvs) * NVS * VW, h = blockIdx.y, n = blockIdx.z;
  const int64_t v0 = vb + ws * VW;  // this warp's V slice
  const int k0 = int(blockIdx.x / nvs) * kBK;
  const bool active = k0 + 16 * wr < K;
  const int64_t bos = seq_row(p, n), eos = seq_row(p, n + 1);
  const int64_t cb0 = seq_chunk(p, n);  // first chunk slot of the sequence
  const int64_t nc = (eos - bos + kBT - 1) / kBT;
  const int dbase = k0 + 16 * wr;  // absolute key row of this warp's first row
  const int64_t state_off = (n * p.h + h) * K * p.vd;

  float acc[VW / 8][4];
  const float* init = REV ? p.dht : p.h0;
#pragma unroll
  for (int j = 0; j < VW / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int d = dbase + gq + (e >> 1) * 8;
      const int64_t v = v0 + 8 * j + 2 * tq + (e & 1);
      acc[j][e] = init && active ? init[state_off + d * p.vd + v] : 0.f;
    }

  const float gh = head_const_gate(p, h);
  const bf16* a_src = (REV ? p.q : p.k) + h * K + k0;
  const bf16* v_src = (REV ? p.dout : p.v) + h * p.vd + vb;
  auto issue = [&](int64_t i) {  // tiles of the i-th chunk visited into stage i % kStages
    if (i < nc) {
      unsigned char* base = smem_raw + (i % kStages) * kStage;
      float* sb = reinterpret_cast<float*>(base);
      bf16* sa = reinterpret_cast<bf16*>(base + kGateBytes);
      const int64_t c = REV ? nc - 1 - i : i, r0 = bos + c * kBT;
      load_gate<kBK, KV, true, NT>(sb, p, h, r0, eos, k0, gh);
      load_tile<kBK, true, NT>(sa, a_src, r0, eos, p.h * K, K - k0);
      load_tile<NVS * VW, true, NT>(sa + kBT * kLdA, v_src, r0, eos, p.h * p.vd);
    }
    cp_async_commit();  // empty groups keep the wait count uniform
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) issue(i);

  // Chunk-start state (gradient) of chunk c of this sequence: store + c * cstride.
  bf16* const store = (REV ? p.dhs : p.hs) + (cb0 * p.h + h) * K * p.vd + v0;
  const int64_t cstride = p.h * K * p.vd;
  for (int64_t i = 0; i < nc; ++i) {
    const int64_t c = REV ? nc - 1 - i : i;
    if (active) {
      bf16* dst = store + c * cstride;
#pragma unroll
      for (int j = 0; j < VW / 8; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int d = dbase + gq + r * 8;
          *reinterpret_cast<uint32_t*>(dst + d * p.vd + 8 * j + 2 * tq) =
              pack_bf16(acc[j][2 * r], acc[j][2 * r + 1]);
        }
    }
    __syncthreads();               // the stage about to be refilled is no longer read
    issue(i + kStages - 1);        //
    cp_async_wait<kStages - 1>();  // this thread's copies of chunk i have landed
    __syncthreads();               // ... and everyone's
    if (!active) continue;

    unsigned char* base = smem_raw + (i % kStages) * kStage;
    const float* sb = reinterpret_cast<const float*>(base);
    const bf16* sa = reinterpret_cast<const bf16*>(base + kGateBytes);
    const bf16* sv = sa + kBT * kLdA;
    // (HeadScalar: the stage holds the cumulative gates p.gc of the cumsum_scalar kernel.)
    // Key dims are slice-local (0..63) in the tiles.
    auto gb = [&](int t, int d) { return KV ? sb[t * kLdB + d] : sb[t]; };
    const int lbase = 16 * wr;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float decay = __expf(gb(kBT - 1, lbase + gq + r * 8));
#pragma unroll
      for (int j = 0; j < VW / 8; ++j) {
        acc[j][2 * r] *= decay;
        acc[j][2 * r + 1] *= decay;
      }
    }
    // A[d][t] = k_td exp(B_d - b_td) (forward) or scale q_td exp(b_td) (reverse).
    auto fa = [&](int d, int t) {
      const float x = ld_bf16(sa + t * kLdA + d);
      if constexpr (REV)
        return p.scale * x * __expf(gb(t, d));
      else
        return x * __expf(gb(kBT - 1, d) - gb(t, d));
    };
#pragma unroll
    for (int kk = 0; kk < kBT / 16; ++kk) {
      uint32_t a[4];
      frag_a(a, fa, lbase, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < VW / 16; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, sv, kLdV, 16 * kk, ws * VW + 16 * jj, lane);
        mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
      }
    }
  }
  cp_async_wait<0>();

  float* out = REV ? p.dh0 : p.ht;
  if (out && active) {
#pragma unroll
    for (int j = 0; j < VW / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = dbase + gq + (e >> 1) * 8;
        const int64_t v = v0 + 8 * j + 2 * tq + (e & 1);
        out[state_off + d * p.vd + v] = acc[j][e];
      }
  }
}

// One block per (chunk, head, VS-wide V slice): o for the chunk's 64 rows; warp w owns rows
// [16w, 16w + 16). V > 128 is split into slices (the scores are recomputed per slice) so the
// accumulators stay in registers. Scalar gates (None, HeadConst, HeadScalar).
template <int K, int VS>
__global__ void __launch_bounds__(kThreads) gla_chunk_fwd_kernel_o(const Params p) {
  constexpr int kLdK = K + 8, kLdV = VS + 8;
  constexpr int V = VS;  // width of this block's slice
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sq = reinterpret_cast<bf16*>(sb + kBT);
  bf16* sk = sq + kBT * kLdK;
  bf16* sv = sk + kBT * kLdK;
  bf16* ss = sv + kBT * kLdV;

  const int64_t x = blockIdx.x, h = blockIdx.y, v0 = int64_t(blockIdx.z) * VS, vd = p.vd;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  load_gate<K, false, true>(sb, p, h, r0, r1, 0, head_const_gate(p, h));
  load_tile<K, true>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<VS, true>(sv, p.v + h * vd + v0, r0, r1, p.h * vd);
  cp_async_commit();
  load_state<K, VS>(ss, p.hs + (x * p.h + h) * K * vd + v0, vd);
  cp_async_wait<0>();
  __syncthreads();  // (HeadScalar: sb holds the cumulative gates p.gc of the state pass)

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp;

  // Scores of rows t0.. against keys 0..t0+15.
  float sc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    load_a(a, sq, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < 2 * warp + 2) {
        uint32_t b0, b1;
        load_bt(b0, b1, sk, kLdK, 8 * j, 16 * kk, gq, tq);
        mma_16816(sc[j], a, b0, b1);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
      float val = 0.f;
      if (s <= t) val = p.scale * sc[j][e] * __expf(sb[t] - sb[s]);
      sc[j][e] = val;
    }

  float acc[V / 8][4];
#pragma unroll
  for (int j = 0; j < V / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    // Inter-chunk part first: (scale q_t exp(b_t)) S_c as q S with the rows multiplied by
    // scale exp(b_t) afterwards (no per-element exp, q stays exact in bf16).
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    load_a(a, sq, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int jj = 0; jj < V / 16; ++jj) {
      uint32_t bfr[4];
      load_b(bfr, ss, kLdV, 16 * kk, 16 * jj, lane);
      mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
      mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
    }
  }
  {
    const float f0 = p.scale * __expf(sb[t0 + gq]), f1 = p.scale * __expf(sb[t0 + gq + 8]);
#pragma unroll
    for (int j = 0; j < V / 8; ++j) {
      acc[j][0] *= f0;
      acc[j][1] *= f0;
      acc[j][2] *= f1;
      acc[j][3] *= f1;
    }
  }
  mma_scores_tile<V / 8>(acc, sc, sv, kLdV, 0, 0, warp + 1, lane);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + t0 + gq + 8 * r;
    if (row >= r1) continue;
    bf16* orow = p.o + (row * p.h + h) * vd + v0;
#pragma unroll
    for (int j = 0; j < V / 8; ++j)
      *reinterpret_cast<uint32_t*>(orow + 8 * j + 2 * tq) =
          pack_bf16(acc[j][2 * r], acc[j][2 * r + 1]);
  }
}

// Per-key-dim gates: the output with 8 warps per (chunk,
// head, V slice): warp w owns rows t0 = 16 (w % 4).. and the value half w / 4 of the slice. The
// gated scores are split over the key halves (every exp of q̃, k̃ done once) and summed through
// shared memory (half 0 + half 1: a fixed order, deterministic).
template <int K, int VS>
__global__ void __launch_bounds__(kThreadsKV) gla_chunk_fwd_kernel_o_kv(const Params p) {
  constexpr int kLdK = K + 8, kLdV = VS + 8, kLdB = K + 4, KH = K / 2, VH = VS / 2;
  constexpr int NT = kThreadsKV;
  static_assert(KH % 16 == 0 && VH % 16 == 0, "key / value halves in 16-wide blocks");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sq = reinterpret_cast<bf16*>(sb + kBT * kLdB);
  bf16* sk = sq + kBT * kLdK;
  bf16* sv = sk + kBT * kLdK;
  bf16* ss = sv + kBT * kLdV;
  float* sx = reinterpret_cast<float*>(ss + K * kLdV);  // score exchange [64][kLdX]

  const int64_t x = blockIdx.x, h = blockIdx.y, vd = p.vd, vs0 = int64_t(blockIdx.z) * VS;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  load_gate<K, true, true, NT>(sb, p, h, r0, r1, 0, 0.f);
  load_tile<K, true, NT>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true, NT>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<VS, true, NT>(sv, p.v + h * vd + vs0, r0, r1, p.h * vd);
  load_state<K, VS, true, NT>(ss, p.hs + (x * p.h + h) * K * vd + vs0, vd);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int blk = warp & 3, half = warp >> 2;
  const int t0 = 16 * blk, ref = t0 + 7, d0 = half * KH, v0 = half * VH;
  auto gb = [&](int t, int d) { return sb[t * kLdB + d]; };
  auto fq = [&](int t, int d) {
    return ld_bf16(sq + t * kLdK + d) * __expf(gb(t, d) - gb(ref, d));
  };
  auto fk = [&](int d, int s) {
    return ld_bf16(sk + s * kLdK + d) * __expf(gb(ref, d) - gb(s, d));
  };

  // Scores of rows t0.. against keys 0..t0+15 over this warp's key half.
  float sc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll 1
  for (int kk = 0; kk < KH / 16; ++kk) {
    uint32_t a[4];
    frag_a(a, fq, t0, d0 + 16 * kk, gq, tq);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * blk + 2) {
        uint32_t b0, b1;
        frag_b(b0, b1, fk, d0 + 16 * kk, 8 * j, gq, tq);
        mma_16816(sc[j], a, b0, b1);
      }
  }
  auto xat = [&](int j, int r) { return sx + (t0 + gq + 8 * r) * kLdX + 8 * j + 2 * tq; };
  if (half == 1) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * blk + 2)
#pragma unroll
        for (int r = 0; r < 2; ++r)
          *reinterpret_cast<float2*>(xat(j, r)) = make_float2(sc[j][2 * r], sc[j][2 * r + 1]);
  }
  __syncthreads();
  if (half == 0) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * blk + 2)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float2 o = *reinterpret_cast<const float2*>(xat(j, r));
          sc[j][2 * r] += o.x;
          sc[j][2 * r + 1] += o.y;
          *reinterpret_cast<float2*>(xat(j, r)) = make_float2(sc[j][2 * r], sc[j][2 * r + 1]);
        }
  }
  __syncthreads();
  if (half == 1) {
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * blk + 2)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const float2 o = *reinterpret_cast<const float2*>(xat(j, r));
          sc[j][2 * r] = o.x;
          sc[j][2 * r + 1] = o.y;
        }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
      sc[j][e] = s <= t ? p.scale * sc[j][e] : 0.f;
    }

  float acc[VH / 8][4];
#pragma unroll
  for (int j = 0; j < VH / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  // Inter-chunk part (scale q_t exp(b_t)) S_c, then the intra-chunk scores times v.
  auto fqi = [&](int t, int d) { return p.scale * ld_bf16(sq + t * kLdK + d) * __expf(gb(t, d)); };
#pragma unroll 1
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    frag_a(a, fqi, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int jj = 0; jj < VH / 16; ++jj) {
      uint32_t bfr[4];
      load_b(bfr, ss, kLdV, 16 * kk, v0 + 16 * jj, lane);
      mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
      mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
    }
  }
#pragma unroll 1
  for (int j = 0; j <= blk; ++j) {  // not unrolled (code size): the score block picked at run time
    float sj[2][4];
    pick_block(sj, sc, j);
    uint32_t a[4];
    c_to_a(a, sj, 0);
#pragma unroll
    for (int jj = 0; jj < VH / 16; ++jj) {
      uint32_t bfr[4];
      load_b(bfr, sv, kLdV, 16 * j, v0 + 16 * jj, lane);
      mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
      mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + t0 + gq + 8 * r;
    if (row >= r1) continue;
    bf16* orow = p.o + (row * p.h + h) * vd + vs0 + v0;
#pragma unroll
    for (int j = 0; j < VH / 8; ++j)
      *reinterpret_cast<uint32_t*>(orow + 8 * j + 2 * tq) =
          pack_bf16(acc[j][2 * r], acc[j][2 * r + 1]);
  }
}

template <int K, bool KV, bool REV, int NVS, int VW = kBV>
void launch_states_t(const Params& p, cudaStream_t st) {
  constexpr int smem = kStages * states_stage_bytes<KV, NVS, VW>();
  auto kern = gla_chunk_fwd_kernel_states<K, KV, REV, NVS, VW>;
  kern::ensure_dynamic_smem(kern, smem);
  const dim3 grid(unsigned(p.vd / (NVS * VW) * ((K + kBK - 1) / kBK)), unsigned(p.h),
                  unsigned(p.n));
  kern<<<grid, kThreads * NVS, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

// V columns per state-pass block: one 64-wide slice, two (V = 128, 256: the gate / k / q tiles
// serve both, half the blocks) or one 32-wide half slice (twice the blocks, each warp with half
// the products per chunk step). The pass is sequential over chunks, so with few (sequence, head)
// pairs the grid decides how many SMs it runs on. Measured on an H100 (docs/benchmarks.md),
// fwd+bwd: (4, 4096, 16, 128), 128 blocks with two slices: retention 1.278 ms with two, 1.330
// with one; (2, 16384, 8, 128), 32 blocks with two: 2.703 with two, 2.234 with one (64 blocks).
// So two slices only when their grid covers at least half the SMs, and half slices when even
// that doubled grid fits on the SMs at once. SEQMIX_GLA_STATE_SLICES=1, 2 or h forces one, two
// (where V is a multiple of 128, else one) or half slices (measurement knob, read once; other
// values are ignored).
enum class StateSlices { Auto, Half, One, Two };
StateSlices forced_slices() {
  static const StateSlices v = [] {
    const char* e = std::getenv("SEQMIX_GLA_STATE_SLICES");
    if (e == nullptr || e[0] == '\0' || e[1] != '\0') return StateSlices::Auto;
    return e[0] == '1'   ? StateSlices::One
           : e[0] == '2' ? StateSlices::Two
           : e[0] == 'h' ? StateSlices::Half
                         : StateSlices::Auto;
  }();
  return v;
}

template <int K>
StateSlices state_slices(const Params& p) {
  const bool two_ok = p.vd % (2 * kBV) == 0;
  const StateSlices f = forced_slices();
  if (f == StateSlices::Half || f == StateSlices::One) return f;
  if (f == StateSlices::Two) return two_ok ? f : StateSlices::One;
  const int64_t blocks = p.vd / kBV * ((K + kBK - 1) / kBK) * p.h * p.n;  // one slice each
  const int sms = cuda::props(cuda::current_device()).sm_count;
  if (two_ok && blocks >= sms) return StateSlices::Two;
  if (2 * blocks <= sms) return StateSlices::Half;
  return StateSlices::One;
}

template <int K, bool KV, bool REV>
void launch_states_r(const Params& p, cudaStream_t st) {
  switch (state_slices<K>(p)) {
    case StateSlices::Two:
      return launch_states_t<K, KV, REV, 2>(p, st);
    case StateSlices::Half:
      return launch_states_t<K, KV, REV, 1, kBV / 2>(p, st);
    default:
      return launch_states_t<K, KV, REV, 1>(p, st);
  }
}

template <int K, bool KV>
void launch_states_k(const Params& p, bool reverse, cudaStream_t st) {
  reverse ? launch_states_r<K, KV, true>(p, st) : launch_states_r<K, KV, false>(p, st);
}

// V slice of the output kernel: V itself up to 128, else halves (192 -> 96, 256 -> 128).
constexpr int out_slice(int64_t vd) {
  return vd <= 128 ? int(vd) : int(vd / 2);
}

template <int K, int VS, bool KV>
void launch_out_t(const Params& p, cudaStream_t st) {
  constexpr int smem = out_smem(K, VS, KV);
  void (*kern)(Params);
  if constexpr (KV)
    kern = gla_chunk_fwd_kernel_o_kv<K, VS>;
  else
    kern = gla_chunk_fwd_kernel_o<K, VS>;
  kern::ensure_dynamic_smem(kern, smem);
  const dim3 grid(unsigned(p.max_chunks), unsigned(p.h), unsigned(p.vd / VS));
  kern<<<grid, KV ? kThreadsKV : kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K, bool KV>
void launch_out_k(const Params& p, cudaStream_t st) {
  switch (out_slice(p.vd)) {
    case 64:
      return launch_out_t<K, 64, KV>(p, st);
    case 96:
      return launch_out_t<K, 96, KV>(p, st);
    default:
      return launch_out_t<K, 128, KV>(p, st);
  }
}

template <bool KV>
void launch_out(const Params& p, cudaStream_t st) {
  if (p.kd == 64)
    launch_out_k<64, KV>(p, st);
  else if (p.kd == 96)
    launch_out_k<96, KV>(p, st);
  else
    launch_out_k<128, KV>(p, st);
}

}  // namespace

void set_index(Params& p, const Tensor& cu, int64_t t, Tensor& index, cudaStream_t st) {
  if (!cu.defined()) {
    p.seq = p.chunks = nullptr;
    p.tlen = t;
    p.cps = (t + kBT - 1) / kBT;
    return;
  }
  index = Tensor::empty({2 * (p.n + 1)}, DType::I64, cu.device());
  int64_t* idx = index.data<int64_t>();
  p.seq = idx;
  p.chunks = idx + p.n + 1;
  kern::build_seq_index(cu.data<int64_t>(), p.n, kBT, idx, idx + p.n + 1, st);
}

void launch_states(const Params& p, bool reverse, cudaStream_t st) {
  const bool kv = p.gate == int(GlaGate::KeyVector);
  if (p.n == 0 || p.h == 0) return;
  if (p.kd == 64)
    kv ? launch_states_k<64, true>(p, reverse, st) : launch_states_k<64, false>(p, reverse, st);
  else if (p.kd == 96)
    kv ? launch_states_k<96, true>(p, reverse, st) : launch_states_k<96, false>(p, reverse, st);
  else
    kv ? launch_states_k<128, true>(p, reverse, st) : launch_states_k<128, false>(p, reverse, st);
}

void launch_cumsum(const Params& p, cudaStream_t st) {
  if (p.max_chunks == 0 || p.h == 0) return;
  if (p.gate == int(GlaGate::KeyVector)) {
    const dim3 grid(unsigned(p.max_chunks), unsigned(p.h));
    gla_chunk_fwd_kernel_cumsum<<<grid, kThreads, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  } else if (p.gate == int(GlaGate::HeadScalar)) {
    const dim3 grid(unsigned(p.max_chunks), unsigned((p.h + kCsHeads - 1) / kCsHeads));
    gla_chunk_fwd_kernel_cumsum_scalar<<<grid, kThreads, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  }
}

int chunk_smem_bytes(int64_t kd, int64_t vd, bool kv) {
  if (kd != 64 && kd != 96 && kd != 128) return 0;
  if (vd % 64 != 0 || vd < 64 || vd > 256) return 0;
  const int k = int(kd), v = int(vd);
  int m = kStages *
          (vd % (2 * kBV) == 0 ? states_stage_bytes<true, 2>() : states_stage_bytes<true, 1>());
  m = std::max(m, out_smem(k, int(out_slice(vd)), kv));
  return std::max(m, dqkv_smem(k, v, kv));
}
}  // namespace gla_chunk

Support gla_chunk_supports(const GlaFwdArgs& a) {
  if (!a.q.is_cuda()) return Support::no("chunked gla kernels run on CUDA devices only");
  if (a.q.dtype() != DType::BF16)
    return Support::no("chunked gla kernels take bf16 q, k, v (use the recurrent kernel for f32)");
  if (a.k.dtype() != DType::BF16 || a.v.dtype() != DType::BF16)
    return Support::no("chunked gla kernels take bf16 k and v");
  const int64_t kd = a.q.size(3), vd = a.v.size(3);
  if (kd != 64 && kd != 96 && kd != 128)
    return Support::no("chunked gla kernels need K in {64, 96, 128}");
  if (vd % 64 != 0 || vd < 64 || vd > 256)
    return Support::no("chunked gla kernels need V in {64, 128, 192, 256}");
  const int smem = gla_chunk::chunk_smem_bytes(kd, vd, a.gate == GlaGate::KeyVector);
  if (smem > cuda::props(a.q.device().index).max_smem_per_block_optin)
    return Support::no("chunked gla kernels need more shared memory per block (" +
                       std::to_string(smem) + " bytes) than this GPU offers at K = " +
                       std::to_string(kd) + ", V = " + std::to_string(vd));
  if (!a.q.is_contiguous() || !a.k.is_contiguous() || !a.v.is_contiguous())
    return Support::no("chunked gla kernels need contiguous q, k, v");
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.o))
    return Support::no("chunked gla kernels need 16-byte aligned q, k, v, o");
  if (a.g.defined() && a.g.dtype() != DType::F32)
    return Support::no("chunked gla kernels need an f32 log-gate g");
  if (a.o.defined() && a.o.dtype() != DType::BF16)
    return Support::no("chunked gla kernels write a bf16 o");
  return Support::yes();
}

void gla_chunk_fwd_cuda(const GlaFwdArgs& a) {
  const int64_t b = a.q.size(0), t = a.q.size(1), h = a.q.size(2);
  const int64_t n = a.cu_seqlens.defined() ? a.cu_seqlens.numel() - 1 : b;
  const Device dev = a.q.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  const Tensor cu = a.cu_seqlens.defined() ? a.cu_seqlens.to(dev, DType::I64) : Tensor();
  gla_chunk::Params p;
  p.q = a.q.data<bf16>();
  p.k = a.k.data<bf16>();
  p.v = a.v.data<bf16>();
  p.g = a.g.defined() ? a.g.data<float>() : nullptr;
  p.h0 = a.h0.defined() ? a.h0.data<float>() : nullptr;
  p.o = a.o.defined() ? a.o.data<bf16>() : nullptr;
  p.ht = a.ht.defined() ? a.ht.data<float>() : nullptr;
  p.n = n;
  p.h = h;
  p.kd = a.q.size(3);
  p.vd = a.v.size(3);
  p.gate = int(a.gate);
  p.scale = float(gla_scale(a.scale, p.kd));
  p.max_chunks =
      cu.defined() ? t / gla_chunk::kBT + n : b * ((t + gla_chunk::kBT - 1) / gla_chunk::kBT);
  Tensor index;  // packed batches only (seq_index.cuh)
  gla_chunk::set_index(p, cu, t, index, st);
  Tensor gc;  // the caller's a.gc (kept for the backward) or scratch
  if (a.gate == GlaGate::KeyVector || a.gate == GlaGate::HeadScalar) {
    gc = a.gc.defined() ? a.gc
                        : Tensor::empty({b * t * h * (a.gate == GlaGate::KeyVector ? p.kd : 1)},
                                        DType::F32, dev);
    p.gc = gc.data<float>();
    gla_chunk::launch_cumsum(p, st);
  }
  Tensor hs;  // the caller's a.hs (kept for the backward) or scratch
  if (p.max_chunks > 0) {
    if (a.hs.defined() && a.hs.numel() != p.max_chunks * h * p.kd * p.vd)
      SEQMIX_THROW_PLAIN(Value, "gla: 'hs' does not have the chunk-start states' shape");
    hs = a.hs.defined() ? a.hs : Tensor::empty({p.max_chunks, h, p.kd, p.vd}, DType::BF16, dev);
    p.hs = hs.data<bf16>();
  }
  gla_chunk::launch_states(p, false, st);
  if (p.max_chunks > 0 && p.o) {
    if (a.gate == GlaGate::KeyVector)
      gla_chunk::launch_out<true>(p, st);
    else
      gla_chunk::launch_out<false>(p, st);
  }
}

}  // namespace seqmix
