// CUDA fused recurrent kernels of the delta-rule family (DeltaNet, Gated DeltaNet, KDA): every
// gate mode, any T, h0 / ht, dh0 / dht, cu_seqlens, l2norm_qk, bf16 / f32 inputs, K, V <= 256,
// fp32 state in registers. The decoding / short-sequence path and the correctness anchor of the
// chunked kernels (delta_rule_chunk_*.cu).
//   P = D_t S_{t-1};  u_t = v_t − Pᵀ k_t;  S_t = P + β_t k_t u_tᵀ;  o_t = scale · S_tᵀ q_t
// The value columns of S are independent (u_t[j] only needs column j), so one thread block owns
// (sequence, head, slice of kBV = 16 columns): a group of kG = 8 lanes holds one column, lane r of
// the group rows i = r + 8 m (m < KPT); the column sums Pᵀk and Sᵀq are 3-shuffle group sums.
//
// Backward (README.md, "CUDA kernels"): per step, with dS the gradient of S_t (dS += scale q do),
//   du = β dSᵀk = dv;  dβ = kᵀ dS u;  dk = β dS u − P du;  dq = scale S_t do;
//   dP = dS − k duᵀ;  dg[i] = Σ_j dP[i, j] P[i, j];  dS_{t−1} = D_t dP.
// The states are recomputed, never inverted: a forward pass stores the state at every 64-step
// chunk start in fp32 scratch; per chunk (last first) the 8 states at the 8-step sub-chunk starts
// are rebuilt into local memory, per sub-chunk the 8 states before each step, then the steps are
// reversed. Column-local results (dv, dh0) are written directly; row results (dq, dk, dg, dβ)
// are summed over the block's columns (shuffles, then shared memory in warp order) into fp32
// partials per slice, which a combine kernel sums in slice order and passes through the l2 norm.
// Deterministic: every sum has a fixed order, no atomics.
// Layouts as in delta_rule.h: q, k [B, T, H, K]; v, o [B, T, H, V]; beta [B, T, H];
// h0, ht [N, H, K, V] f32.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/half.h"
#include "kernels/common/device_utils.cuh"
#include "kernels/common/launch.cuh"
#include "kernels/delta_rule/delta_rule.h"

namespace seqmix {

namespace {

constexpr int kG = 8;                  // lanes per value column (rows split over them)
constexpr int kCW = 32 / kG;           // columns per warp
constexpr int kWarps = 4;              // warps per block
constexpr int kThreads = kWarps * 32;  //
constexpr int kBV = kCW * kWarps;      // value columns per block
constexpr int kTS = 8;                 // steps per staging round = recompute sub-chunk
constexpr int kCk = 64;                // checkpoint interval of the backward
constexpr int kSubs = kCk / kTS;       // sub-chunks per checkpoint interval
constexpr int64_t kMaxDim = 256;       // K, V <= 256 (KPT <= 32)
constexpr float kNormEps = 1e-6f;      // l2norm_qk: x / sqrt(Σ x² + eps)

struct Params {
  const void *q_ptr = nullptr, *k_ptr = nullptr, *v_ptr = nullptr, *dout_ptr = nullptr;
  const float *beta = nullptr, *g = nullptr, *h0 = nullptr, *dht = nullptr;
  const int64_t* cu = nullptr;
  void* o = nullptr;
  float* ht = nullptr;
  // backward
  float* ckpt = nullptr;     // [(B·T / 64 + N + 1)·H, K, V] states at 64-step chunk starts
  float* dq_part = nullptr;  // [slices][B·T·H·K]
  float* dk_part = nullptr;  // [slices][B·T·H·K]
  float* dg_part = nullptr;  // [slices][B·T·H·K] (KeyVector) or [slices][B·T·H] (HeadScalar)
  float* db_part = nullptr;  // [slices][B·T·H]
  void* dv = nullptr;
  float* dh0 = nullptr;
  int64_t b = 0, t = 0, h = 0, k = 0, v = 0, n = 0, slices = 0;
  float scale = 1;
  int gate = 0;  // DeltaGate
  bool l2 = false;
  bool want_dg = false;
};

template <typename T>
__device__ __forceinline__ float ldf(const void* p, int64_t i) {
  return to_f32(static_cast<const T*>(p)[i]);
}

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}

__device__ __forceinline__ int64_t seq_bos(const Params& p, int64_t n) {
  return p.cu ? p.cu[n] : n * p.t;
}
__device__ __forceinline__ int64_t seq_eos(const Params& p, int64_t n) {
  return p.cu ? p.cu[n + 1] : (n + 1) * p.t;
}

// Sum over the kG lanes of one column group.
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int o = 1; o < kG; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
// Sum over the kCW column groups of a warp (lanes with the same row index).
__device__ __forceinline__ float cols_sum(float x) {
#pragma unroll
  for (int o = kG; o < 32; o <<= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Shared-memory staging of kTS steps: q, k (l2-normalised when asked), exp(gate) per key row
// (broadcast for HeadScalar, 1 for None) as [kTS][KP] (rows >= K are 0 / 1), beta [kTS], the
// block's columns of v and dout [kTS][kBV].
struct Stage {
  float *q, *k, *g, *b, *v, *d;
};

template <int KP>
__device__ __forceinline__ Stage carve(float* smem) {
  Stage s;
  s.q = smem;
  s.k = s.q + kTS * KP;
  s.g = s.k + kTS * KP;
  s.b = s.g + kTS * KP;
  s.v = s.b + kTS;
  s.d = s.v + kTS * kBV;
  return s;
}
template <int KP>
constexpr int stage_floats() {
  return 3 * kTS * KP + kTS + 2 * kTS * kBV;
}

template <typename T, int KP>
__device__ void stage(const Stage& s, const Params& p, int64_t t0, int steps, int64_t h, int64_t c0,
                      bool with_dout) {
  __syncthreads();  // the previous round's reads are done
  const int64_t kk = p.k;
  for (int idx = threadIdx.x; idx < kTS * KP; idx += kThreads) {
    const int st = idx / KP, i = idx % KP;
    float q = 0.f, k = 0.f, g = 1.f;
    if (st < steps && i < kk) {
      const int64_t tok = t0 + st, e = (tok * p.h + h) * kk + i;
      q = ldf<T>(p.q_ptr, e);
      k = ldf<T>(p.k_ptr, e);
      if (p.gate == int(DeltaGate::HeadScalar))
        g = expf(p.g[tok * p.h + h]);
      else if (p.gate == int(DeltaGate::KeyVector))
        g = expf(p.g[e]);
    }
    s.q[idx] = q;
    s.k[idx] = k;
    s.g[idx] = g;
  }
  for (int idx = threadIdx.x; idx < kTS * kBV; idx += kThreads) {
    const int st = idx / kBV, c = idx % kBV;
    const int64_t col = c0 + c;
    float v = 0.f, d = 0.f;
    if (st < steps && col < p.v) {
      const int64_t e = ((t0 + st) * p.h + h) * p.v + col;
      v = ldf<T>(p.v_ptr, e);
      if (with_dout) d = ldf<T>(p.dout_ptr, e);
    }
    s.v[idx] = v;
    s.d[idx] = d;
  }
  if (threadIdx.x < kTS) {
    const int st = threadIdx.x;
    s.b[st] = st < steps ? p.beta[(t0 + st) * p.h + h] : 0.f;
  }
  __syncthreads();
  if (p.l2) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int st = w; st < steps; st += kWarps) {
      float sq = 0.f, sk = 0.f;
      for (int i = lane; i < KP; i += 32) {
        sq = fmaf(s.q[st * KP + i], s.q[st * KP + i], sq);
        sk = fmaf(s.k[st * KP + i], s.k[st * KP + i], sk);
      }
      const float rq = 1.f / sqrtf(kern::warp_sum(sq) + kNormEps);
      const float rk = 1.f / sqrtf(kern::warp_sum(sk) + kNormEps);
      for (int i = lane; i < KP; i += 32) {
        s.q[st * KP + i] *= rq;
        s.k[st * KP + i] *= rk;
      }
    }
    __syncthreads();
  }
}

// One forward step of the thread's rows of one column; returns u_t (same in all group lanes).
template <int KPT>
__device__ __forceinline__ float fwd_step(float (&s)[KPT], const Stage& sm, int st, int r, int cl) {
  constexpr int KP = KPT * kG;
  const float* kr = sm.k + st * KP;
  const float* gr = sm.g + st * KP;
  float pk = 0.f;
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int i = r + kG * m;
    s[m] *= gr[i];
    pk = fmaf(s[m], kr[i], pk);
  }
  const float u = sm.v[st * kBV + cl] - group_sum(pk);
  const float bu = sm.b[st] * u;
#pragma unroll
  for (int m = 0; m < KPT; ++m) s[m] = fmaf(kr[r + kG * m], bu, s[m]);
  return u;
}

// Forward: o_t, and ht. Grid (N·H, slices).
template <typename T, int KPT>
__global__ void __launch_bounds__(kThreads) delta_rule_recurrent_fwd_kernel(const Params p) {
  constexpr int KP = KPT * kG;
  extern __shared__ float smem[];
  const Stage sm = carve<KP>(smem);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, r = lane % kG;
  const int cl = w * kCW + lane / kG;
  const int64_t nh = blockIdx.x, n = nh / p.h, h = nh % p.h, kk = p.k;
  const int64_t c0 = int64_t(blockIdx.y) * kBV, col = c0 + cl;
  const bool col_ok = col < p.v;
  const int64_t bos = seq_bos(p, n), eos = seq_eos(p, n);
  float s[KPT];
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int64_t i = r + kG * m;
    s[m] = (p.h0 && col_ok && i < kk) ? p.h0[(nh * kk + i) * p.v + col] : 0.f;
  }
  for (int64_t t0 = bos; t0 < eos; t0 += kTS) {
    const int steps = int(imin(kTS, eos - t0));
    stage<T, KP>(sm, p, t0, steps, h, c0, false);
    for (int st = 0; st < steps; ++st) {
      fwd_step<KPT>(s, sm, st, r, cl);
      const float* qr = sm.q + st * KP;
      float oq = 0.f;
#pragma unroll
      for (int m = 0; m < KPT; ++m) oq = fmaf(qr[r + kG * m], s[m], oq);
      oq = group_sum(oq);
      if (r == 0 && col_ok)
        static_cast<T*>(p.o)[((t0 + st) * p.h + h) * p.v + col] = from_acc<T>(p.scale * oq);
    }
  }
  if (p.ht && col_ok) {
#pragma unroll
    for (int m = 0; m < KPT; ++m) {
      const int64_t i = r + kG * m;
      if (i < kk) p.ht[(nh * kk + i) * p.v + col] = s[m];
    }
  }
}

// Row reductions of one sub-chunk: [3][kTS][kWarps][KP] (dq, dk, dg per key) + [2][kTS][kWarps]
// (dβ, HeadScalar dg).
template <int KP>
constexpr int red_floats() {
  return 3 * kTS * kWarps * KP + 2 * kTS * kWarps;
}

// Backward: dv, dh0 and the slice partials of dq, dk, dg, dβ. Grid (N·H, slices).
template <typename T, int KPT>
__global__ void __launch_bounds__(kThreads) delta_rule_recurrent_bwd_kernel(const Params p) {
  constexpr int KP = KPT * kG;
  extern __shared__ float smem[];
  const Stage sm = carve<KP>(smem);
  float* red = smem + stage_floats<KP>();
  float* reds = red + 3 * kTS * kWarps * KP;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, r = lane % kG, cg = lane / kG;
  const int cl = w * kCW + cg;
  const int64_t nh = blockIdx.x, n = nh / p.h, h = nh % p.h, kk = p.k;
  const int64_t c0 = int64_t(blockIdx.y) * kBV, col = c0 + cl;
  const bool col_ok = col < p.v;
  const int64_t bos = seq_bos(p, n), eos = seq_eos(p, n);
  const int64_t nck = (eos - bos + kCk - 1) / kCk;
  // Unique checkpoint slot per (sequence, chunk): bos / 64 + n + c (see the host allocation).
  const int64_t ck0 = bos / kCk + n;
  auto ck_ptr = [&](int64_t c) { return p.ckpt + ((ck0 + c) * p.h + h) * kk * p.v; };
  const bool kv = p.gate == int(DeltaGate::KeyVector);
  const bool hs = p.gate == int(DeltaGate::HeadScalar);
  const int64_t rows = p.b * p.t * p.h;
  const int64_t slice = blockIdx.y;

  float s[KPT];
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int64_t i = r + kG * m;
    s[m] = (p.h0 && col_ok && i < kk) ? p.h0[(nh * kk + i) * p.v + col] : 0.f;
  }
  // Phase 1: the state at every chunk start.
  for (int64_t c = 0; c < nck; ++c) {
    if (col_ok) {
      float* dst = ck_ptr(c);
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        const int64_t i = r + kG * m;
        if (i < kk) dst[i * p.v + col] = s[m];
      }
    }
    if (c == nck - 1) break;
    for (int64_t t0 = bos + c * kCk; t0 < bos + (c + 1) * kCk; t0 += kTS) {
      stage<T, KP>(sm, p, t0, kTS, h, c0, false);
#pragma unroll
      for (int st = 0; st < kTS; ++st) fwd_step<KPT>(s, sm, st, r, cl);
    }
  }

  // Phase 2: reverse.
  float ds[KPT];
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int64_t i = r + kG * m;
    ds[m] = (p.dht && col_ok && i < kk) ? p.dht[(nh * kk + i) * p.v + col] : 0.f;
  }
  float sub[kSubs][KPT];
  for (int64_t c = nck - 1; c >= 0; --c) {
    const int64_t cb = bos + c * kCk, ce = imin(eos, cb + kCk);
    const int nsub = int((ce - cb + kTS - 1) / kTS);
    {
      const float* src = ck_ptr(c);
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        const int64_t i = r + kG * m;
        s[m] = (col_ok && i < kk) ? src[i * p.v + col] : 0.f;
      }
    }
    for (int j = 0; j < nsub; ++j) {
#pragma unroll
      for (int m = 0; m < KPT; ++m) sub[j][m] = s[m];
      if (j == nsub - 1) break;
      stage<T, KP>(sm, p, cb + j * kTS, kTS, h, c0, false);
#pragma unroll
      for (int st = 0; st < kTS; ++st) fwd_step<KPT>(s, sm, st, r, cl);
    }
    for (int j = nsub - 1; j >= 0; --j) {
      const int64_t t0 = cb + j * kTS;
      const int steps = int(imin(kTS, ce - t0));
      stage<T, KP>(sm, p, t0, steps, h, c0, true);
      float prev[kTS][KPT];  // S_{t-1} of each step
      float us[kTS];
#pragma unroll
      for (int m = 0; m < KPT; ++m) s[m] = sub[j][m];
#pragma unroll
      for (int st = 0; st < kTS; ++st) {
        if (st < steps) {
#pragma unroll
          for (int m = 0; m < KPT; ++m) prev[st][m] = s[m];
          us[st] = fwd_step<KPT>(s, sm, st, r, cl);
        }
      }
#pragma unroll
      for (int st = kTS - 1; st >= 0; --st) {
        if (st >= steps) continue;
        const float* qr = sm.q + st * KP;
        const float* kr = sm.k + st * KP;
        const float* gr = sm.g + st * KP;
        const float bt = sm.b[st], u = us[st], dout = sm.d[st * kBV + cl];
        const float sdo = p.scale * dout;
        float kds = 0.f;
#pragma unroll
        for (int m = 0; m < KPT; ++m) {
          const int i = r + kG * m;
          ds[m] = fmaf(qr[i], sdo, ds[m]);  // + scale q_t do_tᵀ
          kds = fmaf(kr[i], ds[m], kds);
        }
        kds = group_sum(kds);
        const float du = bt * kds;
        if (r == 0 && col_ok && p.dv)
          static_cast<T*>(p.dv)[((t0 + st) * p.h + h) * p.v + col] = from_acc<T>(du);
        const float bu = bt * u;
        float gsum = 0.f;
        float* rq = red + ((0 * kTS + st) * kWarps + w) * KP;
        float* rk = red + ((1 * kTS + st) * kWarps + w) * KP;
        float* rg = red + ((2 * kTS + st) * kWarps + w) * KP;
#pragma unroll
        for (int m = 0; m < KPT; ++m) {
          const int i = r + kG * m;
          const float pm = gr[i] * prev[st][m];    // P = D_t S_{t-1}
          const float sm_t = fmaf(kr[i], bu, pm);  // S_t
          const float dq = cols_sum(sdo * sm_t);
          const float dk = cols_sum(fmaf(bt * ds[m], u, -pm * du));
          const float dp = fmaf(-kr[i], du, ds[m]);
          const float dg = dp * pm;
          if (cg == 0) {
            rq[i] = dq;
            rk[i] = dk;
          }
          if (kv) {
            const float x = cols_sum(dg);
            if (cg == 0) rg[i] = x;
          } else {
            gsum += dg;
          }
          ds[m] = gr[i] * dp;  // dS_{t-1} = D_t dP
        }
        const float db = kern::warp_sum(r == 0 ? kds * u : 0.f);
        const float dgs = hs ? kern::warp_sum(gsum) : 0.f;
        if (lane == 0) {
          reds[(0 * kTS + st) * kWarps + w] = db;
          reds[(1 * kTS + st) * kWarps + w] = dgs;
        }
      }
      __syncthreads();
      // Sum the warps' row partials in warp order and store the slice partials.
      for (int idx = threadIdx.x; idx < steps * KP; idx += kThreads) {
        const int st = idx / KP, i = idx % KP;
        if (i >= kk) continue;
        const int64_t e = slice * rows * kk + ((t0 + st) * p.h + h) * kk + i;
        float aq = 0.f, ak = 0.f, ag = 0.f;
#pragma unroll
        for (int x = 0; x < kWarps; ++x) {
          aq += red[((0 * kTS + st) * kWarps + x) * KP + i];
          ak += red[((1 * kTS + st) * kWarps + x) * KP + i];
          ag += red[((2 * kTS + st) * kWarps + x) * KP + i];
        }
        p.dq_part[e] = aq;
        p.dk_part[e] = ak;
        if (kv && p.dg_part) p.dg_part[e] = ag;
      }
      if (threadIdx.x < steps) {
        const int st = threadIdx.x;
        const int64_t e = slice * rows + (t0 + st) * p.h + h;
        float ab = 0.f, ag = 0.f;
#pragma unroll
        for (int x = 0; x < kWarps; ++x) {
          ab += reds[(0 * kTS + st) * kWarps + x];
          ag += reds[(1 * kTS + st) * kWarps + x];
        }
        p.db_part[e] = ab;
        if (hs && p.dg_part) p.dg_part[e] = ag;
      }
      // The next stage() starts with __syncthreads(), so red is not overwritten early.
    }
  }
  if (p.dh0 && col_ok) {
#pragma unroll
    for (int m = 0; m < KPT; ++m) {
      const int64_t i = r + kG * m;
      if (i < kk) p.dh0[(nh * kk + i) * p.v + col] = ds[m];
    }
  }
}

// Combine: one warp per (token, head): slice partials summed in slice order; dq, dk through the
// l2 norm (dx = (dx̂ − x̂ (x̂·dx̂)) / ‖x‖); dβ; dg.
template <typename T>
__global__ void delta_rule_recurrent_bwd_kernel_combine(const Params p, T* dq, T* dk, float* dbeta,
                                                        float* dg) {
  constexpr int kPer = int(kMaxDim / 32);
  const int lane = threadIdx.x & 31;
  const int64_t rows = p.b * p.t * p.h, kk = p.k;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;
  const bool kv = p.gate == int(DeltaGate::KeyVector);
  const bool hs = p.gate == int(DeltaGate::HeadScalar);
  if (lane == 0) {
    float b = 0.f, gs = 0.f;
    for (int64_t s = 0; s < p.slices; ++s) {
      b += p.db_part[s * rows + row];
      if (hs && dg) gs += p.dg_part[s * rows + row];
    }
    if (dbeta) dbeta[row] = b;
    if (hs && dg) dg[row] = gs;
  }
  if (kv && dg) {
    for (int64_t i = lane; i < kk; i += 32) {
      float x = 0.f;
      for (int64_t s = 0; s < p.slices; ++s) x += p.dg_part[s * rows * kk + row * kk + i];
      dg[row * kk + i] = x;
    }
  }
  for (int which = 0; which < 2; ++which) {
    T* out = which == 0 ? dq : dk;
    if (!out) continue;
    const float* part = which == 0 ? p.dq_part : p.dk_part;
    const void* raw = which == 0 ? p.q_ptr : p.k_ptr;
    float d[kPer], x[kPer];
    float ss = 0.f, dot = 0.f;
#pragma unroll
    for (int m = 0; m < kPer; ++m) {
      const int64_t i = lane + 32 * m;
      d[m] = x[m] = 0.f;
      if (i < kk) {
        for (int64_t s = 0; s < p.slices; ++s) d[m] += part[s * rows * kk + row * kk + i];
        x[m] = ldf<T>(raw, row * kk + i);
        ss = fmaf(x[m], x[m], ss);
      }
    }
    float rn = 1.f, inv = 1.f;
    if (p.l2) {
      rn = sqrtf(kern::warp_sum(ss) + kNormEps);
      inv = 1.f / rn;
#pragma unroll
      for (int m = 0; m < kPer; ++m) dot = fmaf(x[m] * inv, d[m], dot);
      dot = kern::warp_sum(dot);
    }
#pragma unroll
    for (int m = 0; m < kPer; ++m) {
      const int64_t i = lane + 32 * m;
      if (i >= kk) continue;
      const float val = p.l2 ? (d[m] - x[m] * inv * dot) * inv : d[m];
      out[row * kk + i] = from_acc<T>(val);
    }
  }
}

Params make_params(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& beta,
                   const Tensor& g, const Tensor& h0, const Tensor& cu, DeltaGate gate,
                   double scale, bool l2) {
  Params p;
  p.q_ptr = q.data_ptr();
  p.k_ptr = k.data_ptr();
  p.v_ptr = v.data_ptr();
  p.beta = beta.data<float>();
  p.g = gate == DeltaGate::None ? nullptr : g.data<float>();
  p.h0 = h0.defined() ? h0.data<float>() : nullptr;
  p.cu = cu.defined() ? cu.data<int64_t>() : nullptr;
  p.b = q.size(0);
  p.t = q.size(1);
  p.h = q.size(2);
  p.k = q.size(3);
  p.v = v.size(3);
  p.n = cu.defined() ? cu.size(0) - 1 : p.b;
  p.slices = (p.v + kBV - 1) / kBV;
  p.scale = float(delta_scale(scale, p.k));
  p.gate = int(gate);
  p.l2 = l2;
  return p;
}

// Calls f(integral_constant<KPT>) with the smallest register tile that holds K rows.
template <typename F>
void dispatch_kpt(int64_t k, F&& f) {
  if (k <= 8 * kG)
    f(std::integral_constant<int, 8>{});
  else if (k <= 16 * kG)
    f(std::integral_constant<int, 16>{});
  else
    f(std::integral_constant<int, 32>{});
}

dim3 grid_of(const Params& p) {
  return dim3(unsigned(p.n * p.h), unsigned(p.slices));
}

template <typename T>
void fwd(const Params& p, cudaStream_t st) {
  dispatch_kpt(p.k, [&](auto kpt) {
    constexpr int KPT = decltype(kpt)::value;
    const size_t smem = sizeof(float) * size_t(stage_floats<KPT * kG>());
    auto kern = delta_rule_recurrent_fwd_kernel<T, KPT>;
    kern::ensure_dynamic_smem(kern, int(smem));
    kern<<<grid_of(p), kThreads, smem, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  });
}

template <typename T>
void bwd(const DeltaBwdArgs& a, Params p, cudaStream_t st) {
  const Device dev = a.q.device();
  const int64_t rows = p.b * p.t * p.h;
  const bool kv = a.gate == DeltaGate::KeyVector, hs = a.gate == DeltaGate::HeadScalar;
  p.want_dg = a.dg.defined() && (kv || hs);
  Tensor ckpt = Tensor::empty({(p.b * p.t / kCk + p.n + 1) * p.h, p.k, p.v}, DType::F32, dev);
  Tensor dq_part = Tensor::empty({p.slices, rows * p.k}, DType::F32, dev);
  Tensor dk_part = Tensor::empty({p.slices, rows * p.k}, DType::F32, dev);
  Tensor db_part = Tensor::empty({p.slices, rows}, DType::F32, dev);
  Tensor dg_part;
  if (p.want_dg) dg_part = Tensor::empty({p.slices, kv ? rows * p.k : rows}, DType::F32, dev);
  p.ckpt = ckpt.data<float>();
  p.dq_part = dq_part.data<float>();
  p.dk_part = dk_part.data<float>();
  p.db_part = db_part.data<float>();
  p.dg_part = p.want_dg ? dg_part.data<float>() : nullptr;
  p.dv = a.dv.defined() ? a.dv.data_ptr() : nullptr;
  p.dh0 = a.dh0.defined() ? a.dh0.data<float>() : nullptr;
  dispatch_kpt(p.k, [&](auto kpt) {
    constexpr int KPT = decltype(kpt)::value, KP = KPT * kG;
    const size_t smem = sizeof(float) * size_t(stage_floats<KP>() + red_floats<KP>());
    auto kern = delta_rule_recurrent_bwd_kernel<T, KPT>;
    kern::ensure_dynamic_smem(kern, int(smem));
    kern<<<grid_of(p), kThreads, smem, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  });
  if (rows == 0) return;
  T* dq = a.dq.defined() ? a.dq.data<T>() : nullptr;
  T* dk = a.dk.defined() ? a.dk.data<T>() : nullptr;
  float* dbeta = a.dbeta.defined() ? a.dbeta.data<float>() : nullptr;
  float* dg = p.want_dg ? a.dg.data<float>() : nullptr;
  const int64_t per_block = 8;
  delta_rule_recurrent_bwd_kernel_combine<T>
      <<<unsigned((rows + per_block - 1) / per_block), 32 * per_block, 0, st>>>(p, dq, dk, dbeta,
                                                                                dg);
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace

Support delta_rule_recurrent_supports(const DeltaFwdArgs& a) {
  if (!a.q.defined() || !a.q.device().is_cuda())
    return Support::no("the recurrent CUDA delta-rule kernels need CUDA tensors");
  const DType t = a.q.dtype();
  if (t != DType::BF16 && t != DType::F32)
    return Support::no(
        std::string("the recurrent CUDA delta-rule kernels take bf16 or f32 inputs, got ") +
        dtype_name(t));
  if (a.k.dtype() != t || a.v.dtype() != t)
    return Support::no("the recurrent CUDA delta-rule kernels need q, k, v of one dtype");
  if (a.beta.defined() && a.beta.dtype() != DType::F32)
    return Support::no("the recurrent CUDA delta-rule kernels need an f32 beta");
  if (a.g.defined() && a.g.dtype() != DType::F32)
    return Support::no("the recurrent CUDA delta-rule kernels need an f32 log-gate g");
  if (a.q.dim() != 4 || a.v.dim() != 4) return Support::yes();  // shapes are validated apart
  if (a.q.size(3) > kMaxDim || a.v.size(3) > kMaxDim)
    return Support::no("the recurrent CUDA delta-rule kernels support K, V <= 256, got K=" +
                       std::to_string(a.q.size(3)) + " V=" + std::to_string(a.v.size(3)));
  const int64_t n = a.cu_seqlens.defined() ? a.cu_seqlens.numel() - 1 : a.q.size(0);
  if (n * a.q.size(2) > 0x7fffffffLL)
    return Support::no(
        "the recurrent CUDA delta-rule kernels take at most 2^31 - 1 (sequence, head) pairs");
  return Support::yes();
}

void delta_rule_recurrent_fwd_cuda(const DeltaFwdArgs& a) {
  Params p =
      make_params(a.q, a.k, a.v, a.beta, a.g, a.h0, a.cu_seqlens, a.gate, a.scale, a.l2norm_qk);
  if (p.n * p.h == 0) return;
  p.o = a.o.data_ptr();
  p.ht = a.ht.defined() ? a.ht.data<float>() : nullptr;
  cudaStream_t st = cuda::current_stream(a.q.device().index);
  if (a.q.dtype() == DType::F32)
    fwd<float>(p, st);
  else if (a.q.dtype() == DType::BF16)
    fwd<bf16>(p, st);
  else
    SEQMIX_THROW_PLAIN(Unsupported,
                       "delta_rule: the recurrent CUDA kernels take bf16 or f32 inputs");
}

void delta_rule_recurrent_bwd_cuda(const DeltaBwdArgs& a) {
  Params p =
      make_params(a.q, a.k, a.v, a.beta, a.g, a.h0, a.cu_seqlens, a.gate, a.scale, a.l2norm_qk);
  if (p.n * p.h == 0) return;
  p.dout_ptr = a.dout.data_ptr();
  p.dht = a.dht.defined() ? a.dht.data<float>() : nullptr;
  cudaStream_t st = cuda::current_stream(a.q.device().index);
  if (a.q.dtype() == DType::F32)
    bwd<float>(a, p, st);
  else if (a.q.dtype() == DType::BF16)
    bwd<bf16>(a, p, st);
  else
    SEQMIX_THROW_PLAIN(Unsupported,
                       "delta_rule: the recurrent CUDA kernels take bf16 or f32 inputs");
}

}  // namespace seqmix
