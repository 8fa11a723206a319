// Portable qualifiers shared by host and device code. Safe to include from .cu files.
#pragma once

#if defined(__CUDACC__)
#define SEQMIX_HD __host__ __device__
#define SEQMIX_DEVICE __device__
#else
#define SEQMIX_HD
#define SEQMIX_DEVICE
#endif

#define SEQMIX_FORCE_INLINE inline __attribute__((always_inline))

// Forward declaration so public headers can name CUDA streams without including the runtime.
typedef struct CUstream_st* cudaStream_t;

// Loop unrolling hint for code shared by host and device (only nvcc acts on it).
#if defined(__CUDACC__)
#define SEQMIX_UNROLL _Pragma("unroll")
#else
#define SEQMIX_UNROLL
#endif
