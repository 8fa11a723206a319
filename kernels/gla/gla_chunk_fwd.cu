// CUDA chunked gated linear attention forward (bf16 in, fp32 accumulate, mma.sync m16n8k16).
//   S_{c+1} = exp(B_c) ⊙ S_c + K̃_cᵀ V_c,  K̃_s = k_s ⊙ exp(B_c - b_s)      (state kernel)
//   o_t = scale · [(q_t ⊙ exp(b_t)) S_c + Σ_{s≤t in chunk} (q_t ⊙ exp(b_t - b_s)) · k_s v_s]
// with b the chunk-local inclusive cumulative log-gate (per key dim for KeyVector, a scalar per
// step otherwise) and B_c = b at the chunk's last step. Chunks of 64 steps never cross sequence
// boundaries (packed batches use per-sequence chunk offsets).
// Kernels: index (sequence / chunk offsets), states (one block per sequence, head and 64-wide V
// slice, sequential over chunks, fp32 state in registers, each chunk-start state stored in bf16),
// output (one block per chunk and head; warp w computes rows [16w, 16w + 16)).
// Exactness of per-key-dim gates: the intra-chunk scores of warp w use the reference point
// r = b at row 16w + 7: q̃_t = q_t exp(b_t - r), k̃_s = k_s exp(r - b_s); every exponent spans at
// most 8 steps, so nothing overflows while 8 consecutive log-gates sum to more than about -80 (per
// step >= -10), and exp(+cumsum) of a whole chunk is never formed. Scalar gates apply
// exp(b_t - b_s) (<= 1) to the scores after the product: exact for any decay.
// Layouts: see kernels/gla/gla.h. Also the host entry points gla_chunk_supports / _fwd_cuda.
#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "kernels/gla/gla_common.cuh"

namespace seqmix {
namespace gla_chunk {
namespace {

__global__ void gla_chunk_fwd_kernel_index(const int64_t* cu, int64_t b, int64_t t, int64_t n,
                                           int64_t* seq, int64_t* chunks) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  for (int64_t i = 0; i <= n; ++i) seq[i] = cu ? cu[i] : i * t;
  chunks[0] = 0;
  for (int64_t i = 0; i < n; ++i) chunks[i + 1] = chunks[i] + (seq[i + 1] - seq[i] + kBT - 1) / kBT;
}

// Forward (REV = false): state at each chunk start -> p.hs, final state -> p.ht.
// Reverse (REV = true): dS_c = exp(B_c) dS_{c+1} + scale Q̂_cᵀ dO_c with Q̂_t = q_t exp(b_t); the
// gradient at each chunk end -> p.dhs, at the sequence start -> p.dh0.
template <int K, bool KV, bool REV>
__global__ void __launch_bounds__(kThreads) gla_chunk_fwd_kernel_states(const Params p) {
  constexpr int kLdA = K + 8, kLdV = kBV + 8, kLdB = K + 4;
  constexpr int kMT = K / 64;  // 16-row m-tiles per warp
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sa = reinterpret_cast<bf16*>(sb + (KV ? kBT * kLdB : kBT));
  bf16* sv = sa + kBT * kLdA;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int64_t v0 = int64_t(blockIdx.x) * kBV, h = blockIdx.y, n = blockIdx.z;
  const int64_t bos = p.seq[n], eos = p.seq[n + 1];
  const int64_t nc = (eos - bos + kBT - 1) / kBT;
  const int dbase = warp * (K / 4);
  const int64_t state_off = (n * p.h + h) * K * p.vd;

  float acc[kMT][kBV / 8][4];
  const float* init = REV ? p.dht : p.h0;
#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = dbase + 16 * m + gq + (e >> 1) * 8;
        const int64_t v = v0 + 8 * j + 2 * tq + (e & 1);
        acc[m][j][e] = init ? init[state_off + d * p.vd + v] : 0.f;
      }

  const bf16* a_src = (REV ? p.q : p.k) + h * K;
  const bf16* v_src = (REV ? p.dout : p.v) + h * p.vd + v0;
  bf16* store = REV ? p.dhs : p.hs;
  for (int64_t i = 0; i < nc; ++i) {
    const int64_t c = REV ? nc - 1 - i : i;
    bf16* dst = store + ((p.chunks[n] + c) * p.h + h) * K * p.vd + v0;
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int d = dbase + 16 * m + gq + r * 8;
          *reinterpret_cast<uint32_t*>(dst + d * p.vd + 8 * j + 2 * tq) =
              pack_bf16(acc[m][j][2 * r], acc[m][j][2 * r + 1]);
        }
    const int64_t r0 = bos + c * kBT;
    __syncthreads();  // the previous chunk's tiles are no longer read
    load_gate<K, KV>(sb, p, h, r0, eos);
    load_tile<K>(sa, a_src, r0, eos, p.h * K);
    load_tile<kBV>(sv, v_src, r0, eos, p.h * p.vd);
    __syncthreads();

    auto gb = [&](int t, int d) { return KV ? sb[t * kLdB + d] : sb[t]; };
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int d = dbase + 16 * m + gq + r * 8;
        const float decay = __expf(gb(kBT - 1, d));
#pragma unroll
        for (int j = 0; j < kBV / 8; ++j) {
          acc[m][j][2 * r] *= decay;
          acc[m][j][2 * r + 1] *= decay;
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
      uint32_t bfr[kBV / 16][4];
#pragma unroll
      for (int jj = 0; jj < kBV / 16; ++jj) load_b(bfr[jj], sv, kLdV, 16 * kk, 16 * jj, lane);
#pragma unroll
      for (int m = 0; m < kMT; ++m) {
        uint32_t a[4];
        frag_a(a, fa, dbase + 16 * m, 16 * kk, gq, tq);
#pragma unroll
        for (int jj = 0; jj < kBV / 16; ++jj) {
          mma_16816(acc[m][2 * jj], a, bfr[jj][0], bfr[jj][1]);
          mma_16816(acc[m][2 * jj + 1], a, bfr[jj][2], bfr[jj][3]);
        }
      }
    }
  }

  float* out = REV ? p.dh0 : p.ht;
  if (out) {
#pragma unroll
    for (int m = 0; m < kMT; ++m)
#pragma unroll
      for (int j = 0; j < kBV / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int d = dbase + 16 * m + gq + (e >> 1) * 8;
          const int64_t v = v0 + 8 * j + 2 * tq + (e & 1);
          out[state_off + d * p.vd + v] = acc[m][j][e];
        }
  }
}

template <int K, int V, bool KV>
constexpr int out_smem_bytes() {
  return (KV ? kBT * (K + 4) : kBT) * 4 + 2 * kBT * (K + 8) * 2 + kBT * (V + 8) * 2 +
         K * (V + 8) * 2;
}

// One block per (chunk, head): o for the chunk's 64 rows; warp w owns rows [16w, 16w + 16).
template <int K, int V, bool KV>
__global__ void __launch_bounds__(kThreads) gla_chunk_fwd_kernel_o(const Params p) {
  constexpr int kLdK = K + 8, kLdV = V + 8, kLdB = K + 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* sb = reinterpret_cast<float*>(smem_raw);
  bf16* sq = reinterpret_cast<bf16*>(sb + (KV ? kBT * kLdB : kBT));
  bf16* sk = sq + kBT * kLdK;
  bf16* sv = sk + kBT * kLdK;
  bf16* ss = sv + kBT * kLdV;

  const int64_t x = blockIdx.x, h = blockIdx.y;
  const int64_t n = find_seq(p, x);
  if (n < 0) return;
  const int64_t r0 = p.seq[n] + (x - p.chunks[n]) * kBT, r1 = p.seq[n + 1];
  load_gate<K, KV>(sb, p, h, r0, r1);
  load_tile<K>(sq, p.q + h * K, r0, r1, p.h * K);
  load_tile<K>(sk, p.k + h * K, r0, r1, p.h * K);
  load_tile<V>(sv, p.v + h * V, r0, r1, p.h * V);
  load_state<K, V>(ss, p.hs + (x * p.h + h) * K * V);
  __syncthreads();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gq = lane >> 2, tq = lane & 3;
  const int t0 = 16 * warp, ref = t0 + 7;
  auto gb = [&](int t, int d) { return KV ? sb[t * kLdB + d] : sb[t]; };

  // Scores of rows t0.. against keys 0..t0+15.
  float sc[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.f;
  auto fq = [&](int t, int d) {
    const float x = ld_bf16(sq + t * kLdK + d);
    return KV ? x * __expf(gb(t, d) - gb(ref, d)) : x;
  };
  auto fk = [&](int d, int s) {
    const float x = ld_bf16(sk + s * kLdK + d);
    return KV ? x * __expf(gb(ref, d) - gb(s, d)) : x;
  };
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[4];
    frag_a(a, fq, t0, 16 * kk, gq, tq);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < 2 * warp + 2) {
        uint32_t b0, b1;
        if constexpr (KV)
          frag_b(b0, b1, fk, 16 * kk, 8 * j, gq, tq);
        else
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
      if (s <= t) val = p.scale * sc[j][e] * (KV ? 1.f : __expf(sb[t] - sb[s]));
      sc[j][e] = val;
    }

  float acc[V / 8][4];
#pragma unroll
  for (int j = 0; j < V / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (j <= warp) {
      uint32_t a[4];
      c_to_a(a, sc, j);
#pragma unroll
      for (int jj = 0; jj < V / 16; ++jj) {
        uint32_t bfr[4];
        load_b(bfr, sv, kLdV, 16 * j, 16 * jj, lane);
        mma_16816(acc[2 * jj], a, bfr[0], bfr[1]);
        mma_16816(acc[2 * jj + 1], a, bfr[2], bfr[3]);
      }
    }
  }
  // Inter-chunk part: (scale q_t exp(b_t)) S_c.
  auto fqi = [&](int t, int d) { return p.scale * ld_bf16(sq + t * kLdK + d) * __expf(gb(t, d)); };
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

template <int K, bool KV, bool REV>
void launch_states_t(const Params& p, cudaStream_t st) {
  constexpr int smem = (KV ? kBT * (K + 4) : kBT) * 4 + kBT * (K + 8) * 2 + kBT * (kBV + 8) * 2;
  auto kern = gla_chunk_fwd_kernel_states<K, KV, REV>;
  SEQMIX_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(unsigned(p.vd / kBV), unsigned(p.h), unsigned(p.n));
  kern<<<grid, kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <int K, int V, bool KV>
void launch_out_t(const Params& p, cudaStream_t st) {
  constexpr int smem = out_smem_bytes<K, V, KV>();
  auto kern = gla_chunk_fwd_kernel_o<K, V, KV>;
  SEQMIX_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(unsigned(p.max_chunks), unsigned(p.h));
  kern<<<grid, kThreads, smem, st>>>(p);
  SEQMIX_LAUNCH_CHECK();
}

template <bool KV>
void launch_out(const Params& p, cudaStream_t st) {
  if (p.kd == 64 && p.vd == 64)
    launch_out_t<64, 64, KV>(p, st);
  else if (p.kd == 64)
    launch_out_t<64, 128, KV>(p, st);
  else if (p.vd == 64)
    launch_out_t<128, 64, KV>(p, st);
  else
    launch_out_t<128, 128, KV>(p, st);
}

}  // namespace

void build_index(const Tensor& cu_seqlens, int64_t b, int64_t t, int64_t n, int64_t* seq,
                 int64_t* chunks, cudaStream_t st) {
  const int64_t* cu = cu_seqlens.defined() ? cu_seqlens.data<int64_t>() : nullptr;
  gla_chunk_fwd_kernel_index<<<1, 1, 0, st>>>(cu, b, t, n, seq, chunks);
  SEQMIX_LAUNCH_CHECK();
}

void launch_states(const Params& p, bool reverse, cudaStream_t st) {
  const bool kv = p.gate == int(GlaGate::KeyVector);
  if (p.n == 0 || p.h == 0) return;
  if (p.kd == 64) {
    if (kv)
      reverse ? launch_states_t<64, true, true>(p, st) : launch_states_t<64, true, false>(p, st);
    else
      reverse ? launch_states_t<64, false, true>(p, st) : launch_states_t<64, false, false>(p, st);
  } else {
    if (kv)
      reverse ? launch_states_t<128, true, true>(p, st) : launch_states_t<128, true, false>(p, st);
    else
      reverse ? launch_states_t<128, false, true>(p, st)
              : launch_states_t<128, false, false>(p, st);
  }
}

}  // namespace gla_chunk

namespace {
bool aligned16(const Tensor& t) {
  return !t.defined() || (reinterpret_cast<uintptr_t>(t.data_ptr()) & 15) == 0;
}
}  // namespace

Support gla_chunk_supports(const GlaFwdArgs& a) {
  if (!a.q.is_cuda()) return Support::no("chunked gla kernels run on CUDA devices only");
  if (a.q.dtype() != DType::BF16)
    return Support::no("chunked gla kernels take bf16 q, k, v (use the recurrent kernel for f32)");
  if (a.k.dtype() != DType::BF16 || a.v.dtype() != DType::BF16)
    return Support::no("chunked gla kernels take bf16 k and v");
  const int64_t kd = a.q.size(3), vd = a.v.size(3);
  if (kd != 64 && kd != 128) return Support::no("chunked gla kernels need K in {64, 128}");
  if (vd != 64 && vd != 128) return Support::no("chunked gla kernels need V in {64, 128}");
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
  Tensor index = Tensor::empty({2 * (n + 1)}, DType::I64, dev);
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
  int64_t* idx = index.data<int64_t>();
  p.seq = idx;
  p.chunks = idx + n + 1;
  gla_chunk::build_index(cu, b, t, n, idx, idx + n + 1, st);
  Tensor hs;
  if (p.max_chunks > 0) {
    hs = Tensor::empty({p.max_chunks, h, p.kd, p.vd}, DType::BF16, dev);
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
