// Internal interface between the optimizer dispatchers (grad_norm.cpp, adamw.cpp) and their CUDA
// launchers (optim_cuda.cu): the multi-tensor chunk tables and the per-element AdamW math shared
// by the CPU loop and the CUDA kernel. fmt-free (included from .cu files).
//
// Every tensor in a list is cut into chunks of at most kOptimChunk elements; a chunk table is
// built once (at construction) and, on the GPU, copied to the device once, so a step launches
// one kernel over all chunks and copies nothing from the host.
#pragma once
#include <cstdint>

#include "core/macros.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

namespace seqmix::optim_detail {

constexpr int64_t kOptimChunk = 32768;  // elements per chunk (a multiple of 4)

struct NormChunk {
  const float* g;
  int64_t n;
};

struct AdamWChunk {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  int32_t decay;  // 1: apply weight decay
  int32_t vec;    // 1: p, g, m, v all 16-byte aligned (float4 path)
};

// Scalars of one step, passed by value as kernel arguments. Derived values (1 - beta, bias
// corrections) are computed once in double on the host or per block on the device, identically.
struct AdamWScalars {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay;
  double beta1_d, beta2_d;
};

// b^t by binary exponentiation in double: the same IEEE operations on host and device, so the
// bias corrections (and hence the whole update) are bit-identical on CPU and GPU.
SEQMIX_HD inline double pow_int(double b, int64_t t) {
  double r = 1.0;
  while (t > 0) {
    if (t & 1) r *= b;
    b *= b;
    t >>= 1;
  }
  return r;
}

// Rounded single operations: on the device explicit _rn intrinsics (no FMA contraction), on the
// host plain operators (host code is compiled with -ffp-contract=off).
SEQMIX_HD SEQMIX_FORCE_INLINE float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SEQMIX_HD SEQMIX_FORCE_INLINE float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
SEQMIX_HD SEQMIX_FORCE_INLINE float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
SEQMIX_HD SEQMIX_FORCE_INLINE float f_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
SEQMIX_HD SEQMIX_FORCE_INLINE float f_sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return __builtin_sqrtf(a);
#endif
}

// One AdamW element update (formula in adamw.h). bc1 = 1 - beta1^t, bc2 = 1 - beta2^t (as f32),
// wd = weight decay of this tensor (0 when it is not decayed).
SEQMIX_HD SEQMIX_FORCE_INLINE void adamw_element(float& p, float graw, float& m, float& v,
                                                 float scale, float bc1, float bc2, float wd,
                                                 const AdamWScalars& s) {
  const float g = f_mul(graw, scale);
  m = f_add(f_mul(s.beta1, m), f_mul(s.one_minus_beta1, g));
  v = f_add(f_mul(s.beta2, v), f_mul(s.one_minus_beta2, f_mul(g, g)));
  const float mhat = f_div(m, bc1), vhat = f_div(v, bc2);
  float upd = f_div(mhat, f_add(f_sqrt(vhat), s.eps));
  if (wd != 0.0f) upd = f_add(upd, f_mul(wd, p));
  p = f_sub(p, f_mul(s.lr, upd));
}

// ---- CUDA launchers (optim_cuda.cu; CUDA builds only). All enqueue on `stream`. ----
// partials[c] = sum over chunk c of g^2 (fp64), one block per chunk.
void grad_norm_partials_cuda(const NormChunk* chunks, int64_t nchunks, double* partials,
                             cudaStream_t stream);
// Sums partials[0..nchunks) in a fixed tree (fp64) and writes norm, scale and the non-finite flag.
void grad_norm_finalize_cuda(const double* partials, int64_t nchunks, double max_norm, float* norm,
                             float* scale, int32_t* nonfinite, cudaStream_t stream);
// One launch over all chunks. scale / nonfinite may be null (1 / 0). count_in holds the number of
// applied steps before this one; block 0 writes count_out = count_in + (skipped ? 0 : 1).
void adamw_step_cuda(const AdamWChunk* chunks, int64_t nchunks, const AdamWScalars& s,
                     const float* scale, const int32_t* nonfinite, const int64_t* count_in,
                     int64_t* count_out, cudaStream_t stream);

}  // namespace seqmix::optim_detail
