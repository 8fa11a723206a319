// CUDA chunked delta-rule forward (WY / UT transform; bf16 in, fp32 accumulate, mma.sync
// m16n8k16: sm_80 code that runs on sm_90). Algorithm and notation: delta_rule_chunk_common.cuh
// and README.md ("CUDA kernels").
// Kernels: prep (one block per chunk and
// head: K̂ K̂ᵀ on tensor cores, A, T = (I + A)⁻¹ by fp32 forward substitution in shared memory,
// W and Ũ with T split into bf16 hi + lo so they carry ~16 mantissa bits), states (one block per
// sequence, head and 64-wide V slice, sequential over chunks, fp32 state in registers; U = Ũ − W S
// with S split hi + lo; the next chunk's tiles prefetched by cp.async; every chunk-start state
// stored in bf16, and in fp32 too for the backward's dg), output (one block per chunk and head,
// warp w computes rows [16w, 16w + 16)).
// Scalar gates (None / HeadScalar): every decay is a row or column scale exp(b_t − b_s) <= 1
// applied in fp32, exact for any decay. Per-key-dim gates (KeyVector, KDA) have their own kernels
// (*_kv: prep, states, output) that apply the decay inside the key sums by a reference row per
// 16 x 16 block (see the KeyVector section below and README.md).
// Layouts: see kernels/delta_rule/delta_rule.h. Also the host entry points
// delta_rule_chunk_supports / delta_rule_chunk_fwd_cuda.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "kernels/common/launch.cuh"
#include "kernels/common/validate.h"
#include "kernels/delta_rule/delta_rule_chunk_common.cuh"

namespace seqmix {
namespace delta_chunk {
namespace {

constexpr int kLdT = kBT + 1;  // fp32 64x64 tiles in shared memory

// Block row I (1..3) of T = (I + A)⁻¹ once the block rows above are final: X_Ij = Σ_{j <= k < I}
// A_Ik T_kj for every block j < I (kept in the unused upper triangle of sa), then T_Ij = −T_II
// X_Ij. Thread (a = tid / 8, columns b, b + 1 with b = 2 (tid % 8)) of every 16 x 16 block j < I at
// once (independent accumulators, fixed summation order). All threads must call it.
template <int I>
__device__ __forceinline__ void invert_block_row(float* sa, float* stm) {
  const int a = threadIdx.x >> 3, b = 2 * (threadIdx.x & 7);
  float x[I][2];
#pragma unroll
  for (int j = 0; j < I; ++j) x[j][0] = x[j][1] = 0.f;
#pragma unroll
  for (int m = 0; m < 16 * I; ++m) {
    const float av = sa[(16 * I + a) * kLdT + m];
#pragma unroll
    for (int j = 0; j < I; ++j)
      if (m >= 16 * j) {
        x[j][0] = fmaf(av, stm[m * kLdT + 16 * j + b], x[j][0]);
        x[j][1] = fmaf(av, stm[m * kLdT + 16 * j + b + 1], x[j][1]);
      }
  }
#pragma unroll
  for (int j = 0; j < I; ++j) {
    sa[(16 * j + a) * kLdT + 16 * I + b] = x[j][0];
    sa[(16 * j + a) * kLdT + 16 * I + b + 1] = x[j][1];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < I; ++j) x[j][0] = x[j][1] = 0.f;
#pragma unroll
  for (int m = 0; m < 16; ++m) {  // T_II is unit lower (zeros above its diagonal)
    const float tv = stm[(16 * I + a) * kLdT + 16 * I + m];
#pragma unroll
    for (int j = 0; j < I; ++j) {
      x[j][0] = fmaf(tv, sa[(16 * j + m) * kLdT + 16 * I + b], x[j][0]);
      x[j][1] = fmaf(tv, sa[(16 * j + m) * kLdT + 16 * I + b + 1], x[j][1]);
    }
  }
#pragma unroll
  for (int j = 0; j < I; ++j) {
    stm[(16 * I + a) * kLdT + 16 * j + b] = -x[j][0];
    stm[(16 * I + a) * kLdT + 16 * j + b + 1] = -x[j][1];
  }
  __syncthreads();
}

// T = (I + A)⁻¹ for a strictly lower triangular fp32 A (sa, [64][kLdT]) into stm, blockwise with
// 16x16 blocks. Diagonal blocks: thread (block d = tid / 16, column j = tid % 16) keeps column j
// of T_dd in registers and solves (I + A_dd) t = e_j right-looking (once t[m] is final it is
// subtracted from every later row: independent FMAs, block-uniform A loads; the rows above j
// stay exact zeros). Then block rows 1..3 (invert_block_row). The blocks above the diagonal are
// zero. Every sum has a fixed order (deterministic). All threads must call it.
__device__ __forceinline__ void invert_unit_lower(float* sa, float* stm) {
  const int tid = threadIdx.x;
  for (int idx = tid; idx < kBT * kBT; idx += kThreads) {
    const int r = idx / kBT, c = idx % kBT;
    if ((r >> 4) < (c >> 4)) stm[r * kLdT + c] = 0.f;
  }
  if (tid < kBT) {
    const int base = tid & ~15, j = tid & 15;
    float t[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) t[i] = i == j ? 1.f : 0.f;
#pragma unroll
    for (int m = 0; m < 15; ++m)
#pragma unroll
      for (int i = m + 1; i < 16; ++i) t[i] = fmaf(-sa[(base + i) * kLdT + base + m], t[m], t[i]);
#pragma unroll
    for (int i = 0; i < 16; ++i) stm[(base + i) * kLdT + base + j] = t[i];
  }
  __syncthreads();
  invert_block_row<1>(sa, stm);
  invert_block_row<2>(sa, stm);
  invert_block_row<3>(sa, stm);
}

template <int K, int V>
constexpr int prep_smem_bytes() {
  return kBT * (K + 8) * 2 + kBT * (V + 8) * 2 + 2 * kBT * kLdT * 4 + 4 * kBT * 4;
}

// One block per (chunk, head): bc, kn, W = T diag(β exp(b) kn) K, Ũ = T diag(β) V (and T).
template <int K, int V>
__global__ void __launch_bounds__(kThreads) delta_rule_chunk_fwd_kernel_prep(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  bf16* sv = sk + kBT * kLdK;
  float* sa = reinterpret_cast<float*>(sv + kBT * kLdV);  // A
  float* stm = sa + kBT * kLdT;                           // T
  float* sb = stm + kBT * kLdT;
  float* sbeta = sb + kBT;
  float* skn = sbeta + kBT;
  float* swc = skn + kBT;  // β exp(b) kn per row

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  const int valid = int(r1 - r0 < kBT ? r1 - r0 : kBT);
  const int tid = threadIdx.x;
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V, true>(sv, p.v + h * V, r0, r1, p.h * V);
  cp_async_commit();
  load_rows(sb, sbeta, p, h, r0, r1);
  cp_async_wait<0>();
  __syncthreads();
  row_norms<K>(skn, sk, valid, p.l2);
  __syncthreads();
  if (tid < kBT) {
    swc[tid] = sbeta[tid] * skn[tid] * __expf(sb[tid]);
    if (tid < valid) {
      p.bc[(r0 + tid) * p.h + h] = sb[tid];
      p.kn[(r0 + tid) * p.h + h] = skn[tid];
    }
  }

  const int lane = tid & 31, warp = tid >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp;
  {
    // Gram of the raw keys, rows t0.., columns 0..t0+15.
    float sc[8][4];
    gla_chunk::mma_rows_bt<8, K, K / 16>(sc, sk, kLdK, t0, sk, kLdK, 0, gq, tq, 2 * warp + 2);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
        float val = 0.f;
        if (s < t) val = sbeta[t] * skn[t] * skn[s] * __expf(sb[t] - sb[s]) * sc[j][e];
        sa[t * kLdT + s] = val;
      }
  }
  __syncthreads();
  invert_unit_lower(sa, stm);
  if (p.tm) {
    float* dst = p.tm + (x * p.h + h) * kBT * kBT;
    for (int idx = tid; idx < kBT * kBT; idx += kThreads)
      dst[idx] = stm[(idx / kBT) * kLdT + idx % kBT];
  }
  // W (bf16) and Ũ (fp32): rows t0.., contraction over the chunk's columns r <= t0 + 15.
  auto product = [&](const bf16* sx, int ldx, auto width, const float* colscale, auto store) {
    constexpr int Wd = decltype(width)::value;
    float acc[Wd / 8][4];
#pragma unroll
    for (int j = 0; j < Wd / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    auto ft = [&](int s, int r) { return stm[s * kLdT + r] * colscale[r]; };
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (kk > warp) continue;
      uint32_t ahi[4], alo[4];
      frag_a_split(ahi, alo, ft, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < Wd / 16; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, sx, ldx, 16 * kk, 16 * jj, lane);
        mma_16816(acc[2 * jj], ahi, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], ahi, bfr[2], bfr[3]);
        mma_16816(acc[2 * jj], alo, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], alo, bfr[2], bfr[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = r0 + t0 + gq + 8 * r;
      if (row >= r1) continue;
#pragma unroll
      for (int j = 0; j < Wd / 8; ++j) store(row, 8 * j + 2 * tq, acc[j][2 * r], acc[j][2 * r + 1]);
    }
  };
  product(sk, kLdK, std::integral_constant<int, K>{}, swc,
          [&](int64_t row, int c, float a, float b) {
            *reinterpret_cast<float2*>(p.w + (row * p.h + h) * K + c) = make_float2(a, b);
          });
  if (p.ut)  // (null: the backward given kept states, which does not run the state pass)
    product(sv, kLdV, std::integral_constant<int, V>{}, sbeta,
            [&](int64_t row, int c, float a, float b) {
              *reinterpret_cast<float2*>(p.ut + (row * p.h + h) * V + c) = make_float2(a, b);
            });
}

// Tile buffer ("stage") of the forward state pass: W (fp32, split into bf16 hi + lo when used),
// the raw keys, the block's Ũ columns (fp32), b and kn per row.
template <int K>
constexpr int states_stage_bytes() {
  return kBT * (K + 4) * 4 + kBT * (K + 8) * 2 + kBT * (kBV + 4) * 4 + 2 * kBT * 4;
}
template <int K>
constexpr int states_smem_bytes(int stages) {
  return stages * states_stage_bytes<K>() + 2 * K * (kBV + 8) * 2 + 2 * kBT * (kBV + 8) * 2 +
         kBT * 4;
}

struct StatesStage {
  float* w;
  bf16* k;
  float* ut;
  float* bc;
  float* kn;
};
template <int K>
__device__ __forceinline__ StatesStage states_stage(unsigned char* base, int s) {
  StatesStage st;
  st.w = reinterpret_cast<float*>(base + s * states_stage_bytes<K>());
  st.k = reinterpret_cast<bf16*>(st.w + kBT * (K + 4));
  st.ut = reinterpret_cast<float*>(st.k + kBT * (K + 8));
  st.bc = st.ut + kBT * (kBV + 4);
  st.kn = st.bc + kBT;
  return st;
}

// One block per (V slice, head, sequence), sequential over the chunks: hs, U, ht. Every product
// of the recurrence runs in split bf16 (hi + lo, three mma): U = Ũ − W S cancels strongly when
// the state predicts v well, and the state update accumulates over the whole sequence.
// 8 warps (kStatesThreads): warp w owns rows [16 (w % 4), +16) of U and state rows
// [(w % 4) K / 4, +K / 4), both in the 32 columns [32 (w / 4), +32) of the V slice, so a chunk's
// products are spread over two warps per SM sub-partition. Measured against the 4-warp form
// (every warp all 64 columns) on one H100 at (4, 4096, 16, 128), ncu: 378 -> 348 µs without dg.
// S_c (bf16 hi, with dg also the lo part) and U leave through their split shared-memory copies in
// whole 128-byte rows: with the earlier per-fragment stores (and fp32 S_c for dg) the dg variant
// took 630 µs, now 330 (kernels/delta_rule/README.md, fifth session).
// kStages = 2: the next chunk's tiles (W, K, Ũ, b, kn) are in flight (cp.async) while this chunk
// is computed, so the sequential loop waits on no global load; kStages = 1 (devices with less
// shared memory) loads each chunk's tiles at the top of its iteration.
template <int K, int kStages>
__global__ void __launch_bounds__(kStatesThreads)
    delta_rule_chunk_fwd_kernel_states(const Params p) {
  constexpr int NT = kStatesThreads;
  constexpr int kLdK = K + 8, kLdW = K + 4, kLdV = kBV + 8, kLdU = kBV + 4;
  constexpr int kMT = K / 64;       // 16-row m-tiles of the state per warp
  constexpr int kNJ = kBV / 2 / 8;  // 8-column n-tiles per warp (32 columns)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* shi = reinterpret_cast<bf16*>(smem_raw + kStages * states_stage_bytes<K>());
  bf16* slo = shi + K * kLdV;  // S split into bf16 hi + lo
  bf16* suh = slo + K * kLdV;  // U split into bf16 hi + lo
  bf16* sul = suh + kBT * kLdV;
  float* skf = reinterpret_cast<float*>(sul + kBT * kLdV);  // kn exp(B − b) per row

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, gq = lane >> 2, tq = lane & 3;
  const int wr = warp & 3, c0 = (warp >> 2) * (kBV / 2);  // row group, first column
  const int64_t v0 = int64_t(blockIdx.x) * kBV, h = blockIdx.y, n = blockIdx.z;
  const int64_t bos = seq_row(p, n), eos = seq_row(p, n + 1);
  const int64_t cb0 = seq_chunk(p, n);  // first chunk slot of the sequence
  const int64_t nc = (eos - bos + kBT - 1) / kBT;
  const int dbase = wr * (K / 4);
  const int64_t state_off = (n * p.h + h) * K * p.vd;

  auto issue = [&](int64_t c) {
    const StatesStage s = states_stage<K>(smem_raw, kStages == 1 ? 0 : int(c & 1));
    const int64_t r0 = bos + c * kBT;
    load_tile_f32_async<K, NT>(s.w, p.w + h * K, r0, eos, p.h * K);
    load_tile<K, true, NT>(s.k, p.k + h * K, r0, eos, p.h * K);
    load_tile_f32_async<kBV, NT>(s.ut, p.ut + h * p.vd + v0, r0, eos, p.h * p.vd);
    load_row_scalars_async(s.bc, p.bc, p.h, h, r0, eos);
    load_row_scalars_async(s.kn, p.kn, p.h, h, r0, eos);
    cp_async_commit();
  };

  float acc[kMT][kNJ][4];
#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int j = 0; j < kNJ; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = dbase + 16 * m + gq + (e >> 1) * 8;
        const int64_t v = v0 + c0 + 8 * j + 2 * tq + (e & 1);
        acc[m][j][e] = p.h0 ? p.h0[state_off + d * p.vd + v] : 0.f;
      }

  if (kStages == 2 && nc > 0) issue(0);
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t r0 = bos + c * kBT;
    const int valid = int(eos - r0 < kBT ? eos - r0 : kBT);
    if (kStages == 1) {
      __syncthreads();  // the previous chunk's tiles are no longer read
      issue(c);
    }
    // S_c: split copy to shared memory (last read before the previous chunk's second barrier).
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kNJ; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int d = dbase + 16 * m + gq + r * 8, col = c0 + 8 * j + 2 * tq;
          uint32_t hi, lo;
          split_bf16(acc[m][j][2 * r], acc[m][j][2 * r + 1], hi, lo);
          *reinterpret_cast<uint32_t*>(shi + d * kLdV + col) = hi;
          *reinterpret_cast<uint32_t*>(slo + d * kLdV + col) = lo;
        }
    cp_async_wait<0>();
    __syncthreads();  // chunk c's tiles and S_c visible; every read of chunk c − 1 is done
    if (kStages == 2 && c + 1 < nc) issue(c + 1);  // into the buffer chunk c − 1 used
    // S_c to hs (bf16 hi; with dg also the lo part to hsl) from the split copy: whole 128-byte
    // rows per 8 threads (the fragment layout stored 16 bytes per row and instruction).
    {
      const int64_t hoff = ((cb0 + c) * p.h + h) * K * p.vd + v0;
      constexpr int kC = kBV / 8;
      for (int idx = tid; idx < K * kC; idx += NT) {
        const int d = idx / kC, c8 = 8 * (idx % kC);
        const int64_t off = hoff + d * p.vd + c8;
        *reinterpret_cast<uint4*>(p.hs + off) =
            *reinterpret_cast<const uint4*>(shi + d * kLdV + c8);
        if (p.hsl)
          *reinterpret_cast<uint4*>(p.hsl + off) =
              *reinterpret_cast<const uint4*>(slo + d * kLdV + c8);
      }
    }
    const StatesStage s = states_stage<K>(smem_raw, kStages == 1 ? 0 : int(c & 1));
    const float blast = s.bc[valid - 1];
    if (tid < kBT) skf[tid] = tid < valid ? s.kn[tid] * __expf(blast - s.bc[tid]) : 0.f;
    // U rows 16 wr.., columns c0..: −(−Ũ + W S) (Ũ is zero past the end).
    float ua[kNJ][4];
#pragma unroll
    for (int j = 0; j < kNJ; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float2 val = *reinterpret_cast<const float2*>(s.ut + (16 * wr + gq + 8 * r) * kLdU +
                                                            c0 + 8 * j + 2 * tq);
        ua[j][2 * r] = -val.x;
        ua[j][2 * r + 1] = -val.y;
      }
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t ah[4], al[4];
      frag_a_split_f32(ah, al, s.w, kLdW, 16 * wr, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < kNJ / 2; ++jj) {
        uint32_t bh[4], bl[4];
        load_b(bh, shi, kLdV, 16 * kk, c0 + 16 * jj, lane);
        load_b(bl, slo, kLdV, 16 * kk, c0 + 16 * jj, lane);
        mma_split(ua[2 * jj], ah, al, bh[0], bh[1], bl[0], bl[1]);
        mma_split(ua[2 * jj + 1], ah, al, bh[2], bh[3], bl[2], bl[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int t = 16 * wr + gq + 8 * r;
#pragma unroll
      for (int j = 0; j < kNJ; ++j) {
        const int col = c0 + 8 * j + 2 * tq;
        uint32_t hi, lo;
        split_bf16(-ua[j][2 * r], -ua[j][2 * r + 1], hi, lo);
        *reinterpret_cast<uint32_t*>(suh + t * kLdV + col) = hi;
        *reinterpret_cast<uint32_t*>(sul + t * kLdV + col) = lo;
      }
    }
    __syncthreads();  // U and skf complete; S_c's split copy no longer read
    // U to global (hi; also lo when p.ul: the backward with dg, or a kept set with dg) from its
    // split copy, whole rows.
    {
      constexpr int kC = kBV / 8;
      for (int idx = tid; idx < kBT * kC; idx += NT) {
        const int t = idx / kC, c8 = 8 * (idx % kC);
        if (t >= valid) continue;
        const int64_t off = ((r0 + t) * p.h + h) * p.vd + v0 + c8;
        *reinterpret_cast<uint4*>(p.u + off) = *reinterpret_cast<const uint4*>(suh + t * kLdV + c8);
        if (p.ul)
          *reinterpret_cast<uint4*>(p.ul + off) =
              *reinterpret_cast<const uint4*>(sul + t * kLdV + c8);
      }
    }
    const float decay = __expf(blast);  // exp(B)
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kNJ; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[m][j][e] *= decay;
    // S += (K̂ ⊙ exp(B − b))ᵀ U: A[d][t] = k_td kn_t exp(B − b_t).
    auto fa = [&](int d, int t) { return ld_bf16(s.k + t * kLdK + d) * skf[t]; };
#pragma unroll
    for (int kk = 0; kk < kBT / 16; ++kk) {
      uint32_t bh[kNJ / 2][4], bl[kNJ / 2][4];
#pragma unroll
      for (int jj = 0; jj < kNJ / 2; ++jj) {
        load_b(bh[jj], suh, kLdV, 16 * kk, c0 + 16 * jj, lane);
        load_b(bl[jj], sul, kLdV, 16 * kk, c0 + 16 * jj, lane);
      }
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        uint32_t ah[4], al[4];
        frag_a_split(ah, al, fa, dbase + 16 * m, 16 * kk, gq, tq);
#pragma unroll
        for (int jj = 0; jj < kNJ / 2; ++jj) {
          mma_split(acc[m][2 * jj], ah, al, bh[jj][0], bh[jj][1], bl[jj][0], bl[jj][1]);
          mma_split(acc[m][2 * jj + 1], ah, al, bh[jj][2], bh[jj][3], bl[jj][2], bl[jj][3]);
        }
      }
    }
  }

  if (p.ht) {
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kNJ; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int d = dbase + 16 * m + gq + (e >> 1) * 8;
          const int64_t v = v0 + c0 + 8 * j + 2 * tq + (e & 1);
          p.ht[state_off + d * p.vd + v] = acc[m][j][e];
        }
  }
}

template <int K, int V>
constexpr int out_smem_bytes() {
  return 2 * kBT * (K + 8) * 2 + kBT * (V + 8) * 2 + K * (V + 8) * 2 + 3 * kBT * 4;
}

// One block per (chunk, head): o for the chunk's 64 rows; warp w owns rows [16w, 16w + 16).
template <int K, int V>
__global__ void __launch_bounds__(kThreads) delta_rule_chunk_fwd_kernel_o(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sq = reinterpret_cast<bf16*>(smem_raw);
  bf16* sk = sq + kBT * kLdK;
  bf16* su = sk + kBT * kLdK;
  bf16* ss = su + kBT * kLdV;
  float* sb = reinterpret_cast<float*>(ss + K * kLdV);
  float* sqn = sb + kBT;
  float* skn = sqn + kBT;

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  const int valid = int(r1 - r0 < kBT ? r1 - r0 : kBT);
  const int tid = threadIdx.x;
  load_tile<K, true>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V, true>(su, p.u + h * V, r0, r1, p.h * V);
  load_state_async<K, V>(ss, p.hs + (x * p.h + h) * K * V);
  cp_async_commit();
  if (tid < kBT) {
    const bool ok = tid < valid;
    // Past the end: b of the last row, so that every exp(b_t − b_s) formed stays <= 1.
    sb[tid] = p.bc[(r0 + (ok ? tid : valid - 1)) * p.h + h];
    skn[tid] = ok ? p.kn[(r0 + tid) * p.h + h] : 0.f;
  }
  cp_async_wait<0>();
  __syncthreads();
  row_norms<K>(sqn, sq, valid, p.l2);
  __syncthreads();

  const int lane = tid & 31, warp = tid >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp;
  float sc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    load_a(a, sq, kLdK, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (j < 2 * warp + 2) {
        uint32_t b0, b1;
        load_bt(b0, b1, sk, kLdK, 8 * j, 16 * kk, gq, tq);
        mma_16816(sc[j], a, b0, b1);
      }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
      float val = 0.f;
      if (s <= t) val = p.scale * sqn[t] * skn[s] * __expf(sb[t] - sb[s]) * sc[j][e];
      sc[j][e] = val;
    }
  float acc[V / 8][4];
#pragma unroll
  for (int j = 0; j < V / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  gla_chunk::mma_scores_tile<V / 8>(acc, sc, su, kLdV, 0, 0, warp + 1, lane);
  // Inter-chunk part: scale qn exp(b) q S_c.
  auto fqi = [&](int t, int d) {
    return p.scale * sqn[t] * __expf(sb[t]) * ld_bf16(sq + t * kLdK + d);
  };
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    frag_a(a, fqi, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int jj = 0; jj < V / 16; ++jj) {
      uint32_t bfr[4];
      load_b(bfr, ss, kLdV, 16 * kk, 16 * jj, lane);
      mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
      mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + t0 + gq + 8 * r;
    if (row >= r1) continue;
    bf16* orow = p.o + (row * p.h + h) * V;
#pragma unroll
    for (int j = 0; j < V / 8; ++j)
      *reinterpret_cast<uint32_t*>(orow + 8 * j + 2 * tq) =
          pack_bf16(acc[j][2 * r], acc[j][2 * r + 1]);
  }
}

// ---------------------------------------------------------------- KeyVector (KDA)
// Per-key-dim gates: b_t ∈ R^K (chunk-local inclusive cumulative log-gate per key dim, rows past
// the end of a short last chunk repeat the last valid row), Γ[t, s, i] = exp(b_t[i] − b_s[i]).
// Every product that mixes two time steps of a chunk (A = K̂K̂ᵀ ⊙ Γ here, the scores Q̂K̂ᵀ ⊙ Γ in
// the output kernel) runs per 16 x 16 block (rows block w, columns block c) with a reference row
// r: c < w: r = 16c + 15 (the block's last column), so both factors exp(b_t − b_r) (t > r) and
// exp(b_r − b_s) (s <= r) are <= 1; c == w (diagonal): r = 16w + 7, so every factor spans at
// most 8 steps (<= exp(8 · max |g|), finite in fp32 / bf16 for log-gates >= −11 per step). The
// operands k_t ⊙ exp(b_t − b_r), k_s ⊙ exp(b_r − b_s) are split into bf16 hi + lo (three mma,
// ~16 mantissa bits), so A carries nearly fp32 precision like the scalar-gate path's exact Gram.

// Per-key-dim cumulative log-gate of a chunk, in place: sb[t * (K + 4) + d] holds the raw log-gates
// of rows [r0, r0 + 64) (by load_tile_f32_async: rows >= r1 zero-filled, so their sums repeat the
// last valid row). One thread per key dim (K <= kThreads) scans its column in fixed order; the
// loads of a column run ahead of the dependent adds (shared memory, conflict-free per row).
template <int K>
__device__ __forceinline__ void scan_gate_kv(float* sb) {
  static_assert(K <= kThreads, "one thread per key dim");
  constexpr int ld = K + 4;
  if (threadIdx.x < K) {
    const int d = threadIdx.x;
    float acc = 0.f;
#pragma unroll 16
    for (int t = 0; t < kBT; ++t) {
      acc += sb[t * ld + d];
      sb[t * ld + d] = acc;
    }
  }
}

// Σ_i x_t[i] k_s[i] Γ[t, s, i] for the rows t0 = 16 warp.. and the column blocks cb <= warp
// (x = k for prep's A, q for the output scores), stored in sc[2 cb], sc[2 cb + 1]; the reference
// row of block (warp, cb) as above. The loops over the blocks and the key dims run rolled (one
// copy of the body: the kernels are otherwise bound by instruction fetch); a block's two 16 x 8
// accumulators are moved into sc by an unrolled select after its key loop.
template <int K>
__device__ __forceinline__ void kv_scores(float (&sc)[8][4], const bf16* sx, const bf16* sk,
                                          const float* sbk, int warp, int gq, int tq) {
  constexpr int kLdK = K + 8, kLdB = K + 4;
  const int t0 = 16 * warp;
#pragma unroll 1
  for (int cb = 0; cb <= warp; ++cb) {
    const float* gr = sbk + (cb < warp ? 16 * cb + 15 : t0 + 7) * kLdB;
    auto fa = [&](int t, int d) {
      return ld_bf16(sx + t * kLdK + d) * __expf(sbk[t * kLdB + d] - gr[d]);
    };
    auto fb = [&](int d, int s) {
      return ld_bf16(sk + s * kLdK + d) * __expf(gr[d] - sbk[s * kLdB + d]);
    };
    float acc[2][4] = {};
#pragma unroll 1
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t ah[4], al[4];
      frag_a_split(ah, al, fa, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        uint32_t bh0, bh1, bl0, bl1;
        gla_chunk::frag_b_split(bh0, bh1, bl0, bl1, fb, 16 * kk, 16 * cb + 8 * jj, gq, tq);
        mma_split(acc[jj], ah, al, bh0, bh1, bl0, bl1);
      }
    }
#pragma unroll
    for (int c = 0; c < 4; ++c)
      if (c == cb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          sc[2 * c][e] = acc[0][e];
          sc[2 * c + 1][e] = acc[1][e];
        }
      }
  }
}

// Shared memory of prep_kv: k (its place takes K ⊙ e^b's hi part once A is formed), A (then
// K ⊙ e^b's lo part: the region has the larger of the two sizes), v, T, b, and per-row scalars.
// K = V = 128: 103 424 bytes, two blocks per SM on an H100.
template <int K>
constexpr int prep_kv_a_bytes() {
  return kBT * kLdT * 4 > kBT * (K + 8) * 2 ? kBT * kLdT * 4 : kBT * (K + 8) * 2;
}
template <int K, int V>
constexpr int prep_kv_smem_bytes() {
  return kBT * (K + 8) * 2 + prep_kv_a_bytes<K>() + kBT * (V + 8) * 2 + kBT * kLdT * 4 +
         kBT * (K + 4) * 4 + 3 * kBT * 4;
}

// One block per (chunk, head), KeyVector: bk, kn, kt = K̂ ⊙ exp(B − b), W = T diag(β kn)(K ⊙ e^b)
// (K ⊙ e^b split into bf16 hi + lo, T diag(β kn) too), Ũ = T diag(β) V (and T).
template <int K, int V>
__global__ void __launch_bounds__(kThreads) delta_rule_chunk_fwd_kernel_prep_kv(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8, kLdB = K + 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sk = reinterpret_cast<bf16*>(smem_raw);
  float* sa = reinterpret_cast<float*>(sk + kBT * kLdK);  // A
  bf16* skh = sk;                                         // K ⊙ e^b, hi (after A: in place of k)
  bf16* skl = reinterpret_cast<bf16*>(sa);                // and lo (after T: in place of A)
  bf16* sv = reinterpret_cast<bf16*>(smem_raw + kBT * kLdK * 2 + prep_kv_a_bytes<K>());
  float* stm = reinterpret_cast<float*>(sv + kBT * kLdV);  // T
  float* sbk = stm + kBT * kLdT;                           // b per key dim [64][kLdB]
  float* sbeta = sbk + kBT * kLdB;
  float* skn = sbeta + kBT;
  float* swc = skn + kBT;  // β kn per row

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  const int valid = int(r1 - r0 < kBT ? r1 - r0 : kBT);
  const int tid = threadIdx.x;
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V, true>(sv, p.v + h * V, r0, r1, p.h * V);
  load_tile_f32_async<K>(sbk, p.gk + h * K, r0, r1, p.h * K);
  cp_async_commit();
  if (tid < kBT) {
    const int64_t r = r0 + tid;
    sbeta[tid] = r < r1 ? p.beta[r * p.h + h] : 0.f;
  }
  cp_async_wait<0>();
  __syncthreads();
  scan_gate_kv<K>(sbk);
  row_norms<K>(skn, sk, valid, p.l2);
  __syncthreads();
  if (tid < kBT) {
    swc[tid] = sbeta[tid] * skn[tid];
    if (tid < valid) p.kn[(r0 + tid) * p.h + h] = skn[tid];
  }

  const int lane = tid & 31, warp = tid >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp;
  {
    // Σ_i k_t[i] k_s[i] Γ[t, s, i] for rows t0.., columns 0..t0+15, by reference row per block.
    float sc[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
    kv_scores<K>(sc, sk, sk, sbk, warp, gq, tq);
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
        float val = 0.f;
        if (s < t) val = sbeta[t] * skn[t] * skn[s] * sc[j][e];
        sa[t * kLdT + s] = val;
      }
  }
  __syncthreads();
  invert_unit_lower(sa, stm);  // (ends with a barrier: A is no longer read)
  // bk, kt of the valid rows; K ⊙ e^b split into hi + lo (zero rows past the end: k is zero),
  // the hi part in place of k (each thread reads its k pair before writing it), lo in place of A.
  for (int idx = tid; idx < kBT * (K / 2); idx += kThreads) {
    const int t = idx / (K / 2), d = 2 * (idx % (K / 2));
    const float* bt = sbk + t * kLdB + d;
    const float k0 = ld_bf16(sk + t * kLdK + d), k1 = ld_bf16(sk + t * kLdK + d + 1);
    uint32_t hi, lo;
    split_bf16(k0 * __expf(bt[0]), k1 * __expf(bt[1]), hi, lo);
    *reinterpret_cast<uint32_t*>(skh + t * kLdK + d) = hi;
    *reinterpret_cast<uint32_t*>(skl + t * kLdK + d) = lo;
    if (t < valid) {
      const float* bl = sbk + (valid - 1) * kLdB + d;
      const float kn = skn[t];
      const int64_t off = ((r0 + t) * p.h + h) * K + d;
      *reinterpret_cast<float2*>(p.bk + off) = make_float2(bt[0], bt[1]);
      *reinterpret_cast<float2*>(p.kt + off) =
          make_float2(kn * k0 * __expf(bl[0] - bt[0]), kn * k1 * __expf(bl[1] - bt[1]));
    }
  }
  if (p.tm) {
    float* dst = p.tm + (x * p.h + h) * kBT * kBT;
    for (int idx = tid; idx < kBT * kBT; idx += kThreads)
      dst[idx] = stm[(idx / kBT) * kLdT + idx % kBT];
  }
  __syncthreads();  // K ⊙ e^b's split copies complete
  // Rows t0.., contraction over the chunk's rows r <= t0 + 15; T's columns scaled by colscale,
  // T split into hi + lo; the B tile is (xh + xl) (xl null: exact bf16 xh).
  auto product = [&](const bf16* xh, const bf16* xl, int ldx, auto width, const float* colscale,
                     auto store) {
    constexpr int Wd = decltype(width)::value;
    float acc[Wd / 8][4];
#pragma unroll
    for (int j = 0; j < Wd / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    auto ft = [&](int s, int r) { return stm[s * kLdT + r] * colscale[r]; };
#pragma unroll 1
    for (int kk = 0; kk <= warp; ++kk) {
      uint32_t ahi[4], alo[4];
      frag_a_split(ahi, alo, ft, t0, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < Wd / 16; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, xh, ldx, 16 * kk, 16 * jj, lane);
        mma_16816(acc[2 * jj], ahi, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], ahi, bfr[2], bfr[3]);
        mma_16816(acc[2 * jj], alo, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], alo, bfr[2], bfr[3]);
        if (xl) {
          load_b(bfr, xl, ldx, 16 * kk, 16 * jj, lane);
          mma_16816(acc[2 * jj], ahi, bfr[0], bfr[1]);
          mma_16816(acc[2 * jj + 1], ahi, bfr[2], bfr[3]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = r0 + t0 + gq + 8 * r;
      if (row >= r1) continue;
#pragma unroll
      for (int j = 0; j < Wd / 8; ++j) store(row, 8 * j + 2 * tq, acc[j][2 * r], acc[j][2 * r + 1]);
    }
  };
  product(skh, skl, kLdK, std::integral_constant<int, K>{}, swc,
          [&](int64_t row, int c, float a, float b) {
            *reinterpret_cast<float2*>(p.w + (row * p.h + h) * K + c) = make_float2(a, b);
          });
  if (p.ut)  // (null: the backward given kept states, which does not run the state pass)
    product(sv, static_cast<const bf16*>(nullptr), kLdV, std::integral_constant<int, V>{}, sbeta,
            [&](int64_t row, int c, float a, float b) {
              *reinterpret_cast<float2*>(p.ut + (row * p.h + h) * V + c) = make_float2(a, b);
            });
}

// Tile buffer of the KeyVector forward state pass: W and K̃ (fp32, split into bf16 hi + lo when
// used), the block's Ũ columns (fp32), and the chunk's last b per key dim (the state decay).
template <int K>
constexpr int states_kv_stage_bytes() {
  return 2 * kBT * (K + 4) * 4 + kBT * (kBV + 4) * 4 + K * 4;
}
template <int K>
constexpr int states_kv_smem_bytes(int stages) {
  return stages * states_kv_stage_bytes<K>() + 2 * K * (kBV + 8) * 2 + 2 * kBT * (kBV + 8) * 2;
}

struct StatesKvStage {
  float* w;
  float* kt;
  float* ut;
  float* bl;
};
template <int K>
__device__ __forceinline__ StatesKvStage states_kv_stage(unsigned char* base, int s) {
  StatesKvStage st;
  st.w = reinterpret_cast<float*>(base + s * states_kv_stage_bytes<K>());
  st.kt = st.w + kBT * (K + 4);
  st.ut = st.kt + kBT * (K + 4);
  st.bl = st.ut + kBT * (kBV + 4);
  return st;
}

// KeyVector form of delta_rule_chunk_fwd_kernel_states (same structure, barriers and splits):
// U = Ũ − W S_c, S_{c+1} = Diag(exp(B)) S_c + K̃ᵀ U with the per-key-dim decay exp(B[d]) <= 1 of
// state row d and K̃ = K̂ ⊙ exp(B − b) from the prep kernel (every factor <= 1).
template <int K, int kStages>
__global__ void __launch_bounds__(kThreads) delta_rule_chunk_fwd_kernel_states_kv(const Params p) {
  constexpr int kLdW = K + 4, kLdV = kBV + 8, kLdU = kBV + 4;
  constexpr int kMT = K / 64;  // 16-row m-tiles of the state per warp
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* shi = reinterpret_cast<bf16*>(smem_raw + kStages * states_kv_stage_bytes<K>());
  bf16* slo = shi + K * kLdV;  // S split into bf16 hi + lo
  bf16* suh = slo + K * kLdV;  // U split into bf16 hi + lo
  bf16* sul = suh + kBT * kLdV;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, gq = lane >> 2, tq = lane & 3;
  const int64_t v0 = int64_t(blockIdx.x) * kBV, h = blockIdx.y, n = blockIdx.z;
  const int64_t bos = seq_row(p, n), eos = seq_row(p, n + 1);
  const int64_t cb0 = seq_chunk(p, n);  // first chunk slot of the sequence
  const int64_t nc = (eos - bos + kBT - 1) / kBT;
  const int dbase = warp * (K / 4);
  const int64_t state_off = (n * p.h + h) * K * p.vd;

  auto issue = [&](int64_t c) {
    const StatesKvStage s = states_kv_stage<K>(smem_raw, kStages == 1 ? 0 : int(c & 1));
    const int64_t r0 = bos + c * kBT;
    const int64_t rl = (eos - r0 < kBT ? eos : r0 + kBT) - 1;  // the chunk's last row
    load_tile_f32_async<K>(s.w, p.w + h * K, r0, eos, p.h * K);
    load_tile_f32_async<K>(s.kt, p.kt + h * K, r0, eos, p.h * K);
    load_tile_f32_async<kBV>(s.ut, p.ut + h * p.vd + v0, r0, eos, p.h * p.vd);
    if (tid < K / 4) cp_async16(s.bl + 4 * tid, p.bk + (rl * p.h + h) * K + 4 * tid, true);
    cp_async_commit();
  };

  float acc[kMT][kBV / 8][4];
#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = dbase + 16 * m + gq + (e >> 1) * 8;
        const int64_t v = v0 + 8 * j + 2 * tq + (e & 1);
        acc[m][j][e] = p.h0 ? p.h0[state_off + d * p.vd + v] : 0.f;
      }

  if (kStages == 2 && nc > 0) issue(0);
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t r0 = bos + c * kBT;
    if (kStages == 1) {
      __syncthreads();  // the previous chunk's tiles are no longer read
      issue(c);
    }
    const int64_t hoff = ((cb0 + c) * p.h + h) * K * p.vd + v0;
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int d = dbase + 16 * m + gq + r * 8;
          uint32_t hi, lo;
          split_bf16(acc[m][j][2 * r], acc[m][j][2 * r + 1], hi, lo);
          const int64_t off = hoff + d * p.vd + 8 * j + 2 * tq;
          *reinterpret_cast<uint32_t*>(p.hs + off) = hi;
          if (p.hsl) *reinterpret_cast<uint32_t*>(p.hsl + off) = lo;
          *reinterpret_cast<uint32_t*>(shi + d * kLdV + 8 * j + 2 * tq) = hi;
          *reinterpret_cast<uint32_t*>(slo + d * kLdV + 8 * j + 2 * tq) = lo;
        }
    cp_async_wait<0>();
    __syncthreads();  // chunk c's tiles and S_c visible; every read of chunk c − 1 is done
    if (kStages == 2 && c + 1 < nc) issue(c + 1);  // into the buffer chunk c − 1 used
    const StatesKvStage s = states_kv_stage<K>(smem_raw, kStages == 1 ? 0 : int(c & 1));
    // U rows 16 warp.. : −(−Ũ + W S) (Ũ and W are zero past the end).
    float ua[kBV / 8][4];
#pragma unroll
    for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float2 val = *reinterpret_cast<const float2*>(s.ut + (16 * warp + gq + 8 * r) * kLdU +
                                                            8 * j + 2 * tq);
        ua[j][2 * r] = -val.x;
        ua[j][2 * r + 1] = -val.y;
      }
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t ah[4], al[4];
      frag_a_split_f32(ah, al, s.w, kLdW, 16 * warp, 16 * kk, gq, tq);
#pragma unroll
      for (int jj = 0; jj < kBV / 16; ++jj) {
        uint32_t bh[4], bl[4];
        load_b(bh, shi, kLdV, 16 * kk, 16 * jj, lane);
        load_b(bl, slo, kLdV, 16 * kk, 16 * jj, lane);
        mma_split(ua[2 * jj], ah, al, bh[0], bh[1], bl[0], bl[1]);
        mma_split(ua[2 * jj + 1], ah, al, bh[2], bh[3], bl[2], bl[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int t = 16 * warp + gq + 8 * r;
      const int64_t row = r0 + t;
#pragma unroll
      for (int j = 0; j < kBV / 8; ++j) {
        uint32_t hi, lo;
        split_bf16(-ua[j][2 * r], -ua[j][2 * r + 1], hi, lo);
        *reinterpret_cast<uint32_t*>(suh + t * kLdV + 8 * j + 2 * tq) = hi;
        *reinterpret_cast<uint32_t*>(sul + t * kLdV + 8 * j + 2 * tq) = lo;
        if (row < eos) {
          const int64_t off = (row * p.h + h) * p.vd + v0 + 8 * j + 2 * tq;
          *reinterpret_cast<uint32_t*>(p.u + off) = hi;
          if (p.ul) *reinterpret_cast<uint32_t*>(p.ul + off) = lo;
        }
      }
    }
    __syncthreads();  // U complete; S_c's split copy no longer read
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float decay = __expf(s.bl[dbase + 16 * m + gq + 8 * r]);  // exp(B[d])
#pragma unroll
        for (int j = 0; j < kBV / 8; ++j) {
          acc[m][j][2 * r] *= decay;
          acc[m][j][2 * r + 1] *= decay;
        }
      }
      // S += K̃ᵀ U: A[d][t] = K̃[t][d].
#pragma unroll
    for (int kk = 0; kk < kBT / 16; ++kk) {
      uint32_t bh[kBV / 16][4], bl[kBV / 16][4];
#pragma unroll
      for (int jj = 0; jj < kBV / 16; ++jj) {
        load_b(bh[jj], suh, kLdV, 16 * kk, 16 * jj, lane);
        load_b(bl[jj], sul, kLdV, 16 * kk, 16 * jj, lane);
      }
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        uint32_t ah[4], al[4];
        frag_a_split(
            ah, al, [&](int d, int t) { return s.kt[t * kLdW + d]; }, dbase + 16 * m, 16 * kk, gq,
            tq);
#pragma unroll
        for (int jj = 0; jj < kBV / 16; ++jj) {
          mma_split(acc[m][2 * jj], ah, al, bh[jj][0], bh[jj][1], bl[jj][0], bl[jj][1]);
          mma_split(acc[m][2 * jj + 1], ah, al, bh[jj][2], bh[jj][3], bl[jj][2], bl[jj][3]);
        }
      }
    }
  }

  if (p.ht) {
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int d = dbase + 16 * m + gq + (e >> 1) * 8;
          const int64_t v = v0 + 8 * j + 2 * tq + (e & 1);
          p.ht[state_off + d * p.vd + v] = acc[m][j][e];
        }
  }
}

// Shared memory of o_kv: q, k (then U in its place, the larger of the two sizes), S_c, b and the
// row norms. K = V = 128: 103 936 bytes, two blocks per SM on an H100.
template <int K, int V>
constexpr int out_kv_ku_bytes() {
  return (K > V ? K + 8 : V + 8) * kBT * 2;
}
template <int K, int V>
constexpr int out_kv_smem_bytes() {
  return kBT * (K + 8) * 2 + out_kv_ku_bytes<K, V>() + K * (V + 8) * 2 + kBT * (K + 4) * 4 +
         2 * kBT * 4;
}

// One block per (chunk, head), KeyVector: o = scale [(Q̂ ⊙ e^b) S_c + (Q̂K̂ᵀ ⊙ Γ)_{s<=t} U], the
// scores by reference row per 16 x 16 block (see prep_kv), operands split into bf16 hi + lo.
// Loads in three cp.async groups: q, k, b (scores); S_c (the inter-chunk product, which runs
// while U arrives); U, into k's place once every warp has its scores.
template <int K, int V>
__global__ void __launch_bounds__(kThreads) delta_rule_chunk_fwd_kernel_o_kv(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8, kLdB = K + 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sq = reinterpret_cast<bf16*>(smem_raw);
  bf16* sk = sq + kBT * kLdK;
  bf16* su = sk;  // U [64][kLdV] after the scores
  bf16* ss = reinterpret_cast<bf16*>(smem_raw + kBT * kLdK * 2 + out_kv_ku_bytes<K, V>());
  float* sbk = reinterpret_cast<float*>(ss + K * kLdV);
  float* sqn = sbk + kBT * kLdB;
  float* skn = sqn + kBT;

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = seq_row(p, n) + (x - seq_chunk(p, n)) * kBT, r1 = seq_row(p, n + 1);
  const int valid = int(r1 - r0 < kBT ? r1 - r0 : kBT);
  const int tid = threadIdx.x;
  load_tile<K, true>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K, true>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile_f32_async<K>(sbk, p.bk + h * K, r0, r1, p.h * K);
  cp_async_commit();
  load_state_async<K, V>(ss, p.hs + (x * p.h + h) * K * V);
  cp_async_commit();
  if (tid < kBT) skn[tid] = tid < valid ? p.kn[(r0 + tid) * p.h + h] : 0.f;
  cp_async_wait<1>();
  __syncthreads();
  // Rows past the end take the last valid row's b, so that every factor formed stays finite.
  for (int idx = tid; idx < (kBT - valid) * K; idx += kThreads) {
    const int t = valid + idx / K, d = idx % K;
    sbk[t * kLdB + d] = sbk[(valid - 1) * kLdB + d];
  }
  row_norms<K>(sqn, sq, valid, p.l2);
  __syncthreads();

  const int lane = tid & 31, warp = tid >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp;
  float sc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
  kv_scores<K>(sc, sq, sk, sbk, warp, gq, tq);
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int t = t0 + gq + (e >> 1) * 8, s = 8 * j + 2 * tq + (e & 1);
      float val = 0.f;
      if (s <= t) val = p.scale * sqn[t] * skn[s] * sc[j][e];
      sc[j][e] = val;
    }
  __syncthreads();  // every warp has its scores: U goes where k was
  load_tile<V, true>(su, p.u + h * V, r0, r1, p.h * V);
  cp_async_commit();
  float acc[V / 8][4];
#pragma unroll
  for (int j = 0; j < V / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  cp_async_wait<1>();  // S_c (this thread's part)
  __syncthreads();
  // Inter-chunk part: scale qn (q ⊙ e^b) S_c.
  auto fqi = [&](int t, int d) {
    return p.scale * sqn[t] * __expf(sbk[t * kLdB + d]) * ld_bf16(sq + t * kLdK + d);
  };
#pragma unroll 1
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    frag_a(a, fqi, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int jj = 0; jj < V / 16; ++jj) {
      uint32_t bfr[4];
      load_b(bfr, ss, kLdV, 16 * kk, 16 * jj, lane);
      mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
      mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // U
  gla_chunk::mma_scores_tile<V / 8>(acc, sc, su, kLdV, 0, 0, warp + 1, lane);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = r0 + t0 + gq + 8 * r;
    if (row >= r1) continue;
    bf16* orow = p.o + (row * p.h + h) * V;
#pragma unroll
    for (int j = 0; j < V / 8; ++j)
      *reinterpret_cast<uint32_t*>(orow + 8 * j + 2 * tq) =
          pack_bf16(acc[j][2 * r], acc[j][2 * r + 1]);
  }
}

template <int K, int V>
void launch_prep_t(const Params& p, cudaStream_t st) {
  constexpr int smem = prep_smem_bytes<K, V>();
  auto kern = delta_rule_chunk_fwd_kernel_prep<K, V>;
  kern::ensure_dynamic_smem(kern, smem);
  kern<<<dim3(unsigned(p.max_chunks), unsigned(p.h)), kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K, int kStages>
void launch_states_s(const Params& p, cudaStream_t st) {
  constexpr int smem = states_smem_bytes<K>(kStages);
  auto kern = delta_rule_chunk_fwd_kernel_states<K, kStages>;
  kern::ensure_dynamic_smem(kern, smem);
  kern<<<dim3(unsigned(p.vd / kBV), unsigned(p.h), unsigned(p.n)), kStatesThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

// Double-buffered where the device has the shared memory (H100: yes; A100 at K = 128: no).
template <int K>
void launch_states_t(const Params& p, cudaStream_t st) {
  if (p.max_stages >= 2 && p.smem_optin >= states_smem_bytes<K>(2))
    launch_states_s<K, 2>(p, st);
  else
    launch_states_s<K, 1>(p, st);
}

template <int K, int V>
void launch_out_t(const Params& p, cudaStream_t st) {
  constexpr int smem = out_smem_bytes<K, V>();
  auto kern = delta_rule_chunk_fwd_kernel_o<K, V>;
  kern::ensure_dynamic_smem(kern, smem);
  kern<<<dim3(unsigned(p.max_chunks), unsigned(p.h)), kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K, int V>
void launch_prep_kv_t(const Params& p, cudaStream_t st) {
  constexpr int smem = prep_kv_smem_bytes<K, V>();
  auto kern = delta_rule_chunk_fwd_kernel_prep_kv<K, V>;
  kern::ensure_dynamic_smem(kern, smem);
  kern<<<dim3(unsigned(p.max_chunks), unsigned(p.h)), kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K, int kStages>
void launch_states_kv_s(const Params& p, cudaStream_t st) {
  constexpr int smem = states_kv_smem_bytes<K>(kStages);
  auto kern = delta_rule_chunk_fwd_kernel_states_kv<K, kStages>;
  kern::ensure_dynamic_smem(kern, smem);
  kern<<<dim3(unsigned(p.vd / kBV), unsigned(p.h), unsigned(p.n)), kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K>
void launch_states_kv_t(const Params& p, cudaStream_t st) {
  if (p.max_stages >= 2 && p.smem_optin >= states_kv_smem_bytes<K>(2))
    launch_states_kv_s<K, 2>(p, st);
  else
    launch_states_kv_s<K, 1>(p, st);
}

template <int K, int V>
void launch_out_kv_t(const Params& p, cudaStream_t st) {
  constexpr int smem = out_kv_smem_bytes<K, V>();
  auto kern = delta_rule_chunk_fwd_kernel_o_kv<K, V>;
  kern::ensure_dynamic_smem(kern, smem);
  kern<<<dim3(unsigned(p.max_chunks), unsigned(p.h)), kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

// Calls f(K, V) as integral constants.
template <typename F>
void dispatch_kv(int64_t k, int64_t v, F&& f) {
  using I64 = std::integral_constant<int, 64>;
  using I128 = std::integral_constant<int, 128>;
  if (k == 64 && v == 64)
    f(I64{}, I64{});
  else if (k == 64)
    f(I64{}, I128{});
  else if (v == 64)
    f(I128{}, I64{});
  else
    f(I128{}, I128{});
}

}  // namespace

void launch_prep(const Params& p, cudaStream_t st) {
  if (p.max_chunks == 0 || p.h == 0) return;
  if (p.gate == int(DeltaGate::KeyVector)) {
    dispatch_kv(p.kd, p.vd, [&](auto k, auto v) {
      launch_prep_kv_t<decltype(k)::value, decltype(v)::value>(p, st);
    });
    return;
  }
  dispatch_kv(p.kd, p.vd, [&](auto k, auto v) {
    launch_prep_t<decltype(k)::value, decltype(v)::value>(p, st);
  });
}

void launch_states(const Params& p, cudaStream_t st) {
  if (p.n == 0 || p.h == 0) return;
  if (p.gate == int(DeltaGate::KeyVector)) {
    if (p.kd == 64)
      launch_states_kv_t<64>(p, st);
    else
      launch_states_kv_t<128>(p, st);
    return;
  }
  if (p.kd == 64)
    launch_states_t<64>(p, st);
  else
    launch_states_t<128>(p, st);
}

}  // namespace delta_chunk

Support delta_rule_chunk_supports(const DeltaFwdArgs& a) {
  if (!a.q.defined() || !a.q.is_cuda())
    return Support::no("chunked delta-rule kernels run on CUDA devices only");
  if (a.q.dtype() != DType::BF16 || a.k.dtype() != DType::BF16 || a.v.dtype() != DType::BF16)
    return Support::no(
        "chunked delta-rule kernels take bf16 q, k, v (use the recurrent kernels for f32)");
  if (a.q.dim() != 4 || a.v.dim() != 4) return Support::yes();  // shapes are validated apart
  const int64_t kd = a.q.size(3), vd = a.v.size(3);
  if (kd != 64 && kd != 128) return Support::no("chunked delta-rule kernels need K in {64, 128}");
  if (vd != 64 && vd != 128) return Support::no("chunked delta-rule kernels need V in {64, 128}");
  if (!a.q.is_contiguous() || !a.k.is_contiguous() || !a.v.is_contiguous())
    return Support::no("chunked delta-rule kernels need contiguous q, k, v");
  const int smem = a.gate == DeltaGate::KeyVector ? delta_chunk::chunk_bwd_kv_smem_bytes(kd, vd)
                                                  : delta_chunk::chunk_bwd_smem_bytes(kd, vd);
  const int optin = cuda::props(a.q.device().index).max_smem_per_block_optin;
  if (optin < smem)
    return Support::no("chunked delta-rule backward needs " + std::to_string(smem) +
                       " bytes of shared memory per block for K=" + std::to_string(kd) + " V=" +
                       std::to_string(vd) + "; this device allows " + std::to_string(optin));
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.o))
    return Support::no("chunked delta-rule kernels need 16-byte aligned q, k, v, o");
  if (a.beta.defined() && a.beta.dtype() != DType::F32)
    return Support::no("chunked delta-rule kernels need an f32 beta");
  if (a.g.defined() && a.g.dtype() != DType::F32)
    return Support::no("chunked delta-rule kernels need an f32 log-gate g");
  if (a.gate == DeltaGate::KeyVector && a.g.defined() && (!a.g.is_contiguous() || !aligned16(a.g)))
    return Support::no("chunked delta-rule kernels need a contiguous, 16-byte aligned g");
  if (a.o.defined() && a.o.dtype() != DType::BF16)
    return Support::no("chunked delta-rule kernels write a bf16 o");
  return Support::yes();
}

namespace delta_chunk {

// Scratch of one call: index (packed batches), bc, kn, W, Ũ, U, hs (and T, du_in, du, dhs, qn in
// the backward).
Workspace::Workspace(const Tensor& q, const Tensor& v, const Tensor& cu_seqlens, bool backward,
                     bool want_dg, bool key_vector, bool own_states, bool own_prep) {
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2), kd = q.size(3), vd = v.size(3);
  n = cu_seqlens.defined() ? cu_seqlens.numel() - 1 : b;
  const Device dev = q.device();
  cu = cu_seqlens.defined() ? cu_seqlens.to(dev, DType::I64) : Tensor();
  tlen = t;
  if (cu.defined()) index = Tensor::empty({2 * (n + 1)}, DType::I64, dev);  // packed only
  max_chunks = cu.defined() ? t / kBT + n : b * ((t + kBT - 1) / kBT);
  const int64_t rows = b * t;
  if (own_prep) {
    bc = Tensor::empty({rows, h}, DType::F32, dev);
    kn = Tensor::empty({rows, h}, DType::F32, dev);
    w = Tensor::empty({rows, h, kd}, DType::F32, dev);
    if (key_vector) {
      bk = Tensor::empty({rows, h, kd}, DType::F32, dev);
      kt = Tensor::empty({rows, h, kd}, DType::F32, dev);
    }
    if (backward)
      tm = Tensor::empty({std::max<int64_t>(max_chunks, 1), h, kBT, kBT}, DType::F32, dev);
  }
  if (own_states) {  // (Ũ feeds only the state pass)
    ut = Tensor::empty({rows, h, vd}, DType::F32, dev);
    u = Tensor::empty({rows, h, vd}, DType::BF16, dev);
    hs = Tensor::empty({std::max<int64_t>(max_chunks, 1), h, kd, vd}, DType::BF16, dev);
  }
  if (key_vector) {
    if (backward) {
      qt = Tensor::empty({rows, h, kd}, DType::F32, dev);
      xk = Tensor::empty({rows, h, vd / kBV, kd}, DType::F32, dev);
      sdk = Tensor::empty({std::max<int64_t>(max_chunks, 1), h, vd / kBV, kd}, DType::F32, dev);
      dbk = Tensor::empty({rows, h, kd}, DType::F32, dev);
    }
  }
  if (backward) {
    dhs = Tensor::empty({std::max<int64_t>(max_chunks, 1), h, kd, vd}, DType::BF16, dev);
    du_in = Tensor::empty({rows, h, vd}, DType::F32, dev);
    duh = Tensor::empty({rows, h, vd}, DType::BF16, dev);
    dul = Tensor::empty({rows, h, vd}, DType::BF16, dev);
    qn = Tensor::empty({rows, h}, DType::F32, dev);
    if ((want_dg || key_vector) && own_states) ul = Tensor::empty({rows, h, vd}, DType::BF16, dev);
    if (want_dg) {
      xs = Tensor::empty({rows, h, vd / kBV}, DType::F32, dev);
      // S_c beyond bf16 for the ⟨dS_{c+1}, S_c⟩ term of dg: its bf16 lo part (hs + hsl, ~16
      // mantissa bits).
      if (own_states)
        hsl = Tensor::empty({std::max<int64_t>(max_chunks, 1), h, kd, vd}, DType::BF16, dev);
      sdot = Tensor::empty({std::max<int64_t>(max_chunks, 1), h, vd / kBV}, DType::F32, dev);
    }
  }
}

void Workspace::fill(Params& p) const {
  if (index.defined()) {  // packed batch: device index (seq_index.cuh), built on the stream
    int64_t* idx = index.data<int64_t>();
    p.seq = idx;
    p.chunks = idx + n + 1;
  } else {  // dense batch: offsets from T
    p.seq = p.chunks = nullptr;
    p.tlen = tlen;
    p.cps = (tlen + kBT - 1) / kBT;
  }
  p.n = n;
  p.max_chunks = max_chunks;
  p.bc = bc.data<float>();
  p.kn = kn.data<float>();
  p.w = w.data<float>();
  p.ut = ut.defined() ? ut.data<float>() : nullptr;
  p.u = u.data<bf16>();
  p.hs = hs.data<bf16>();
  if (hsl.defined()) p.hsl = hsl.data<bf16>();
  if (sdot.defined()) p.sdot = sdot.data<float>();
  if (tm.defined()) p.tm = tm.data<float>();
  if (dhs.defined()) p.dhs = dhs.data<bf16>();
  if (du_in.defined()) p.du_in = du_in.data<float>();
  if (duh.defined()) p.duh = duh.data<bf16>();
  if (dul.defined()) p.dul = dul.data<bf16>();
  if (qn.defined()) p.qn = qn.data<float>();
  if (ul.defined()) p.ul = ul.data<bf16>();
  if (xs.defined()) p.xs = xs.data<float>();
  if (bk.defined()) p.bk = bk.data<float>();
  if (kt.defined()) p.kt = kt.data<float>();
  if (qt.defined()) p.qt = qt.data<float>();
  if (xk.defined()) p.xk = xk.data<float>();
  if (sdk.defined()) p.sdk = sdk.data<float>();
  if (dbk.defined()) p.dbk = dbk.data<float>();
}

int chunk_kv_fwd_smem_bytes(int64_t k, int64_t v) {
  int prep = 0, out = 0;
  dispatch_kv(k, v, [&](auto kc, auto vc) {
    prep = prep_kv_smem_bytes<decltype(kc)::value, decltype(vc)::value>();
    out = out_kv_smem_bytes<decltype(kc)::value, decltype(vc)::value>();
  });
  const int states = k == 64 ? states_kv_smem_bytes<64>(1) : states_kv_smem_bytes<128>(1);
  return std::max({prep, out, states});
}

int chunk_states_smem_bytes(int64_t k, int stages) {
  return k == 64 ? states_smem_bytes<64>(stages) : states_smem_bytes<128>(stages);
}

// Index + prep + forward state pass (shared by the forward and the backward's recompute).
void run_forward_states(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& beta,
                        const Tensor& g, const Tensor& h0, DeltaGate gate, double scale, bool l2,
                        Workspace& ws, Params& p, cudaStream_t st, bool states, bool prep) {
  p.q = q.data<bf16>();
  p.k = k.data<bf16>();
  p.v = v.data<bf16>();
  p.beta = beta.data<float>();
  p.g = gate == DeltaGate::HeadScalar ? g.data<float>() : nullptr;
  p.gk = gate == DeltaGate::KeyVector ? g.data<float>() : nullptr;
  p.h0 = h0.defined() ? h0.data<float>() : nullptr;
  p.h = q.size(2);
  p.kd = q.size(3);
  p.vd = v.size(3);
  p.gate = int(gate);
  p.l2 = l2;
  p.scale = float(delta_scale(scale, p.kd));
  p.smem_optin = cuda::props(q.device().index).max_smem_per_block_optin;
  // SEQMIX_DELTA_CHUNK_STAGES=1 forces the single-buffered state passes that devices with less
  // shared memory (A100) run, so that a larger GPU can test them.
  static const int forced_stages = [] {
    const char* e = std::getenv("SEQMIX_DELTA_CHUNK_STAGES");
    return e ? std::atoi(e) : 0;
  }();
  p.max_stages = forced_stages == 1 ? 1 : 2;
  ws.fill(p);
  if (ws.index.defined())
    kern::build_seq_index(ws.cu.data<int64_t>(), ws.n, kBT, const_cast<int64_t*>(p.seq),
                          const_cast<int64_t*>(p.chunks), st);
  if (prep) launch_prep(p, st);
  if (states) launch_states(p, st);
}

}  // namespace delta_chunk

void delta_rule_chunk_fwd_cuda(const DeltaFwdArgs& a) {
  const Device dev = a.q.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  const bool kv = a.gate == DeltaGate::KeyVector;
  delta_chunk::Workspace ws(a.q, a.v, a.cu_seqlens, false, false, kv);
  // Kept for the backward: S_c and U, with dg also the lo part of S_c, with dg or a per-key-dim
  // gate also U's (the KeyVector backward always reads U as hi + lo).
  const bool keep = a.keep != nullptr;
  if (keep)  // the prep writes T too
    ws.tm = Tensor::empty(
        {std::max<int64_t>(ws.max_chunks, 1), a.q.size(2), delta_chunk::kBT, delta_chunk::kBT},
        DType::F32, dev);
  if (keep && a.keep->want_dg) ws.hsl = Tensor::empty(ws.hs.shape(), DType::BF16, dev);
  if (keep && (a.keep->want_dg || kv)) ws.ul = Tensor::empty(ws.u.shape(), DType::BF16, dev);
  delta_chunk::Params p;
  p.o = a.o.defined() ? a.o.data<bf16>() : nullptr;
  p.ht = a.ht.defined() ? a.ht.data<float>() : nullptr;
  delta_chunk::run_forward_states(a.q, a.k, a.v, a.beta, a.g, a.h0, a.gate, a.scale, a.l2norm_qk,
                                  ws, p, st);
  if (p.max_chunks > 0 && p.o && p.h > 0) {
    delta_chunk::dispatch_kv(p.kd, p.vd, [&](auto k, auto v) {
      if (a.gate == DeltaGate::KeyVector)
        delta_chunk::launch_out_kv_t<decltype(k)::value, decltype(v)::value>(p, st);
      else
        delta_chunk::launch_out_t<decltype(k)::value, decltype(v)::value>(p, st);
    });
  }
  if (keep) {
    a.keep->hs = ws.hs;
    a.keep->u = ws.u;
    a.keep->hsl = ws.hsl;
    a.keep->ul = ws.ul;
    a.keep->bc = ws.bc;
    a.keep->kn = ws.kn;
    a.keep->w = ws.w;
    a.keep->tm = ws.tm;
    a.keep->bk = ws.bk;
    a.keep->kt = ws.kt;
    a.keep->gate = a.gate;
  }
}

}  // namespace seqmix
