// CUDA reductions over x viewed as [outer, R, inner], fp32 accumulation (fp64 for f64). Four
// kernel shapes, all with a fixed combination order (deterministic, no atomics):
//  - short rows (inner == 1, R <= 256): one warp per row, a shuffle tree;
//  - rows (inner == 1): one block per row, strided per-thread accumulation, then a shuffle tree
//    within warps and a tree over warps;
//  - columns (inner > 1): 32 columns x 8 row-slices per block, coalesced along inner, the 8
//    partial states merged in order through shared memory;
//  - few long rows (inner == 1, outer <= 256, R > 64K; the whole tensor is outer == 1):
//    fixed-size chunks of each row reduced by many blocks into partial states, then merged in
//    chunk order by one block per row.
// The order depends on the shape only, so results repeat bit for bit; it is not the same for
// every shape (a row's chunk size depends on how many rows are reduced with it).
#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/dispatch.h"
#include "core/ops/reduce_functors.h"
#include "core/ops/reduce_impl.h"
#include "core/tensor.h"

namespace seqmix::ops::impl {
namespace {

using red::ArgState;
using red::LseState;
using red::SumState;

template <typename A>
__device__ SumState<A> shfl_down(SumState<A> s, int o) {
  return {__shfl_down_sync(0xffffffffu, s.s, o)};
}
template <typename A>
__device__ ArgState<A> shfl_down(ArgState<A> s, int o) {
  return {__shfl_down_sync(0xffffffffu, s.v, o),
          (int64_t)__shfl_down_sync(0xffffffffu, (long long)s.i, o)};
}
template <typename A>
__device__ LseState<A> shfl_down(LseState<A> s, int o) {
  return {__shfl_down_sync(0xffffffffu, s.m, o), __shfl_down_sync(0xffffffffu, s.s, o)};
}

// Tree over the 32 lanes; the result is valid in lane 0.
template <typename Red, typename S>
__device__ S warp_merge(S st) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) st = Red::merge(st, shfl_down(st, o));
  return st;
}

// Tree over the block (blockDim.x a multiple of 32); valid in thread 0. `smem` holds 32 states.
template <typename Red, typename S>
__device__ S block_merge(S st, S* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  st = warp_merge<Red>(st);
  if (nwarps == 1) return st;
  if (lane == 0) smem[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < nwarps ? smem[lane] : Red::init();
    st = warp_merge<Red>(st);
  }
  __syncthreads();
  return st;
}

template <ReduceOp OP>
constexpr bool kHasIndex = OP == ReduceOp::Max || OP == ReduceOp::Min;

template <ReduceOp OP, typename T>
__global__ void reduce_rows_kernel(const T* __restrict__ x, T* __restrict__ out,
                                   int64_t* __restrict__ idx, int64_t outer, int64_t r) {
  using A = acc_t<T>;
  using Red = red::Reducer<OP, A>;
  using S = typename Red::State;
  __shared__ S smem[32];
  for (int64_t row = blockIdx.x; row < outer; row += gridDim.x) {
    const T* p = x + row * r;
    S st = Red::init();
    for (int64_t k = threadIdx.x; k < r; k += blockDim.x) Red::push(st, to_acc<A>(p[k]), k);
    st = block_merge<Red>(st, smem);
    if (threadIdx.x == 0) {
      out[row] = from_acc<T>(Red::finish(st, r));
      if constexpr (kHasIndex<OP>) {
        if (idx) idx[row] = st.i;
      }
    }
  }
}

// Short rows (inner == 1, R <= kWarpRowMax): one warp per row, kWarpRows rows per block (one
// 64-thread block per 64-element row kept most of each block idle).
constexpr int kWarpRows = 8;
constexpr int64_t kWarpRowMax = 256;

template <ReduceOp OP, typename T>
__global__ void __launch_bounds__(kWarpRows * 32)
    reduce_rows_warp_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t* __restrict__ idx,
                            int64_t outer, int64_t r) {
  using A = acc_t<T>;
  using Red = red::Reducer<OP, A>;
  using S = typename Red::State;
  const int lane = threadIdx.x & 31;
  for (int64_t row = int64_t(blockIdx.x) * kWarpRows + (threadIdx.x >> 5); row < outer;
       row += int64_t(gridDim.x) * kWarpRows) {
    const T* p = x + row * r;
    S st = Red::init();
    for (int64_t k = lane; k < r; k += 32) Red::push(st, to_acc<A>(p[k]), k);
    st = warp_merge<Red>(st);
    if (lane == 0) {
      out[row] = from_acc<T>(Red::finish(st, r));
      if constexpr (kHasIndex<OP>) {
        if (idx) idx[row] = st.i;
      }
    }
  }
}

constexpr int kColX = 32, kColY = 8;

template <ReduceOp OP, typename T>
__global__ void __launch_bounds__(kColX* kColY)
    reduce_cols_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t* __restrict__ idx,
                       int64_t outer, int64_t r, int64_t inner) {
  using A = acc_t<T>;
  using Red = red::Reducer<OP, A>;
  using S = typename Red::State;
  __shared__ S smem[kColY][kColX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * kColX + tx;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    S st = Red::init();
    if (c < inner) {
      const T* p = x + o * r * inner + c;
      for (int64_t k = ty; k < r; k += kColY) Red::push(st, to_acc<A>(p[k * inner]), k);
    }
    smem[ty][tx] = st;
    __syncthreads();
    if (ty == 0 && c < inner) {
#pragma unroll
      for (int j = 1; j < kColY; ++j) st = Red::merge(st, smem[j][tx]);
      out[o * inner + c] = from_acc<T>(Red::finish(st, r));
      if constexpr (kHasIndex<OP>) {
        if (idx) idx[o * inner + c] = st.i;
      }
    }
    __syncthreads();
  }
}

constexpr int kChunkThreads = 256;
// Rows (inner == 1) longer than 64K elements are reduced in chunks by many blocks when there are at
// most this many of them (one block per row would leave most SMs idle: 12 rows of 1M elements
// took 790 us on an H100 as 12 blocks).
constexpr int64_t kChunkedMaxRows = 256;

// Chunked rows (inner == 1, few long rows): block (part, row) reduces elements [part·chunk,
// (part + 1)·chunk) of its row into partial[row·nparts + part].
template <ReduceOp OP, typename T, typename S>
__global__ void __launch_bounds__(kChunkThreads)
    reduce_chunks_kernel(const T* __restrict__ x, S* __restrict__ partial, int64_t r,
                         int64_t chunk) {
  using A = acc_t<T>;
  using Red = red::Reducer<OP, A>;
  __shared__ S smem[32];
  const int64_t row = blockIdx.y;
  const T* p = x + row * r;
  const int64_t lo = int64_t(blockIdx.x) * chunk;
  const int64_t hi = lo + chunk < r ? lo + chunk : r;
  S st = Red::init();
  for (int64_t k = lo + threadIdx.x; k < hi; k += kChunkThreads) Red::push(st, to_acc<A>(p[k]), k);
  st = block_merge<Red>(st, smem);
  if (threadIdx.x == 0) partial[row * gridDim.x + blockIdx.x] = st;
}

// Block `row` merges its row's partial states (the tree order is fixed by nparts).
template <ReduceOp OP, typename T, typename S>
__global__ void __launch_bounds__(kChunkThreads)
    reduce_partials_kernel(const S* __restrict__ partial, int nparts, T* __restrict__ out,
                           int64_t* __restrict__ idx, int64_t r) {
  using A = acc_t<T>;
  using Red = red::Reducer<OP, A>;
  __shared__ S smem[32];
  const int64_t row = blockIdx.x;
  S st = Red::init();
  for (int k = threadIdx.x; k < nparts; k += kChunkThreads)
    st = Red::merge(st, partial[row * nparts + k]);
  st = block_merge<Red>(st, smem);
  if (threadIdx.x == 0) {
    out[row] = from_acc<T>(Red::finish(st, r));
    if constexpr (kHasIndex<OP>) {
      if (idx) idx[row] = st.i;
    }
  }
}

template <ReduceOp OP, typename T>
void reduce_launch(const T* x, T* out, int64_t* idx, int64_t outer, int64_t r, int64_t inner,
                   cudaStream_t stream) {
  using Red = red::Reducer<OP, acc_t<T>>;
  using S = typename Red::State;
  constexpr int64_t kMaxGrid = int64_t(1) << 20;
  if (inner == 1 && outer <= kChunkedMaxRows && r > (int64_t(1) << 16)) {
    // Few long rows: chunks of at least 16K elements, about 1024 blocks in all (the whole-tensor
    // case, outer == 1: at most 1024 chunks), then one block per row merges its chunks in order.
    const int64_t parts_goal = std::max<int64_t>(1, 1024 / outer);
    const int64_t chunk = std::max<int64_t>(int64_t(1) << 14, (r + parts_goal - 1) / parts_goal);
    const int nparts = int((r + chunk - 1) / chunk);
    Tensor ws = Tensor::empty({outer * int64_t(nparts) * int64_t(sizeof(S))}, DType::U8,
                              Device::cuda(cuda::current_device()));
    S* partial = static_cast<S*>(ws.data_ptr());
    reduce_chunks_kernel<OP, T, S>
        <<<dim3(unsigned(nparts), unsigned(outer)), kChunkThreads, 0, stream>>>(x, partial, r,
                                                                                chunk);
    SEQMIX_LAUNCH_CHECK();
    reduce_partials_kernel<OP, T, S>
        <<<unsigned(outer), kChunkThreads, 0, stream>>>(partial, nparts, out, idx, r);
    SEQMIX_LAUNCH_CHECK();
    return;  // ws is released to the stream-ordered cache: reused only by later work
  }
  if (inner == 1 && r <= kWarpRowMax) {
    const int grid = int(std::min<int64_t>((outer + kWarpRows - 1) / kWarpRows, kMaxGrid));
    reduce_rows_warp_kernel<OP, T><<<grid, kWarpRows * 32, 0, stream>>>(x, out, idx, outer, r);
    SEQMIX_LAUNCH_CHECK();
    return;
  }
  if (inner == 1) {
    const int threads = r < 8192 ? 256 : 512;  // r > kWarpRowMax here
    const int grid = int(std::min<int64_t>(outer, kMaxGrid));
    reduce_rows_kernel<OP, T><<<grid, threads, 0, stream>>>(x, out, idx, outer, r);
    SEQMIX_LAUNCH_CHECK();
    return;
  }
  const dim3 block(kColX, kColY);
  const int64_t gx = (inner + kColX - 1) / kColX;
  const int64_t gy = std::min<int64_t>(outer, 65535);
  if (gx > 0x7fffffff) SEQMIX_THROW_PLAIN(Unsupported, "reduce: inner dimension too large");
  reduce_cols_kernel<OP, T>
      <<<dim3(unsigned(gx), unsigned(gy)), block, 0, stream>>>(x, out, idx, outer, r, inner);
  SEQMIX_LAUNCH_CHECK();
}

}  // namespace

void reduce_cuda(ReduceOp op, DType t, const void* x, void* out, int64_t* idx, int64_t outer,
                 int64_t r, int64_t inner, cudaStream_t stream) {
  if (outer * inner == 0) return;
  SEQMIX_DISPATCH_FLOAT(t, "reduce", T, {
    SEQMIX_DISPATCH_REDUCE_OP(
        op, reduce_launch<OP, T>(static_cast<const T*>(x), static_cast<T*>(out), idx, outer, r,
                                 inner, stream));
  });
}

}  // namespace seqmix::ops::impl
