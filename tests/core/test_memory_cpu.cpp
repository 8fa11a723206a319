// Host allocator statistics and poisoning.
#include <gtest/gtest.h>

#include <cmath>

#include "core/allocator.h"
#include "core/tensor.h"
#include "tests/testing/testing.h"

using namespace seqmix;

TEST(MemoryCpu, StatsAndPoison) {
  const auto before = memory::stats(Device::cpu());
  {
    Tensor t = Tensor::empty({1000}, DType::F32);
    const auto during = memory::stats(Device::cpu());
    EXPECT_GE(during.allocated_bytes - before.allocated_bytes, 4000);
    ASSERT_TRUE(memory::poison_enabled());  // the test main turns it on
    for (float v : t.to_vector<float>()) ASSERT_TRUE(std::isnan(v));
  }
  EXPECT_EQ(memory::stats(Device::cpu()).allocated_bytes, before.allocated_bytes);
  EXPECT_FALSE(Tensor::empty({0}, DType::F32).storage()->data());  // no memory for empty
}
