// Every generic op's backward against fp64 central differences.
#include <gtest/gtest.h>

#include "autograd/function.h"
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "core/check.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using V = std::vector<Variable>;

namespace {
Tensor r(const Shape& s, double lo = -1.5, double hi = 1.5) {
  return tu::rand_uniform(s, DType::F64, lo, hi);
}
void check(const char* name, const GradcheckFn& f, const std::vector<Tensor>& in) {
  SCOPED_TRACE(name);
  const GradcheckResult res = gradcheck(f, in);
  EXPECT_TRUE(res.ok) << res.message;
  EXPECT_GT(res.checked, 0);
}
}  // namespace

TEST(Gradcheck, Elementwise) {
  SEQMIX_TRACE_SEED();
  check("add", [](const V& v) { return V{add(v[0], v[1], 0.7)}; }, {r({3, 4}), r({4})});
  check("sub", [](const V& v) { return V{v[0] - v[1]}; }, {r({3, 1}), r({1, 4})});
  check("mul", [](const V& v) { return V{v[0] * v[1]}; }, {r({2, 3, 4}), r({3, 1})});
  check("div", [](const V& v) { return V{v[0] / v[1]}; }, {r({3, 4}), r({3, 4}, 0.5, 2)});
  check("scalars", [](const V& v) { return V{rdiv(rsub(add(mul(v[0], 3.0), 1.0), 5.0), 2.0)}; },
        {r({5}, 0.1, 1.0)});
  check("neg exp log sqrt rsqrt pow",
        [](const V& v) {
          return V{neg(exp(v[0])), log(v[1]),      sqrt(v[1]),
                   rsqrt(v[1]),    pow(v[1], 2.5), pow(v[0], 2.0)};
        },
        {r({6}), r({6}, 0.2, 3)});
  check("activations",
        [](const V& v) {
          return V{sigmoid(v[0]),    logsigmoid(v[0]), silu(v[0]),    gelu(v[0]),
                   gelu(v[0], true), tanh(v[0]),       softplus(v[0])};
        },
        {r({9}, -4, 4)});
  // relu and abs away from the kink
  check("relu abs",
        [](const V& v) {
          return V{relu(v[0]), abs(v[0])};
        },
        {Tensor::from_vector(std::vector<double>{-1.3, -0.4, 0.5, 2.0}, {4})});
}

TEST(Gradcheck, CastSendsGradientBackInTheInputDtype) {
  // Finite differences through an f32 round trip are noise; check the rule directly.
  Variable x(tu::randn({5}, DType::F64), true);
  sum(mul(cast(x, DType::BF16), 3.0)).backward();
  ASSERT_EQ(x.grad().dtype(), DType::F64);
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(5, 3.0));
}

TEST(Gradcheck, Reductions) {
  SEQMIX_TRACE_SEED();
  check("sum",
        [](const V& v) {
          return V{sum(v[0]), sum(v[0], 1), sum(v[0], {0, 2}, true)};
        },
        {r({2, 3, 4})});
  check("mean", [](const V& v) { return V{mean(v[0]), mean(v[0], -1, true)}; }, {r({2, 3, 4})});
  check("max", [](const V& v) { return V{max(v[0], 1), max(v[0])}; }, {r({3, 5})});
  check("logsumexp",
        [](const V& v) {
          return V{logsumexp(v[0], 0), logsumexp(v[0], 1, true)};
        },
        {r({3, 5})});
}

TEST(Gradcheck, Matmul) {
  SEQMIX_TRACE_SEED();
  check("2d", [](const V& v) { return V{matmul(v[0], v[1])}; }, {r({3, 4}), r({4, 5})});
  check("batched", [](const V& v) { return V{matmul(v[0], v[1])}; }, {r({2, 3, 4}), r({2, 4, 5})});
  check("shared b", [](const V& v) { return V{matmul(v[0], v[1])}; }, {r({2, 3, 4}), r({4, 5})});
  check("shared a", [](const V& v) { return V{matmul(v[0], v[1])}; }, {r({3, 4}), r({2, 4, 5})});
  check("transposed views",
        [](const V& v) { return V{matmul(transpose(v[0], 0, 1), transpose(v[1], 0, 1))}; },
        {r({4, 3}), r({5, 4})});
}

TEST(Gradcheck, Shape) {
  SEQMIX_TRACE_SEED();
  check("reshape view flatten",
        [](const V& v) {
          return V{reshape(v[0], {6, 4}), view(v[0], {2, 12}), flatten(v[0], 1)};
        },
        {r({2, 3, 4})});
  check("transpose permute contiguous",
        [](const V& v) {
          return V{transpose(v[0], 0, 2), permute(v[0], {1, 2, 0}),
                   contiguous(transpose(v[0], 1, 2))};
        },
        {r({2, 3, 4})});
  check("slice narrow select",
        [](const V& v) {
          return V{slice(v[0], 1, 0, 3, 2), narrow(v[0], 2, 1, 2), select(v[0], 0, 1)};
        },
        {r({2, 3, 4})});
  check("split",
        [](const V& v) {
          const V p = split(v[0], 2, {1, 0, 3});
          return V{p[0], p[1], mul(p[2], p[2])};  // every piece (p[1] empty): the cat path
        },
        {r({2, 3, 4})});
  check("split, a piece without gradient (the zeros path)",
        [](const V& v) {
          const V p = split(v[0], -1, {1, 2, 1});
          return V{p[0], p[2]};
        },
        {r({2, 3, 4})});
  check("unsqueeze squeeze expand",
        [](const V& v) {
          return V{squeeze(unsqueeze(v[0], 1), 1), expand(unsqueeze(v[0], 0), {3, 2, 4})};
        },
        {r({2, 4})});
  check("cat stack",
        [](const V& v) {
          return V{cat({v[0], v[1], v[0]}, 1), stack({v[0], v[0]}, 2)};
        },
        {r({2, 3}), r({2, 5})});
}

TEST(Gradcheck, ComposedExpression) {
  SEQMIX_TRACE_SEED();
  // A small attention-like expression through many ops at once.
  check("composite",
        [](const V& v) {
          Variable s = matmul(v[0], transpose(v[1], 0, 1)) * 0.5;
          Variable p = exp(s - logsumexp(s, 1, true));
          return V{matmul(p, v[2])};
        },
        {r({4, 3}), r({5, 3}), r({5, 2})});
}

TEST(Gradcheck, DetectsAWrongGradient) {
  // A deliberately wrong backward must be reported.
  const GradcheckResult res = gradcheck(
      [](const V& v) {
        // identity whose backward claims a slope of 2
        return V{record(
            "WrongBackward", {&v[0]}, v[0].data().clone(),
            [](const Node&, TensorList& g) -> TensorList { return {ops::mul_scalar(g[0], 2.0)}; })};
      },
      {r({3})});
  EXPECT_FALSE(res.ok);
}

TEST(Gradcheck, SplitRejectsSizesThatDoNotCoverTheDim) {
  const Variable x(Tensor::zeros({2, 5}, DType::F32), true);
  EXPECT_THROW(split(x, 1, {2, 2}), Error);
  EXPECT_THROW(split(x, 1, {3, 3}), Error);
  EXPECT_THROW(split(x, 1, {6, -1}), Error);
}
