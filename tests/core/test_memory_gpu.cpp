// The CUDA caching allocator: no device allocation in a repeated step after warm-up, statistics,
// cache release, cross-stream reuse, and the out-of-memory error.
#include <gtest/gtest.h>

#include "core/allocator.h"
#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/elementwise.h"
#include "core/ops/matmul.h"
#include "core/ops/reduce.h"
#include "tests/testing/testing.h"

using namespace seqmix;

namespace {
const Device kGpu = Device::cuda(0);

// A step-like sequence: temporaries of many sizes, a matmul (cuBLASLt workspace), reductions.
double fake_step(const Tensor& w, const Tensor& x) {
  Tensor h = ops::matmul(x, w);
  Tensor a = ops::unary(ops::UnaryOp::Silu, h);
  Tensor b = ops::mul(a, h);
  Tensor g = ops::unary_backward(ops::UnaryOp::Silu, h, b);
  Tensor s = ops::sum(g, 0);
  Tensor t = ops::reduce(ops::ReduceOp::LogSumExp, b, 1);
  Tensor big = Tensor::empty({3 << 20}, DType::F32, kGpu);
  big.fill_(1.0);
  return ops::sum(s).item() + ops::sum(t).item();  // item() synchronises
}
}  // namespace

TEST(MemoryGpu, NoDeviceAllocationsAfterWarmup) {
  SEQMIX_REQUIRE_CUDA();
  const Tensor w = tu::randn({256, 512}, DType::BF16, kGpu);
  const Tensor x = tu::randn({1024, 256}, DType::BF16, kGpu);
  fake_step(w, x);  // warm-up: fills the cache
  const memory::Stats s0 = memory::stats(kGpu);
  for (int i = 0; i < 20; ++i) fake_step(w, x);
  const memory::Stats s1 = memory::stats(kGpu);
  EXPECT_EQ(s1.num_device_allocs, s0.num_device_allocs) << "cudaMalloc called in the loop";
  EXPECT_GT(s1.num_cache_hits - s0.num_cache_hits, 20 * 8);
  EXPECT_EQ(s1.allocated_bytes, s0.allocated_bytes);  // nothing leaked
  EXPECT_GE(s1.peak_allocated_bytes, s1.allocated_bytes);
}

TEST(MemoryGpu, StatsAndEmptyCache) {
  SEQMIX_REQUIRE_CUDA();
  const memory::Stats s0 = memory::stats(kGpu);
  {
    Tensor t = Tensor::empty({(64 << 20) / 4 + 123}, DType::F32, kGpu);
    const memory::Stats s1 = memory::stats(kGpu);
    EXPECT_GE(s1.allocated_bytes - s0.allocated_bytes, 64 << 20);
    EXPECT_GE(s1.reserved_bytes, s1.allocated_bytes);
  }
  EXPECT_EQ(memory::stats(kGpu).allocated_bytes, s0.allocated_bytes);
  memory::empty_cache(kGpu);
  const memory::Stats s2 = memory::stats(kGpu);
  EXPECT_EQ(s2.reserved_bytes, s2.allocated_bytes) << "free blocks returned to the driver";
}

TEST(MemoryGpu, CrossStreamBlockWaitsForOtherStream) {
  SEQMIX_REQUIRE_CUDA();
  cudaStream_t side = cuda::create_stream(0);
  memory::Stats s0;
  void* first = nullptr;
  {
    Tensor t = Tensor::empty({1 << 20}, DType::F32, kGpu);
    s0 = memory::stats(kGpu);
    first = t.data_ptr();
    memory::record_stream(t.storage()->data(), kGpu, side);
  }
  cuda::synchronize_stream(side);  // the side stream's (empty) work is complete
  Tensor u = Tensor::empty({1 << 20}, DType::F32, kGpu);
  EXPECT_EQ(u.data_ptr(), first) << "block reused once the other stream's event completed";
  EXPECT_EQ(memory::stats(kGpu).num_device_allocs, s0.num_device_allocs);
  cuda::destroy_stream(side);
}

TEST(MemoryGpu, OutOfMemoryIsAClearError) {
  SEQMIX_REQUIRE_CUDA();
  try {
    Tensor t = Tensor::empty({int64_t(1) << 46}, DType::F32, kGpu);  // 256 TiB
    FAIL() << "allocation unexpectedly succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::OutOfMemory);
    EXPECT_NE(std::string(e.what()).find("CUDA out of memory"), std::string::npos) << e.what();
  }
  // The allocator still works afterwards.
  EXPECT_NO_THROW(Tensor::zeros({1}, DType::F32, kGpu).item());
}

TEST(MemoryGpu, PoisonFillsNewBlocksWithNaN) {
  SEQMIX_REQUIRE_CUDA();
  ASSERT_TRUE(memory::poison_enabled());
  Tensor t = Tensor::empty({1000}, DType::BF16, kGpu);
  for (float v : t.to_vector<float>()) ASSERT_TRUE(std::isnan(v));
}
