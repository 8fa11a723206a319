// Sequence / chunk bookkeeping of the chunked kernels (gla, delta_rule). Rows are flattened
// (b * T + t) for a dense batch or packed by cu_seqlens; chunks of C steps never cross a sequence.
// A packed batch needs the device index `seq` / `chunks` ([N + 1] row and chunk offsets, built on
// the stream by a one-thread kernel); a dense batch needs none (seq == nullptr): its offsets are
// n * T and n * ⌈T / C⌉ (`tlen`, `cps`), so its kernels run without that launch.
// Include only from .cu files. `P` is a family's Params with seq, chunks, n, tlen, cps.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace seqmix {

// Row offset of sequence i (i <= n).
template <class P>
__device__ __forceinline__ int64_t seq_row(const P& p, int64_t i) {
  return p.seq ? p.seq[i] : i * p.tlen;
}

// Chunk offset of sequence i (i <= n).
template <class P>
__device__ __forceinline__ int64_t seq_chunk(const P& p, int64_t i) {
  return p.seq ? p.chunks[i] : i * p.cps;
}

// Sequence n of chunk slot x (largest n with chunk offset <= x), or -1 past the last chunk.
template <class P>
__device__ __forceinline__ int64_t find_seq(const P& p, int64_t x) {
  if (!p.seq) {  // 32-bit: chunk slots are grid indices (< 2^31); no 64-bit division call
    const uint32_t xs = uint32_t(x), cps = uint32_t(p.cps);
    return x < p.n * p.cps ? int64_t(xs / cps) : -1;
  }
  if (x >= p.chunks[p.n]) return -1;
  int64_t lo = 0, hi = p.n - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.chunks[mid] <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace seqmix

namespace seqmix::kern {

// Fills the device index of a packed batch on stream `st`: seq[i] = cu[i] (i <= n) and the chunk
// offsets chunks[0] = 0, chunks[i + 1] = chunks[i] + ⌈(cu[i + 1] − cu[i]) / chunk⌉. `cu` is the
// I64 cu_seqlens on the device. One thread (n is the number of sequences, small). Dense batches
// need no index (seq_row, seq_chunk, find_seq above).
void build_seq_index(const int64_t* cu, int64_t n, int64_t chunk, int64_t* seq, int64_t* chunks,
                     cudaStream_t st);

}  // namespace seqmix::kern
