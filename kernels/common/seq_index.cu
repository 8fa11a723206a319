// The device index of packed batches for the chunked kernels (see seq_index.cuh).
#include "kernels/common/seq_index.cuh"

#include "core/cuda/cuda_check.h"

namespace seqmix::kern {
namespace {

__global__ void seq_index_kernel(const int64_t* cu, int64_t n, int64_t chunk, int64_t* seq,
                                 int64_t* chunks) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  for (int64_t i = 0; i <= n; ++i) seq[i] = cu[i];
  chunks[0] = 0;
  for (int64_t i = 0; i < n; ++i)
    chunks[i + 1] = chunks[i] + (seq[i + 1] - seq[i] + chunk - 1) / chunk;
}

}  // namespace

void build_seq_index(const int64_t* cu, int64_t n, int64_t chunk, int64_t* seq, int64_t* chunks,
                     cudaStream_t st) {
  seq_index_kernel<<<1, 1, 0, st>>>(cu, n, chunk, seq, chunks);
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace seqmix::kern
