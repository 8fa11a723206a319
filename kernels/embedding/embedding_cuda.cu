// CUDA embedding.
//  forward:  one block per row (grid-stride), threads over columns, converting to out's dtype.
//  backward: deterministic without atomics: (index, position) pairs are radix-sorted by index
//            (CUB, stable, so positions stay increasing within an index); the first position of
//            each run of equal indices finds the run's end by binary search and adds the rows of
//            dout in position order into dweight, one thread per column.
#include <cuda_runtime.h>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "core/ops/convert.h"
#include "kernels/embedding/embedding.h"

namespace seqmix {
namespace {

template <typename W, typename O, typename I>
__global__ void embedding_fwd_kernel(const W* __restrict__ w, const I* __restrict__ idx,
                                     O* __restrict__ out, int64_t n, int64_t c, int64_t v) {
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const int64_t k = int64_t(idx[r]);
    const bool ok = k >= 0 && k < v;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x)
      out[r * c + j] = ok ? ops::convert<O>(w[k * c + j]) : ops::convert<O>(NAN);
  }
}

template <typename I>
__global__ void embedding_keys_kernel(const I* __restrict__ idx, uint32_t* __restrict__ keys,
                                      uint32_t* __restrict__ pos, int64_t n, int64_t v) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t k = int64_t(idx[i]);
    keys[i] = (k >= 0 && k < v) ? uint32_t(k) : uint32_t(v);  // invalid -> sentinel v
    pos[i] = uint32_t(i);
  }
}

template <typename G, typename D>
__global__ void embedding_bwd_runs_kernel(const uint32_t* __restrict__ keys,
                                          const uint32_t* __restrict__ pos,
                                          const G* __restrict__ dout, D* __restrict__ dw, int64_t n,
                                          int64_t c, int64_t v) {
  using A = acc_t<D>;
  const int64_t col = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const uint32_t key = keys[i];
    if ((i > 0 && keys[i - 1] == key) || key >= uint32_t(v)) continue;  // not a run start
    // End of the run: first j > i with keys[j] != key (keys are sorted).
    int64_t lo = i + 1, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi) >> 1;
      if (keys[mid] == key)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (col >= c) continue;
    A acc = A(0);
#pragma unroll 8
    for (int64_t j = i; j < lo; ++j) acc += A(to_acc<acc_t<G>>(dout[int64_t(pos[j]) * c + col]));
    D* d = dw + int64_t(key) * c + col;
    *d = from_acc<D>(to_acc<A>(*d) + acc);
  }
}

int row_grid(int64_t n) {
  return int(std::clamp<int64_t>(n, 1, int64_t(1) << 20));
}

}  // namespace

void embedding_fwd_cuda(const EmbeddingFwdArgs& a) {
  const int64_t n = a.out.size(0), c = a.out.size(1), v = a.weight.size(0);
  if (n == 0 || c == 0) return;
  cudaStream_t st = cuda::current_stream(a.out.device().index);
  const int threads = c >= 256 ? 256 : 128;
  SEQMIX_DISPATCH_FLOAT(a.weight.dtype(), "embedding", W, {
    SEQMIX_DISPATCH_FLOAT(a.out.dtype(), "embedding", O, {
      SEQMIX_DISPATCH_INDEX(a.indices.dtype(), "embedding", I, {
        embedding_fwd_kernel<W, O, I><<<row_grid(n), threads, 0, st>>>(
            a.weight.data<W>(), a.indices.data<I>(), a.out.data<O>(), n, c, v);
        SEQMIX_LAUNCH_CHECK();
      });
    });
  });
}

void embedding_bwd_cuda(const EmbeddingBwdArgs& a) {
  const int64_t n = a.dout.size(0), c = a.dout.size(1), v = a.dweight.size(0);
  if (n == 0 || c == 0) return;
  const Device dev = a.dout.device();
  cudaStream_t st = cuda::current_stream(dev.index);
  if (n >= (int64_t(1) << 32))
    SEQMIX_THROW_PLAIN(Unsupported, "embedding_bwd: more than 2^32 rows");
  Tensor buf = Tensor::empty({4 * n}, DType::I32, dev);
  uint32_t* keys = reinterpret_cast<uint32_t*>(buf.data_ptr());
  uint32_t* pos = keys + n;
  uint32_t* keys_sorted = keys + 2 * n;
  uint32_t* pos_sorted = keys + 3 * n;
  SEQMIX_DISPATCH_INDEX(a.indices.dtype(), "embedding_bwd", I, {
    embedding_keys_kernel<I><<<int(std::clamp<int64_t>((n + 255) / 256, 1, 1 << 20)), 256, 0, st>>>(
        a.indices.data<I>(), keys, pos, n, v);
    SEQMIX_LAUNCH_CHECK();
  });
  int end_bit = 1;
  while ((int64_t(1) << end_bit) <= v) ++end_bit;  // keys are in [0, v]
  size_t temp_bytes = 0;
  SEQMIX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, keys_sorted, pos,
                                                    pos_sorted, n, 0, end_bit, st));
  Tensor temp = Tensor::empty({int64_t(std::max<size_t>(temp_bytes, 1))}, DType::U8, dev);
  SEQMIX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys, keys_sorted,
                                                    pos, pos_sorted, n, 0, end_bit, st));
  const int threads = c >= 128 ? 128 : 32;
  const dim3 grid(unsigned(row_grid(n)), unsigned((c + threads - 1) / threads));
  SEQMIX_DISPATCH_FLOAT(a.dout.dtype(), "embedding_bwd", G, {
    SEQMIX_DISPATCH_FLOAT(a.dweight.dtype(), "embedding_bwd", D, {
      embedding_bwd_runs_kernel<G, D><<<grid, threads, 0, st>>>(
          keys_sorted, pos_sorted, a.dout.data<G>(), a.dweight.data<D>(), n, c, v);
      SEQMIX_LAUNCH_CHECK();
    });
  });
}

}  // namespace seqmix
