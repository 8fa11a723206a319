// The backward engine: shared subgraphs, accumulation, no-grad, hooks, version checks.
#include <gtest/gtest.h>

#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/check.h"
#include "tests/testing/testing.h"

using namespace seqmix;

namespace {
Variable leaf(std::vector<double> v, Shape s) {
  return Variable(Tensor::from_vector(v, s, DType::F64), true);
}
double at(const Tensor& t, size_t i) {
  return t.to_vector<double>()[i];
}
}  // namespace

TEST(Engine, SharedSubgraphAndDiamond) {
  // y = x * x; z = y + y * 3; dz/dx = (1 + 3) * 2x
  Variable x = leaf({1.5, -2}, {2});
  Variable y = x * x;
  Variable z = sum(y + y * 3.0);
  z.backward();
  EXPECT_DOUBLE_EQ(at(x.grad(), 0), 4 * 2 * 1.5);
  EXPECT_DOUBLE_EQ(at(x.grad(), 1), 4 * 2 * -2.0);
}

TEST(Engine, AccumulatesAcrossBackwardCalls) {
  Variable x = leaf({2.0}, {1});
  sum(x * 3.0).backward();
  sum(x * 4.0).backward();
  EXPECT_DOUBLE_EQ(at(x.grad(), 0), 7.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  sum(x * 5.0).backward();
  EXPECT_DOUBLE_EQ(at(x.grad(), 0), 5.0);
  x.zero_grad(false);
  EXPECT_DOUBLE_EQ(at(x.grad(), 0), 0.0);
}

TEST(Engine, GradientIsNotAliasedAcrossLeaves) {
  // add's backward hands the same tensor to both inputs; accumulation into one leaf must not
  // change the other.
  Variable a = leaf({1, 2}, {2}), b = leaf({3, 4}, {2});
  Variable s = sum(a + b);
  s.backward();
  EXPECT_NE(a.grad().storage(), b.grad().storage());
  sum(a * 10.0).backward();
  EXPECT_DOUBLE_EQ(at(b.grad(), 0), 1.0);
  EXPECT_DOUBLE_EQ(at(a.grad(), 0), 11.0);
}

TEST(Engine, NoGradGuard) {
  Variable x = leaf({1.0}, {1});
  {
    NoGradGuard g;
    Variable y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_TRUE(y.is_leaf());
    EXPECT_THROW(y.backward(), Error);
  }
  EXPECT_TRUE((x * 2.0).requires_grad());
  Variable c(Tensor::ones({1}, DType::F64), false);
  EXPECT_FALSE((c * 2.0).requires_grad());
}

TEST(Engine, GradReadyHooksFireOncePerBackwardAfterAccumulation) {
  Variable w = leaf({1, 1}, {2});
  int calls = 0;
  double seen = 0;
  w.register_grad_ready_hook([&](const Variable& v) {
    ++calls;
    seen = at(v.grad(), 0);
  });
  Variable x(Tensor::from_vector(std::vector<double>{2, 3}, {2}, DType::F64), false);
  // w is used twice: the hook must run once, with the summed gradient.
  sum(w * x + w * x).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_DOUBLE_EQ(seen, 4.0);
  EXPECT_THROW((w * 2.0).register_grad_ready_hook([](const Variable&) {}), Error);
}

TEST(Engine, InPlaceChangeOfSavedTensorFails) {
  Variable x = leaf({1, 2}, {2});
  Variable y = exp(x);  // saves x
  x.data().fill_(5.0);  // in-place change after saving
  try {
    sum(y).backward();
    FAIL() << "expected a version error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("modified by an in-place operation"), std::string::npos)
        << e.what();
  }
}

TEST(Engine, SecondBackwardNeedsRetainGraph) {
  Variable x = leaf({1.0}, {1});
  Variable y = sum(exp(x));
  y.backward({}, true);
  y.backward();  // allowed: retained
  EXPECT_NEAR(at(x.grad(), 0), 2 * std::exp(1.0), 1e-12);
  EXPECT_THROW(y.backward(), Error);  // saved tensors are gone now
}

TEST(Engine, NonScalarRootNeedsGradient) {
  Variable x = leaf({1, 2}, {2});
  Variable y = x * 2.0;
  EXPECT_THROW(y.backward(), Error);
  y.backward(Tensor::from_vector(std::vector<double>{1, 10}, {2}));
  EXPECT_DOUBLE_EQ(at(x.grad(), 1), 20.0);
}

TEST(Engine, MultipleRootsAndUnusedInputs) {
  Variable a = leaf({1.0}, {1}), b = leaf({2.0}, {1}), unused = leaf({3.0}, {1});
  run_backward({sum(a * b), sum(a)}, {Tensor(), Tensor()});
  EXPECT_DOUBLE_EQ(at(a.grad(), 0), 3.0);
  EXPECT_DOUBLE_EQ(at(b.grad(), 0), 1.0);
  EXPECT_FALSE(unused.grad().defined());
}

TEST(Engine, LongChainDoesNotRecurse) {
  Variable x = leaf({1.0}, {1});
  Variable y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0;
  sum(y).backward();
  EXPECT_DOUBLE_EQ(at(x.grad(), 0), 1.0);
}

TEST(Engine, SplitGradientsComeBackInTheInputDtype) {
  // Piece gradients of another dtype (f32 here, f64 input) are cast back, on the cat path (every
  // piece has one) and on the zeros path (one piece without).
  const Variable x = leaf({1, 2, 3, 4, 5}, {5});
  std::vector<Variable> p = split(x, 0, {2, 3});
  run_backward({p[0], p[1]},
               {Tensor::full({2}, 2.0, DType::F32), Tensor::full({3}, 3.0, DType::F64)});
  ASSERT_EQ(x.grad().dtype(), DType::F64);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 2, 3, 3, 3}));
  const Variable y = leaf({1, 2, 3, 4, 5}, {5});
  p = split(y, 0, {2, 0, 3});
  run_backward({p[2]}, {Tensor::full({3}, 4.0, DType::F32)});
  ASSERT_EQ(y.grad().dtype(), DType::F64);
  EXPECT_EQ(y.grad().to_vector<double>(), (std::vector<double>{0, 0, 4, 4, 4}));
}
