// Tensor metadata, views, copies and the 16-bit float conversions.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>

#include "core/check.h"
#include "core/half.h"
#include "core/ops/copy.h"
#include "core/tensor.h"
#include "tests/testing/testing.h"

using namespace seqmix;

TEST(Shape, BroadcastAndStrides) {
  EXPECT_EQ(broadcast_shapes({3, 1, 5}, {4, 1}), (Shape{3, 4, 5}));
  EXPECT_EQ(broadcast_shapes({}, {2, 3}), (Shape{2, 3}));
  EXPECT_THROW(broadcast_shapes({3, 2}, {4, 2}), Error);
  EXPECT_EQ(contiguous_strides({2, 3, 4}), (Strides{12, 4, 1}));
  EXPECT_EQ(wrap_dim(-1, 3), 2);
  EXPECT_THROW(wrap_dim(3, 3), Error);
  EXPECT_THROW((Shape{1, 2, 3, 4, 5, 6, 7, 8, 9}), Error);
}

TEST(Tensor, FactoriesAndRoundTrips) {
  for (DType t :
       {DType::F32, DType::BF16, DType::F16, DType::F64, DType::I32, DType::I64, DType::U8}) {
    SCOPED_TRACE(dtype_name(t));
    const std::vector<double> v = {0, 1, 2, 3, 4, 5};
    Tensor x = Tensor::from_vector(v, {2, 3}, t);
    EXPECT_EQ(x.dtype(), t);
    EXPECT_EQ(x.shape(), (Shape{2, 3}));
    EXPECT_TRUE(x.is_contiguous());
    EXPECT_EQ(x.to_vector<double>(), v);
    EXPECT_EQ(Tensor::full({4}, 3.0, t).to_vector<double>(), std::vector<double>(4, 3.0));
    EXPECT_EQ(Tensor::zeros({2}, t).to_vector<double>(), std::vector<double>(2, 0.0));
    EXPECT_EQ(Tensor::arange(4, t).to_vector<double>(), (std::vector<double>{0, 1, 2, 3}));
  }
  EXPECT_DOUBLE_EQ(Tensor::full({1}, 2.5, DType::F32).item(), 2.5);
  EXPECT_THROW(Tensor::zeros({2}, DType::F32).item(), Error);
  EXPECT_THROW(Tensor::zeros({2}, DType::F32).data<double>(), Error);
}

TEST(Tensor, Views) {
  Tensor x = Tensor::arange(24, DType::F32).view({2, 3, 4});
  Tensor t = x.transpose(0, 2);  // [4, 3, 2]
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.contiguous().to_vector<float>()[1], 12.0f);  // t[0,0,1] = x[1,0,0]
  EXPECT_TRUE(t.storage() == x.storage());

  Tensor p = x.permute({1, 2, 0});  // [3, 4, 2]
  EXPECT_EQ(p.contiguous().to_vector<float>()[1], 12.0f);

  Tensor s = x.slice(2, 1, 4, 2);  // [2, 3, 2]: columns 1 and 3
  EXPECT_EQ(s.contiguous().to_vector<float>(),
            (std::vector<float>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  EXPECT_EQ(x.select(1, -1).contiguous().to_vector<float>(),
            (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
  EXPECT_EQ(x.narrow(0, 1, 1).shape(), (Shape{1, 3, 4}));
  EXPECT_THROW(x.narrow(0, 1, 2), Error);
  EXPECT_EQ(x.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(1).squeeze(1).shape(), x.shape());
  EXPECT_THROW(x.squeeze(0), Error);

  Tensor e = Tensor::arange(3, DType::F32).view({3, 1}).expand({2, 3, 4});
  EXPECT_EQ(e.strides(), (Strides{0, 1, 0}));
  EXPECT_EQ(e.contiguous().to_vector<float>()[5], 1.0f);
  EXPECT_THROW(x.expand({2, 5, 4}), Error);

  // view of a non-contiguous tensor: merging dims that are contiguous with each other works,
  // merging across the transpose does not; reshape copies instead.
  Tensor tv = x.transpose(0, 1);  // [3, 2, 4], strides [4, 12, 1]
  EXPECT_EQ(tv.view({3, 2, 2, 2}).shape(), (Shape{3, 2, 2, 2}));
  EXPECT_THROW(tv.view({6, 4}), Error);
  Tensor r = tv.reshape({6, 4});
  EXPECT_TRUE(r.is_contiguous());
  EXPECT_EQ(r.to_vector<float>()[4], 12.0f);
  EXPECT_EQ(x.view({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_THROW(x.view({5, -1}), Error);
  EXPECT_EQ(x.flatten(1).shape(), (Shape{2, 12}));
  EXPECT_THROW(x.as_strided({100}, {1}, 0), Error);
}

TEST(Tensor, CopyBroadcastCastCatStack) {
  Tensor dst = Tensor::zeros({2, 3}, DType::F64);
  dst.copy_(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}));
  EXPECT_EQ(dst.to_vector<double>(), (std::vector<double>{1, 2, 3, 1, 2, 3}));
  // Into a transposed view.
  Tensor m = Tensor::zeros({3, 2}, DType::F32);
  m.transpose(0, 1).copy_(Tensor::arange(6, DType::I64).view({2, 3}));
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // Float to int truncates toward zero.
  Tensor i = Tensor::from_vector(std::vector<double>{-1.7, 2.9}, {2}).to(DType::I32);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{-1, 2}));
  EXPECT_THROW(dst.copy_(Tensor::zeros({4}, DType::F32)), Error);

  Tensor a = Tensor::arange(4, DType::F32).view({2, 2});
  Tensor b = Tensor::full({2, 1}, 9.0, DType::F32);
  EXPECT_EQ(ops::cat({a, b}, 1).to_vector<float>(), (std::vector<float>{0, 1, 9, 2, 3, 9}));
  EXPECT_EQ(ops::stack({a, a}, 0).shape(), (Shape{2, 2, 2}));
  EXPECT_THROW(ops::cat({a, Tensor::zeros({3, 3}, DType::F32)}, 1), Error);
}

TEST(Tensor, InPlaceOpsBumpVersion) {
  Tensor x = Tensor::zeros({4}, DType::F32);
  const uint64_t v0 = x.version();
  x.fill_(1.0);
  EXPECT_GT(x.version(), v0);
  Tensor view = x.slice(0, 1, 3);
  const uint64_t v1 = x.version();
  view.zero_();  // a view shares the counter
  EXPECT_GT(x.version(), v1);
}

TEST(Half, Bf16AllPatternsRoundTrip) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const bf16 h = bf16::from_bits(uint16_t(b));
    const float f = h.to_float();
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16(f).to_float()));
      continue;
    }
    ASSERT_EQ(bf16(f).bits, uint16_t(b)) << b;
  }
}

TEST(Half, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
  EXPECT_EQ(bf16(1.00390625f).bits, bf16(1.0f).bits);
  EXPECT_EQ(bf16(1.01171875f).bits, bf16::from_bits(0x3f82).bits);            // tie to even upwards
  EXPECT_EQ(bf16(std::nextafter(1.00390625f, 2.0f)).to_float(), 1.0078125f);  // above the tie
}

TEST(Half, F16MatchesCompilerConversion) {
  // _Float16 is an independent oracle (IEEE binary16, round to nearest even).
  for (uint32_t b = 0; b < 65536; ++b) {
    const f16 h = f16::from_bits(uint16_t(b));
    const float f = h.to_float();
    const _Float16 oracle = std::bit_cast<_Float16>(uint16_t(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f, float(oracle)) << b;
    ASSERT_EQ(f16(f).bits, uint16_t(b)) << b;
  }
  std::mt19937 rng(tu::next_seed());
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(bits(rng));
    if (std::isnan(f)) continue;
    const _Float16 o = static_cast<_Float16>(f);
    ASSERT_EQ(f16(f).bits, std::bit_cast<uint16_t>(o)) << f;
  }
}
