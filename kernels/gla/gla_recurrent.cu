// CUDA fused recurrent kernels of the gated linear attention family (every gate mode, any T,
// h0 / ht, cu_seqlens, bf16 / f32 inputs, fp32 state in registers). The decoding and short-
// sequence path; the chunked kernels (gla_chunk_*.cu) serve long sequences.
//   S_t = G_t ⊙ S_{t-1} + k_tᵀ v_t,  o_t = scale · q_t S_t,  G_t = exp(g_t) broadcast over V
// The columns of S for different v are independent, so one thread block owns (sequence, head,
// slice of kBV = 32 value columns): lane = column, warp w holds rows i = w + 8m (m < KPT) of the
// K×32 slice in registers. Inputs for kTS steps are staged in shared memory per __syncthreads.
//
// Backward (README.md, "Recurrent CUDA kernels"):
//   A  forward order: rebuild S_t; the slice's partial of dq'_t = scale do_t (G_t ⊙ S_{t-1})ᵀ
//      and, when dg is wanted, of Σ_c dht[i,c] ht[i,c]; partials go to fp32 scratch [slice][...].
//   B  reverse order: D_t = G_{t+1} ⊙ dS_{t+1} (from dht); the slice's partial of
//      dk'_t = v_t D_tᵀ; dS_t = D_t + scale q_tᵀ do_t; dv_t = k_t dS_t (complete: the block holds
//      every row); dh0 = D_0.
//   C  dq = dq' + scale k_t (do_t·v_t), dk = dk' + scale q_t (do_t·v_t), slices summed in a fixed
//      order; dg by the reverse cumulative sum (fp64) of the identity
//        dg_t[i] = Σ_{s≥t} (q_s[i] dq'_s[i] − k_s[i] dk'_s[i]) + Σ_c dht[i,c] ht[i,c]
//      (the scale q k (do·v) terms of q dq and k dk cancel exactly and are left out, which keeps
//      the fp32 partials free of that cancellation), summed over i for HeadScalar. No state is
//      stored or divided by G: exact for any decay.
// Deterministic: every sum has a fixed order, no atomics.
// Layouts as in gla.h: q, k [B, T, H, K]; v, o [B, T, H, V]; h0, ht [N, H, K, V] f32.
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
#include "kernels/gla/gla.h"

namespace seqmix {

namespace {

constexpr int kBV = 32;    // value columns per block (one per lane)
constexpr int kWarps = 8;  // row groups per block
constexpr int kThreads = kWarps * 32;
constexpr int kTS = 8;            // time steps staged per shared-memory round
constexpr int64_t kMaxDim = 256;  // K, V <= 256 (KPT <= 32 rows per thread)

struct Params {
  const void *q_ptr = nullptr, *k_ptr = nullptr, *v_ptr = nullptr, *dout_ptr = nullptr;
  const float *g = nullptr, *h0 = nullptr, *dht = nullptr;
  const int64_t* cu = nullptr;
  void* o = nullptr;
  float* ht = nullptr;
  // backward
  float* dq_part = nullptr;   // [slices][B·T·H·K]
  float* dk_part = nullptr;   // [slices][B·T·H·K]
  float* dgt_part = nullptr;  // [slices][N·H·K]: Σ_c dht ⊙ ht over the slice's columns
  float* dov = nullptr;       // [B·T·H]: do_t · v_t over all of V
  void* dv = nullptr;
  float* dh0 = nullptr;
  int64_t b = 0, t = 0, h = 0, k = 0, v = 0, n = 0, slices = 0;
  float scale = 1;
  GlaGate gate = GlaGate::None;
};

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

template <typename T>
__device__ __forceinline__ float ldf(const void* p, int64_t i) {
  return to_f32(static_cast<const T*>(p)[i]);
}

__device__ __forceinline__ int64_t seq_bos(const Params& p, int64_t n) {
  return p.cu ? p.cu[n] : n * p.t;
}
__device__ __forceinline__ int64_t seq_eos(const Params& p, int64_t n) {
  return p.cu ? p.cu[n + 1] : (n + 1) * p.t;
}

// G = exp(log-gate) of token `tok`, head h, key dim i.
__device__ __forceinline__ float gate_exp(const Params& p, int64_t tok, int64_t h, int64_t i) {
  switch (p.gate) {
    case GlaGate::HeadConst:
      return expf(p.g[h]);
    case GlaGate::HeadScalar:
      return expf(p.g[tok * p.h + h]);
    case GlaGate::KeyVector:
      return expf(p.g[(tok * p.h + h) * p.k + i]);
    default:
      return 1.f;
  }
}

// Stages rows [K] of q / k / G for steps [t0, t0 + steps) into sm[s * K + i] (q or k: `src`;
// G: src == nullptr).
template <typename T>
__device__ void stage_rows(float* sm, const Params& p, const void* src, int64_t t0, int steps,
                           int64_t h) {
  const int64_t kk = p.k;
  for (int64_t idx = threadIdx.x; idx < steps * kk; idx += blockDim.x) {
    const int64_t s = idx / kk, i = idx % kk, tok = t0 + s;
    sm[idx] = src ? ldf<T>(src, (tok * p.h + h) * kk + i) : gate_exp(p, tok, h, i);
  }
}
// Stages the slice's columns of v or dout for steps [t0, t0 + steps) into sm[s * kBV + c].
template <typename T>
__device__ void stage_cols(float* sm, const Params& p, const void* src, int64_t t0, int steps,
                           int64_t h, int64_t c0) {
  for (int idx = threadIdx.x; idx < steps * kBV; idx += blockDim.x) {
    const int s = idx / kBV, c = idx % kBV;
    const int64_t col = c0 + c, tok = t0 + s;
    sm[idx] = col < p.v ? ldf<T>(src, (tok * p.h + h) * p.v + col) : 0.f;
  }
}

// Forward: o_t, and ht. Grid (N·H, slices).
template <typename T, int KPT>
__global__ void __launch_bounds__(kThreads) gla_recurrent_fwd_kernel(const Params p) {
  extern __shared__ float smem[];
  const int64_t kk = p.k;
  float* sq = smem;            // [kTS][K]
  float* sk = sq + kTS * kk;   // [kTS][K]
  float* sg = sk + kTS * kk;   // [kTS][K]
  float* sv = sg + kTS * kk;   // [kTS][kBV]
  float* so = sv + kTS * kBV;  // [kTS][kWarps][kBV] partial outputs
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t nh = blockIdx.x, n = nh / p.h, h = nh % p.h;
  const int64_t c0 = int64_t(blockIdx.y) * kBV, col = c0 + lane;
  const bool col_ok = col < p.v;
  const int64_t bos = seq_bos(p, n), eos = seq_eos(p, n);
  float s[KPT];
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int64_t i = w + kWarps * m;
    s[m] = (p.h0 && col_ok && i < kk) ? p.h0[((nh * kk) + i) * p.v + col] : 0.f;
  }
  for (int64_t t0 = bos; t0 < eos; t0 += kTS) {
    const int steps = int(imin(kTS, eos - t0));
    stage_rows<T>(sq, p, p.q_ptr, t0, steps, h);
    stage_rows<T>(sk, p, p.k_ptr, t0, steps, h);
    stage_rows<T>(sg, p, nullptr, t0, steps, h);
    stage_cols<T>(sv, p, p.v_ptr, t0, steps, h, c0);
    __syncthreads();
    for (int st = 0; st < steps; ++st) {
      const float vc = sv[st * kBV + lane];
      const float* qr = sq + st * kk;
      const float* kr = sk + st * kk;
      const float* gr = sg + st * kk;
      float acc = 0.f;
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        const int64_t i = w + kWarps * m;
        if (i < kk) {
          s[m] = fmaf(gr[i], s[m], kr[i] * vc);
          acc = fmaf(qr[i], s[m], acc);
        }
      }
      so[(st * kWarps + w) * kBV + lane] = acc;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < steps * kBV; idx += blockDim.x) {
      const int st = idx / kBV, c = idx % kBV;
      if (c0 + c >= p.v) continue;
      float acc = 0.f;
#pragma unroll
      for (int x = 0; x < kWarps; ++x) acc += so[(st * kWarps + x) * kBV + c];
      static_cast<T*>(p.o)[((t0 + st) * p.h + h) * p.v + c0 + c] = from_acc<T>(p.scale * acc);
    }
    // The next round's staging writes sq/sk/sg/sv only; so is rewritten after its sync.
  }
  if (p.ht && col_ok) {
#pragma unroll
    for (int m = 0; m < KPT; ++m) {
      const int64_t i = w + kWarps * m;
      if (i < kk) p.ht[((nh * kk) + i) * p.v + col] = s[m];
    }
  }
}

// Backward A (forward order): dq partials over the slice, and Σ_c dht ⊙ ht partials.
template <typename T, int KPT>
__global__ void __launch_bounds__(kThreads) gla_recurrent_bwd_kernel_dq(const Params p) {
  extern __shared__ float smem[];
  const int64_t kk = p.k;
  float* sk = smem;            // [kTS][K]
  float* sg = sk + kTS * kk;   // [kTS][K]
  float* sv = sg + kTS * kk;   // [kTS][kBV]
  float* sd = sv + kTS * kBV;  // [kTS][kBV] dout
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t nh = blockIdx.x, n = nh / p.h, h = nh % p.h;
  const int64_t c0 = int64_t(blockIdx.y) * kBV, col = c0 + lane;
  const bool col_ok = col < p.v;
  const int64_t bos = seq_bos(p, n), eos = seq_eos(p, n);
  const int64_t rows = p.b * p.t * p.h * kk;
  float* dqp = p.dq_part + int64_t(blockIdx.y) * rows;
  float s[KPT];
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int64_t i = w + kWarps * m;
    s[m] = (p.h0 && col_ok && i < kk) ? p.h0[((nh * kk) + i) * p.v + col] : 0.f;
  }
  for (int64_t t0 = bos; t0 < eos; t0 += kTS) {
    const int steps = int(imin(kTS, eos - t0));
    __syncthreads();  // the previous round's reads of shared memory are done
    stage_rows<T>(sk, p, p.k_ptr, t0, steps, h);
    stage_rows<T>(sg, p, nullptr, t0, steps, h);
    stage_cols<T>(sv, p, p.v_ptr, t0, steps, h, c0);
    stage_cols<T>(sd, p, p.dout_ptr, t0, steps, h, c0);
    __syncthreads();
    for (int st = 0; st < steps; ++st) {
      const float vc = sv[st * kBV + lane], dc = sd[st * kBV + lane];
      const float* kr = sk + st * kk;
      const float* gr = sg + st * kk;
      float* dst = dqp + ((t0 + st) * p.h + h) * kk;
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        const int64_t i = w + kWarps * m;
        if (i < kk) {                          // uniform over the warp
          const float decayed = gr[i] * s[m];  // G_t ⊙ S_{t-1}
          const float x = kern::warp_sum(dc * decayed);
          if (lane == (m & 31)) dst[i] = p.scale * x;
          s[m] = fmaf(kr[i], vc, decayed);
        }
      }
    }
  }
  if (p.dgt_part) {
    float* dst = p.dgt_part + int64_t(blockIdx.y) * (p.n * p.h * kk) + nh * kk;
#pragma unroll
    for (int m = 0; m < KPT; ++m) {
      const int64_t i = w + kWarps * m;
      if (i < kk) {
        const float d = col_ok ? p.dht[((nh * kk) + i) * p.v + col] : 0.f;
        const float x = kern::warp_sum(d * s[m]);
        if (lane == (m & 31)) dst[i] = x;
      }
    }
  }
}

// Backward B (reverse order): dk partials over the slice, dv, dh0.
template <typename T, int KPT>
__global__ void __launch_bounds__(kThreads) gla_recurrent_bwd_kernel_dkv(const Params p) {
  extern __shared__ float smem[];
  const int64_t kk = p.k;
  float* sq = smem;             // [kTS][K]
  float* sk = sq + kTS * kk;    // [kTS][K]
  float* sg = sk + kTS * kk;    // [kTS][K]
  float* sv = sg + kTS * kk;    // [kTS][kBV]
  float* sd = sv + kTS * kBV;   // [kTS][kBV] dout
  float* sdv = sd + kTS * kBV;  // [kTS][kWarps][kBV] partial dv
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t nh = blockIdx.x, n = nh / p.h, h = nh % p.h;
  const int64_t c0 = int64_t(blockIdx.y) * kBV, col = c0 + lane;
  const bool col_ok = col < p.v;
  const int64_t bos = seq_bos(p, n), eos = seq_eos(p, n);
  const int64_t rows = p.b * p.t * p.h * kk;
  float* dkp = p.dk_part ? p.dk_part + int64_t(blockIdx.y) * rows : nullptr;
  float ds[KPT];
#pragma unroll
  for (int m = 0; m < KPT; ++m) {
    const int64_t i = w + kWarps * m;
    ds[m] = (p.dht && col_ok && i < kk) ? p.dht[((nh * kk) + i) * p.v + col] : 0.f;
  }
  for (int64_t t1 = eos; t1 > bos; t1 -= kTS) {
    const int64_t t0 = imax(bos, t1 - kTS);
    const int steps = int(t1 - t0);
    stage_rows<T>(sq, p, p.q_ptr, t0, steps, h);
    stage_rows<T>(sk, p, p.k_ptr, t0, steps, h);
    stage_rows<T>(sg, p, nullptr, t0, steps, h);
    stage_cols<T>(sv, p, p.v_ptr, t0, steps, h, c0);
    stage_cols<T>(sd, p, p.dout_ptr, t0, steps, h, c0);
    __syncthreads();
    for (int st = steps - 1; st >= 0; --st) {
      const float vc = sv[st * kBV + lane], dc = p.scale * sd[st * kBV + lane];
      const float* qr = sq + st * kk;
      const float* kr = sk + st * kk;
      const float* gr = sg + st * kk;
      float* dst = dkp ? dkp + ((t0 + st) * p.h + h) * kk : nullptr;
      float dv_acc = 0.f;
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        const int64_t i = w + kWarps * m;
        if (i < kk) {
          if (dst) {  // dk partial from D only; scale q_t[i] (do_t · v_t) is added later
            const float x = kern::warp_sum(ds[m] * vc);
            if (lane == (m & 31)) dst[i] = x;
          }
          ds[m] = fmaf(qr[i], dc, ds[m]);  // dS_t = G_{t+1} ⊙ dS_{t+1} + scale q_tᵀ do_t
          dv_acc = fmaf(kr[i], ds[m], dv_acc);
          ds[m] *= gr[i];  // carry G_t ⊙ dS_t to step t - 1
        }
      }
      sdv[(st * kWarps + w) * kBV + lane] = dv_acc;
    }
    __syncthreads();
    if (p.dv) {
      for (int idx = threadIdx.x; idx < steps * kBV; idx += blockDim.x) {
        const int st = idx / kBV, c = idx % kBV;
        if (c0 + c >= p.v) continue;
        float acc = 0.f;
#pragma unroll
        for (int x = 0; x < kWarps; ++x) acc += sdv[(st * kWarps + x) * kBV + c];
        static_cast<T*>(p.dv)[((t0 + st) * p.h + h) * p.v + c0 + c] = from_acc<T>(acc);
      }
    }
    __syncthreads();  // shared memory is restaged next round
  }
  if (p.dh0 && col_ok) {
#pragma unroll
    for (int m = 0; m < KPT; ++m) {
      const int64_t i = w + kWarps * m;
      if (i < kk) p.dh0[((nh * kk) + i) * p.v + col] = ds[m];
    }
  }
}

// Sum of the slice partials of row element `idx`, in slice order.
__device__ __forceinline__ float sum_slices(const float* part, int64_t slices, int64_t rows,
                                            int64_t idx) {
  float x = 0.f;
  for (int64_t s = 0; s < slices; ++s) x += part[s * rows + idx];
  return x;
}

// do_t · v_t over all of V per (token, head): one warp per row, fixed order.
template <typename T>
__global__ void gla_recurrent_bwd_kernel_dov(const Params p) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= p.b * p.t * p.h) return;
  float x = 0.f;
  for (int64_t j = lane; j < p.v; j += 32)
    x = fmaf(ldf<T>(p.dout_ptr, row * p.v + j), ldf<T>(p.v_ptr, row * p.v + j), x);
  x = kern::warp_sum(x);
  if (lane == 0) p.dov[row] = x;
}

// Combine: dq, dk from their slice partials (grid-stride over B·T·H·K elements).
template <typename T>
__global__ void gla_recurrent_bwd_kernel_combine(const Params p, T* dq, T* dk) {
  const int64_t rows = p.b * p.t * p.h * p.k;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < rows;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const float dov = p.scale * p.dov[idx / p.k];
    if (dq)
      dq[idx] =
          from_acc<T>(sum_slices(p.dq_part, p.slices, rows, idx) + ldf<T>(p.k_ptr, idx) * dov);
    if (dk)
      dk[idx] =
          from_acc<T>(sum_slices(p.dk_part, p.slices, rows, idx) + ldf<T>(p.q_ptr, idx) * dov);
  }
}

// dg by the reverse cumulative sum over time of q ⊙ dq − k ⊙ dk (fp64), from Σ dht ⊙ ht. One
// block per (sequence, head), one thread per key dim. KeyVector writes dg; HeadScalar writes the
// per-key values to `out` [B·T·H·K] for the row sums below.
template <typename T>
__global__ void gla_recurrent_bwd_kernel_dg(const Params p, float* out) {
  const int64_t nh = blockIdx.x, n = nh / p.h, h = nh % p.h, kk = p.k;
  const int64_t rows = p.b * p.t * p.h * kk;
  const int64_t bos = seq_bos(p, n), eos = seq_eos(p, n);
  for (int64_t i = threadIdx.x; i < kk; i += blockDim.x) {
    double acc = 0;
    if (p.dgt_part) acc = double(sum_slices(p.dgt_part, p.slices, p.n * p.h * kk, nh * kk + i));
    for (int64_t tok = eos - 1; tok >= bos; --tok) {
      const int64_t idx = (tok * p.h + h) * kk + i;
      // The parts of dq and dk without the k_t v_t / scale q_tᵀ do_t term: that term adds
      // scale q k (do · v) to both products and cancels exactly, so it is left out.
      const float dq = sum_slices(p.dq_part, p.slices, rows, idx);
      const float dk = sum_slices(p.dk_part, p.slices, rows, idx);
      acc += double(ldf<T>(p.q_ptr, idx)) * double(dq) - double(ldf<T>(p.k_ptr, idx)) * double(dk);
      out[idx] = float(acc);
    }
  }
}

// HeadScalar: dg[tok, h] = Σ_i per-key values, one warp per (token, head), fixed order.
__global__ void gla_recurrent_bwd_kernel_dg_rows(const Params p, const float* per_key, float* dg) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= p.b * p.t * p.h) return;
  float x = 0.f;
  for (int64_t i = lane; i < p.k; i += 32) x += per_key[row * p.k + i];
  x = kern::warp_sum(x);
  if (lane == 0) dg[row] = x;
}

Params make_params(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                   const Tensor& h0, const Tensor& cu, GlaGate gate, double scale) {
  Params p;
  p.q_ptr = q.data_ptr();
  p.k_ptr = k.data_ptr();
  p.v_ptr = v.data_ptr();
  p.g = gate == GlaGate::None ? nullptr : g.data<float>();
  p.h0 = h0.defined() ? h0.data<float>() : nullptr;
  p.cu = cu.defined() ? cu.data<int64_t>() : nullptr;
  p.b = q.size(0);
  p.t = q.size(1);
  p.h = q.size(2);
  p.k = q.size(3);
  p.v = v.size(3);
  p.n = cu.defined() ? cu.size(0) - 1 : p.b;
  p.slices = (p.v + kBV - 1) / kBV;
  p.scale = float(gla_scale(scale, p.k));
  p.gate = gate;
  return p;
}

// Calls f.template operator()<KPT>() with the smallest register tile that holds K rows.
template <typename F>
void dispatch_kpt(int64_t k, F&& f) {
  if (k <= 64) {
    f(std::integral_constant<int, 8>{});
  } else if (k <= 128) {
    f(std::integral_constant<int, 16>{});
  } else {
    f(std::integral_constant<int, 32>{});
  }
}

dim3 grid_of(const Params& p) {
  return dim3(unsigned(p.n * p.h), unsigned(p.slices));
}

template <typename T>
void fwd(const GlaFwdArgs& a, const Params& p, cudaStream_t st) {
  const size_t smem = sizeof(float) * size_t(3 * kTS * p.k + kTS * kBV + kTS * kWarps * kBV);
  dispatch_kpt(p.k, [&](auto kpt) {
    gla_recurrent_fwd_kernel<T, decltype(kpt)::value><<<grid_of(p), kThreads, smem, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
  });
  (void)a;
}

template <typename T>
void bwd(const GlaBwdArgs& a, Params p, cudaStream_t st) {
  const Device dev = a.q.device();
  const bool want_dg =
      a.dg.defined() && (a.gate == GlaGate::HeadScalar || a.gate == GlaGate::KeyVector);
  const int64_t rows = p.b * p.t * p.h * p.k;
  // Scratch (fp32): slice partials of dq and dk, and of Σ dht ⊙ ht.
  Tensor dq_part, dk_part, dgt_part, per_key, dov;
  if (a.dq.defined() || a.dk.defined()) {
    dov = Tensor::empty({p.b * p.t * p.h}, DType::F32, dev);
    p.dov = dov.data<float>();
  }
  if (a.dq.defined() || want_dg) {
    dq_part = Tensor::empty({p.slices, rows}, DType::F32, dev);
    p.dq_part = dq_part.data<float>();
  }
  if (a.dk.defined() || want_dg) {
    dk_part = Tensor::empty({p.slices, rows}, DType::F32, dev);
    p.dk_part = dk_part.data<float>();
  }
  if (want_dg && a.dht.defined()) {
    dgt_part = Tensor::empty({p.slices, p.n * p.h * p.k}, DType::F32, dev);
    p.dgt_part = dgt_part.data<float>();
  }
  p.dv = a.dv.defined() ? a.dv.data_ptr() : nullptr;
  p.dh0 = a.dh0.defined() ? a.dh0.data<float>() : nullptr;
  dispatch_kpt(p.k, [&](auto kpt) {
    constexpr int KPT = decltype(kpt)::value;
    if (p.dq_part) {
      const size_t smem = sizeof(float) * size_t(2 * kTS * p.k + 2 * kTS * kBV);
      gla_recurrent_bwd_kernel_dq<T, KPT><<<grid_of(p), kThreads, smem, st>>>(p);
      SEQMIX_LAUNCH_CHECK();
    }
    if (p.dk_part || p.dv || p.dh0) {
      const size_t smem =
          sizeof(float) * size_t(3 * kTS * p.k + 2 * kTS * kBV + kTS * kWarps * kBV);
      gla_recurrent_bwd_kernel_dkv<T, KPT><<<grid_of(p), kThreads, smem, st>>>(p);
      SEQMIX_LAUNCH_CHECK();
    }
  });
  if (rows == 0) return;
  T* dq = a.dq.defined() ? a.dq.data<T>() : nullptr;
  T* dk = a.dk.defined() ? a.dk.data<T>() : nullptr;
  if (dq || dk) {
    const int64_t n_rows = p.b * p.t * p.h, per_block = 8;
    gla_recurrent_bwd_kernel_dov<T>
        <<<unsigned((n_rows + per_block - 1) / per_block), 32 * per_block, 0, st>>>(p);
    SEQMIX_LAUNCH_CHECK();
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>((rows + threads - 1) / threads, 65536);
    gla_recurrent_bwd_kernel_combine<T><<<unsigned(blocks), threads, 0, st>>>(p, dq, dk);
    SEQMIX_LAUNCH_CHECK();
  }
  if (want_dg) {
    float* out = a.dg.data<float>();
    if (a.gate == GlaGate::HeadScalar) {
      per_key = Tensor::empty({rows}, DType::F32, dev);
      out = per_key.data<float>();
    }
    const int threads = int(std::min<int64_t>(256, (p.k + 31) / 32 * 32));
    gla_recurrent_bwd_kernel_dg<T><<<unsigned(p.n * p.h), threads, 0, st>>>(p, out);
    SEQMIX_LAUNCH_CHECK();
    if (a.gate == GlaGate::HeadScalar) {
      const int64_t n_rows = p.b * p.t * p.h, per_block = 8;
      gla_recurrent_bwd_kernel_dg_rows<<<unsigned((n_rows + per_block - 1) / per_block),
                                         32 * per_block, 0, st>>>(p, out, a.dg.data<float>());
      SEQMIX_LAUNCH_CHECK();
    }
  }
}

}  // namespace

Support gla_recurrent_supports(const GlaFwdArgs& a) {
  if (!a.q.device().is_cuda()) return Support::no("the recurrent CUDA kernels need CUDA tensors");
  const DType t = a.q.dtype();
  if (t != DType::BF16 && t != DType::F32)
    return Support::no(std::string("the recurrent CUDA kernels take bf16 or f32 inputs, got ") +
                       dtype_name(t));
  if (a.q.dim() != 4 || a.v.dim() != 4) return Support::yes();  // shapes are validated apart
  if (a.q.size(3) > kMaxDim || a.v.size(3) > kMaxDim)
    return Support::no("the recurrent CUDA kernels support K, V <= 256, got K=" +
                       std::to_string(a.q.size(3)) + " V=" + std::to_string(a.v.size(3)));
  const int64_t n = a.cu_seqlens.defined() ? a.cu_seqlens.numel() - 1 : a.q.size(0);
  if (n * a.q.size(2) > 0x7fffffffLL)
    return Support::no("the recurrent CUDA kernels take at most 2^31 - 1 (sequence, head) pairs");
  return Support::yes();
}

void gla_recurrent_fwd_cuda(const GlaFwdArgs& a) {
  Params p = make_params(a.q, a.k, a.v, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  if (p.n * p.h == 0) return;
  p.o = a.o.data_ptr();
  p.ht = a.ht.defined() ? a.ht.data<float>() : nullptr;
  cudaStream_t st = cuda::current_stream(a.q.device().index);
  if (a.q.dtype() == DType::F32)
    fwd<float>(a, p, st);
  else if (a.q.dtype() == DType::BF16)
    fwd<bf16>(a, p, st);
  else
    SEQMIX_THROW_PLAIN(Unsupported, "gla: the recurrent CUDA kernels take bf16 or f32 inputs");
}

void gla_recurrent_bwd_cuda(const GlaBwdArgs& a) {
  Params p = make_params(a.q, a.k, a.v, a.g, a.h0, a.cu_seqlens, a.gate, a.scale);
  if (p.n * p.h == 0) return;
  p.dout_ptr = a.dout.data_ptr();
  p.dht = a.dht.defined() ? a.dht.data<float>() : nullptr;
  cudaStream_t st = cuda::current_stream(a.q.device().index);
  if (a.q.dtype() == DType::F32)
    bwd<float>(a, p, st);
  else if (a.q.dtype() == DType::BF16)
    bwd<bf16>(a, p, st);
  else
    SEQMIX_THROW_PLAIN(Unsupported, "gla: the recurrent CUDA kernels take bf16 or f32 inputs");
}

}  // namespace seqmix
