// Fused ops on the CPU: gradients against finite differences (fp64), and each op against a
// second formulation built from generic differentiable ops.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "core/check.h"
#include "core/ops/index.h"
#include "kernels/common/validate.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/dropout/dropout.h"
#include "kernels/embedding/embedding.h"
#include "kernels/norm/norm.h"
#include "kernels/softmax/softmax.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using V = std::vector<Variable>;

namespace {
Tensor r(const Shape& s, double lo = -2, double hi = 2) {
  return tu::rand_uniform(s, DType::F64, lo, hi);
}
void check(const char* name, const GradcheckFn& f, const std::vector<Tensor>& in) {
  SCOPED_TRACE(name);
  const GradcheckResult res = gradcheck(f, in);
  EXPECT_TRUE(res.ok) << res.message;
}
// Values and input gradients of two formulations agree (fp64).
void same_function(const GradcheckFn& f, const GradcheckFn& g, const std::vector<Tensor>& in,
                   double tol = 1e-12) {
  std::vector<Variable> a, b;
  for (const Tensor& t : in) {
    a.emplace_back(t.clone(), is_floating(t.dtype()));
    b.emplace_back(t.clone(), is_floating(t.dtype()));
  }
  const V fa = f(a), gb = g(b);
  ASSERT_EQ(fa.size(), gb.size());
  Variable la, lb;
  for (size_t k = 0; k < fa.size(); ++k) {
    EXPECT_TRUE(tu::close(fa[k].data(), gb[k].data(), tol)) << "output " << k;
    const Tensor w = tu::randn(fa[k].shape(), DType::F64);
    Variable ta = sum(mul(fa[k], Variable(w))), tb = sum(mul(gb[k], Variable(w)));
    la = la.defined() ? la + ta : ta;
    lb = lb.defined() ? lb + tb : tb;
  }
  la.backward();
  lb.backward();
  for (size_t i = 0; i < in.size(); ++i)
    if (a[i].requires_grad()) {
      EXPECT_TRUE(tu::close(a[i].grad(), b[i].grad(), tol)) << "grad " << i;
    }
}
}  // namespace

TEST(SoftmaxCpu, GradcheckAndSecondFormulation) {
  SEQMIX_TRACE_SEED();
  check("softmax", [](const V& v) { return V{softmax(v[0]), softmax(v[0], 0)}; }, {r({3, 7})});
  check("log_softmax",
        [](const V& v) {
          return V{log_softmax(v[0]), log_softmax(v[0], 1)};
        },
        {r({2, 5, 3})});
  same_function(
      [](const V& v) {
        return V{softmax(v[0]), log_softmax(v[0])};
      },
      [](const V& v) {
        Variable ls = v[0] - logsumexp(v[0], -1, true);
        return V{exp(ls), ls};
      },
      {r({4, 9})});
}

TEST(CrossEntropyCpu, GradcheckAndSecondFormulation) {
  SEQMIX_TRACE_SEED();
  const Tensor t = Tensor::from_vector(std::vector<int64_t>{2, -100, 0, 4, 4, 1}, {6});
  check("mean", [t](const V& v) { return V{cross_entropy(v[0], t)}; }, {r({6, 5})});
  check("sum", [t](const V& v) { return V{cross_entropy(v[0], t, -100, LossReduction::Sum)}; },
        {r({2, 3, 5})});
  same_function(
      [t](const V& v) { return V{cross_entropy(v[0], t)}; },
      [t](const V& v) {
        // -mean over kept rows of log_softmax at the target (ignored rows masked out)
        const Tensor tt = Tensor::from_vector(std::vector<int64_t>{2, 0, 0, 4, 4, 1}, {6, 1});
        const Tensor keep = Tensor::from_vector(std::vector<double>{1, 0, 1, 1, 1, 1}, {6, 1});
        Variable ls = log_softmax(v[0]);
        Variable onehot(ops::scatter_dim({6, 5}, 1, tt, Tensor::ones({6, 1}, DType::F64)), false);
        Variable picked = sum(ls * onehot, 1, true) * Variable(keep, false);
        return V{neg(sum(picked)) * (1.0 / 5.0)};
      },
      {r({6, 5})});
  // Errors and edge cases.
  Variable x(r({2, 3}), true);
  EXPECT_THROW(cross_entropy(x, Tensor::from_vector(std::vector<int64_t>{0, 3}, {2})), Error);
  const Variable all_ignored =
      cross_entropy(x, Tensor::from_vector(std::vector<int64_t>{-100, -100}, {2}));
  EXPECT_TRUE(std::isnan(all_ignored.data().item()));
  EXPECT_EQ(cross_entropy(Variable(r({4, 3}).to(DType::BF16), true), Tensor::zeros({4}, DType::I32))
                .dtype(),
            DType::F32);
}

TEST(NormCpu, GradcheckAndSecondFormulation) {
  SEQMIX_TRACE_SEED();
  check("rms", [](const V& v) { return V{rms_norm(v[0], v[1], 1e-5)}; }, {r({4, 6}), r({6})});
  check("rms no weight", [](const V& v) { return V{rms_norm(v[0], Variable(), 1e-5)}; },
        {r({2, 3, 5})});
  check("layer", [](const V& v) { return V{layer_norm(v[0], v[1], v[2], 1e-5)}; },
        {r({4, 6}), r({6}), r({6})});
  check("layer no affine", [](const V& v) { return V{layer_norm(v[0], Variable(), Variable())}; },
        {r({3, 7})});
  same_function(
      [](const V& v) { return V{rms_norm(v[0], v[1], 1e-6)}; },
      [](const V& v) { return V{v[0] * rsqrt(mean(v[0] * v[0], -1, true) + 1e-6) * v[1]}; },
      {r({5, 8}), r({8})});
  same_function([](const V& v) { return V{layer_norm(v[0], v[1], v[2], 1e-5)}; },
                [](const V& v) {
                  Variable c = v[0] - mean(v[0], -1, true);
                  return V{c * rsqrt(mean(c * c, -1, true) + 1e-5) * v[1] + v[2]};
                },
                {r({5, 8}), r({8}), r({8})});
  // f32 master weight with bf16 activations is accepted; a wrong weight shape is not.
  EXPECT_EQ(rms_norm(Variable(r({2, 4}).to(DType::BF16)), Variable(r({4}).to(DType::F32))).dtype(),
            DType::BF16);
  EXPECT_THROW(rms_norm(Variable(r({2, 4})), Variable(r({5}))), Error);
}

TEST(EmbeddingCpu, GradcheckAndSecondFormulation) {
  SEQMIX_TRACE_SEED();
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{3, 1, 3, 0, 3, 2}, {2, 3});
  check("embedding", [idx](const V& v) { return V{embedding(v[0], idx)}; }, {r({5, 4})});
  same_function([idx](const V& v) { return V{embedding(v[0], idx)}; },
                [idx](const V& v) {
                  const Tensor oh = ops::scatter_dim({6, 5}, 1, idx.view({6, 1}),
                                                     Tensor::ones({6, 1}, DType::F64));
                  return V{reshape(matmul(Variable(oh), v[0]), {2, 3, 4})};
                },
                {r({5, 4})});
  Variable w(r({5, 4}), true);
  try {
    embedding(w, Tensor::from_vector(std::vector<int64_t>{0, 5}, {2}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
  }
  // f32 weights, bf16 activations.
  EXPECT_EQ(embedding(w, idx, DType::BF16).dtype(), DType::BF16);
}

TEST(DropoutCpu, MaskStatisticsAndGradient) {
  SEQMIX_TRACE_SEED();
  const double p = 0.3;
  Generator gen(tu::next_seed());
  Variable x(Tensor::ones({100000}, DType::F64), true);
  Variable y = dropout(x, p, gen);
  const auto yv = y.data().to_vector<double>();
  int64_t dropped = 0;
  for (double v : yv) {
    if (v == 0)
      ++dropped;
    else
      ASSERT_NEAR(v, 1 / (1 - double(float(p))), 1e-12);  // p is applied as a float
  }
  EXPECT_NEAR(double(dropped) / double(yv.size()), p, 0.01);
  sum(y).backward();
  EXPECT_TRUE(tu::bitwise_equal(x.grad(), y.data()));  // same mask in backward
  EXPECT_TRUE(dropout(x, p, gen, /*training=*/false).is_same(x));
  EXPECT_EQ(gen.offset(), 1u);
  const uint64_t seed = tu::next_seed();
  check("dropout",
        [seed](const V& v) {
          Generator g(seed);
          return V{dropout(v[0], 0.4, g)};
        },
        {r({50})});
}

// The linear-RNN dispatchers prefer the chunked kernels by the mean sequence length: T for B
// sequences of T tokens (not T / B), the packed total over N with cu_seqlens.
TEST(LinearRnnDims, MeanSequenceLength) {
  const Tensor q = Tensor::zeros({64, 256, 2, 8}, DType::F32),
               v = Tensor::zeros({64, 256, 2, 4}, DType::F32);
  const QkvDims d = check_qkv("test", q, q, v, Tensor(), 0.0);
  EXPECT_EQ(d.n, 64);
  EXPECT_EQ(d.mean_len(), 256);
  const Tensor qp = Tensor::zeros({1, 300, 2, 8}, DType::F32),
               vp = Tensor::zeros({1, 300, 2, 4}, DType::F32);
  const Tensor cu = Tensor::from_vector(std::vector<int64_t>{0, 100, 100, 300}, {4});
  const QkvDims p = check_qkv("test", qp, qp, vp, cu, 0.0);
  EXPECT_EQ(p.n, 3);
  EXPECT_EQ(p.mean_len(), 100);
  EXPECT_EQ(QkvDims{}.mean_len(), 0);
}
