// CPU primitive ops against straightforward double-precision formulas and loops.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numeric>

#include "core/check.h"
#include "core/ops/elementwise.h"
#include "core/ops/index.h"
#include "core/ops/iter.h"
#include "core/ops/matmul.h"
#include "core/ops/random.h"
#include "core/ops/reduce.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using ops::BinaryOp;
using ops::ReduceOp;
using ops::UnaryOp;

namespace {

struct UnaryCase {
  UnaryOp op;
  double scalar;
  std::function<double(double, double)> f;
  double lo, hi;  // input range
};

std::vector<UnaryCase> unary_cases() {
  const auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  return {
      {UnaryOp::Neg, 0, [](double x, double) { return -x; }, -3, 3},
      {UnaryOp::Exp, 0, [](double x, double) { return std::exp(x); }, -3, 3},
      {UnaryOp::Log, 0, [](double x, double) { return std::log(x); }, 0.1, 4},
      {UnaryOp::Sqrt, 0, [](double x, double) { return std::sqrt(x); }, 0.1, 4},
      {UnaryOp::Rsqrt, 0, [](double x, double) { return 1 / std::sqrt(x); }, 0.1, 4},
      {UnaryOp::Pow, 3.0, [](double x, double p) { return std::pow(x, p); }, 0.1, 2},
      {UnaryOp::Pow, 2.0, [](double x, double p) { return x * x; }, -2, 2},
      {UnaryOp::Pow, -0.5, [](double x, double p) { return std::pow(x, p); }, 0.2, 2},
      {UnaryOp::Sigmoid, 0, [sig](double x, double) { return sig(x); }, -6, 6},
      {UnaryOp::LogSigmoid, 0, [sig](double x, double) { return std::log(sig(x)); }, -6, 6},
      {UnaryOp::Silu, 0, [sig](double x, double) { return x * sig(x); }, -6, 6},
      {UnaryOp::GeluErf, 0,
       [](double x, double) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {UnaryOp::GeluTanh, 0,
       [](double x, double) {
         return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
       },
       -4, 4},
      {UnaryOp::Tanh, 0, [](double x, double) { return std::tanh(x); }, -3, 3},
      {UnaryOp::Softplus, 0, [](double x, double) { return std::log1p(std::exp(x)); }, -6, 6},
      {UnaryOp::Relu, 0, [](double x, double) { return x > 0 ? x : 0; }, -3, 3},
      {UnaryOp::Abs, 0, [](double x, double) { return std::fabs(x); }, -3, 3},
      {UnaryOp::AddScalar, 1.5, [](double x, double s) { return x + s; }, -3, 3},
      {UnaryOp::MulScalar, -2.0, [](double x, double s) { return x * s; }, -3, 3},
      {UnaryOp::RSubScalar, 1.0, [](double x, double s) { return s - x; }, -3, 3},
      {UnaryOp::RDivScalar, 2.0, [](double x, double s) { return s / x; }, 0.2, 3},
  };
}

}  // namespace

TEST(ElementwiseCpu, UnaryForwardAndBackwardMatchFormulas) {
  SEQMIX_TRACE_SEED();
  for (const UnaryCase& c : unary_cases()) {
    SCOPED_TRACE(ops::unary_op_name(c.op));
    const Tensor x = tu::rand_uniform({257}, DType::F64, c.lo, c.hi);
    const Tensor dy = tu::randn({257}, DType::F64);
    const auto xv = x.to_vector<double>(), gv = dy.to_vector<double>();
    std::vector<double> yref, dxref;
    for (size_t i = 0; i < xv.size(); ++i) {
      yref.push_back(c.f(xv[i], c.scalar));
      const double h = 1e-6;  // central difference of the double formula
      dxref.push_back(gv[i] * (c.f(xv[i] + h, c.scalar) - c.f(xv[i] - h, c.scalar)) / (2 * h));
    }
    EXPECT_TRUE(tu::close(ops::unary(c.op, x, c.scalar), Tensor::from_vector(yref, {257}), 1e-12));
    EXPECT_TRUE(tu::close(ops::unary_backward(c.op, x, dy, c.scalar),
                          Tensor::from_vector(dxref, {257}), 1e-7));
    // f32 agrees with f64 to f32 precision.
    EXPECT_TRUE(tu::close(ops::unary(c.op, x.to(DType::F32), c.scalar),
                          Tensor::from_vector(yref, {257}), 1e-6));
  }
}

TEST(ElementwiseCpu, BinaryBroadcastAndStrides) {
  SEQMIX_TRACE_SEED();
  const Tensor a = tu::randn({4, 3, 5}, DType::F64);
  const Tensor b = tu::rand_uniform({5, 3}, DType::F64, 0.5, 2).transpose(0, 1);  // [3,5]
  const auto av = a.to_vector<double>(), bv = b.contiguous().to_vector<double>();
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
    SCOPED_TRACE(ops::binary_op_name(op));
    std::vector<double> ref(av.size());
    for (size_t i = 0; i < av.size(); ++i) {
      const double x = av[i], y = bv[i % 15];
      ref[i] = op == BinaryOp::Add   ? x + 0.5 * y
               : op == BinaryOp::Sub ? x - y
               : op == BinaryOp::Mul ? x * y
                                     : x / y;
    }
    EXPECT_TRUE(tu::close(ops::binary(op, a, b, 0.5), Tensor::from_vector(ref, {4, 3, 5}), 1e-15));
  }
  // Mixed dtypes compute in the wider one.
  EXPECT_EQ(ops::add(a.to(DType::F32), b.to(DType::BF16)).dtype(), DType::F32);
  EXPECT_THROW(ops::add(a, tu::randn({4}, DType::F64)), Error);
  EXPECT_THROW(ops::exp(Tensor::zeros({2}, DType::I64)), Error);
  // In place.
  Tensor acc = Tensor::zeros({3, 5}, DType::F32);
  ops::add_(acc, b, 2.0);
  EXPECT_TRUE(tu::close(acc, ops::mul_scalar(b, 2.0), 1e-7));
}

// Which layouts the CUDA element-wise kernel walks on which path (plan_elementwise_cuda is host
// logic; the GPU suite runs the same layouts through the kernels). The output is a fresh
// contiguous tensor unless given, as in ops::binary.
namespace {
ops::ElemPlan plan_of(const Tensor& out, std::initializer_list<const Tensor*> ins) {
  const ops::ElemIter it = ops::make_elem_iter(out, ins);
  std::vector<const void*> p{out.data_ptr()};
  for (const Tensor* t : ins) p.push_back(t->data_ptr());
  return ops::plan_elementwise_cuda(it, int(dtype_size(out.dtype())), p.data());
}
ops::ElemPlan plan_of(const Tensor& a, const Tensor& b) {
  const Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape()), a.dtype());
  return plan_of(out, {&a, &b});
}
}  // namespace

TEST(ElementwiseCpu, CudaPathPerLayout) {
  using ops::ElemPath;
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    SCOPED_TRACE(dtype_name(t));
    const bool two_bytes = dtype_size(t) == 2;
    const Tensor x = Tensor::zeros({4, 6, 64}, t);
    const Tensor r = Tensor::zeros({4, 6, 1}, t);     // per-row scalar
    const Tensor h = Tensor::zeros({1, 6, 64}, t);    // broadcast along an outer dim
    const Tensor w = Tensor::zeros({4, 6, 100}, t);   // rows of 200 / 400 / 800 bytes
    const Tensor w2 = Tensor::zeros({4, 6, 128}, t);  // rows of 256 / 512 / 1024 bytes
    ASSERT_EQ(reinterpret_cast<uintptr_t>(x.data_ptr()) % 16, 0u);
    EXPECT_EQ(plan_of(x, x).path, ElemPath::Vector);
    const Tensor xs = x.view({-1}).narrow(0, 1, 64);  // contiguous, not 16-byte aligned
    EXPECT_EQ(plan_of(xs, xs).path, ElemPath::Contig);
    EXPECT_EQ(plan_of(x, r).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(x, r).bcast, 2);
    EXPECT_EQ(plan_of(r, x).bcast, 1);
    EXPECT_EQ(plan_of(x, h).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(x, h).bcast, 0);
    EXPECT_EQ(plan_of(x.permute({1, 0, 2}), h.permute({1, 0, 2})).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(x.permute({1, 0, 2}), r.permute({1, 0, 2})).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(w2.narrow(2, 16, 64), x).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(w2.narrow(2, 0, 64), r).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(w.narrow(2, 16, 64), x).path, two_bytes ? ElemPath::Strided : ElemPath::Rows);
    EXPECT_EQ(plan_of(w.narrow(2, 3, 64), x).path, ElemPath::Strided);
    EXPECT_EQ(plan_of(x.narrow(2, 5, 3), r).path, ElemPath::Strided);
    // Aligned rows that are not a whole number of 16-byte vectors (a vector would cross rows),
    // into an aligned strided output, so that only the size condition decides: 3 elements for
    // every dtype, 6 for all but f64 (6 f64 are three whole vectors).
    const Tensor o3 = w2.narrow(2, 0, 3), x3 = x.narrow(2, 0, 3);
    const Tensor o6 = w2.narrow(2, 0, 6), x6 = x.narrow(2, 0, 6);
    EXPECT_EQ(plan_of(o3, {&x3, &x3}).path, ElemPath::Strided);
    EXPECT_EQ(plan_of(o6, {&x6, &r}).path, t == DType::F64 ? ElemPath::Rows : ElemPath::Strided);
    EXPECT_EQ(plan_of(x.transpose(1, 2), x.transpose(1, 2)).path, ElemPath::Strided);
    // A strided output (in place into a slice) and a unary backward (two inputs).
    const Tensor out = w2.narrow(2, 32, 64);
    EXPECT_EQ(plan_of(out, {&x, &r}).path, ElemPath::Rows);
    EXPECT_EQ(plan_of(w.narrow(2, 3, 64), {&x, &r}).path, ElemPath::Strided);
    const Tensor w2s = w2.narrow(2, 16, 64);
    EXPECT_EQ(plan_of(x, {&w2s, &x}).path, ElemPath::Rows);
  }
}

TEST(ReduceCpu, EveryDimEveryOp) {
  SEQMIX_TRACE_SEED();
  const Shape shape{3, 4, 5};
  const Tensor x = tu::randn(shape, DType::F64);
  const auto xv = x.to_vector<double>();
  for (ReduceOp op :
       {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::LogSumExp}) {
    for (int d = 0; d < 3; ++d) {
      SCOPED_TRACE(std::string(ops::reduce_op_name(op)) + " dim " + std::to_string(d));
      Shape os = shape;
      os[d] = 1;
      std::vector<double> ref(size_t(os.numel()));
      const Strides st = contiguous_strides(shape), ost = contiguous_strides(os);
      for (int64_t i = 0; i < os.numel(); ++i) {
        int64_t idx[3], rem = i;
        for (int k = 0; k < 3; ++k) {
          idx[k] = rem / ost[k];
          rem %= ost[k];
        }
        std::vector<double> vals;
        for (int64_t r = 0; r < shape[d]; ++r) {
          idx[d] = r;
          vals.push_back(xv[size_t(idx[0] * st[0] + idx[1] * st[1] + idx[2] * st[2])]);
        }
        double v = 0;
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          for (double q : vals) v += q;
          if (op == ReduceOp::Mean) v /= double(vals.size());
        } else if (op == ReduceOp::Max) {
          v = *std::max_element(vals.begin(), vals.end());
        } else if (op == ReduceOp::Min) {
          v = *std::min_element(vals.begin(), vals.end());
        } else {
          for (double q : vals) v += std::exp(q);
          v = std::log(v);
        }
        ref[size_t(i)] = v;
      }
      const Tensor got = ops::reduce(op, x, d, true);
      EXPECT_EQ(got.shape(), os);
      EXPECT_TRUE(tu::close(got, Tensor::from_vector(ref, os), 1e-14));
      Shape sq = shape;
      sq.erase(d);
      EXPECT_EQ(ops::reduce(op, x, d, false).shape(), sq);
    }
  }
  EXPECT_NEAR(ops::reduce_all(ReduceOp::Sum, x).item(), std::accumulate(xv.begin(), xv.end(), 0.0),
              1e-12);
  EXPECT_TRUE(
      tu::close(ops::reduce(ReduceOp::Sum, x, {0, 2}, false), ops::sum(ops::sum(x, 2), 0), 1e-14));
  EXPECT_TRUE(tu::close(ops::sum_to(x, {4, 1}), ops::sum(ops::sum(x, 2, true), 0), 1e-14));
}

TEST(ReduceCpu, ArgMaxTiesAndNaN) {
  const Tensor x = Tensor::from_vector(std::vector<float>{1, 5, 5, 2, NAN, 3}, {2, 3});
  auto [v, i] = ops::max_with_index(x, 1);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 1}));  // first max; NaN wins
  EXPECT_TRUE(std::isnan(v.to_vector<float>()[1]));
  auto [mv, mi] = ops::min_with_index(x, 1);
  EXPECT_EQ(mi.to_vector<int64_t>()[0], 0);
  EXPECT_THROW(ops::reduce(ReduceOp::Max, Tensor::zeros({2, 0}, DType::F32), 1), Error);
  EXPECT_TRUE(std::isinf(
      ops::reduce(ReduceOp::LogSumExp, Tensor::full({3}, -INFINITY, DType::F32), 0).item()));
}

TEST(MatmulCpu, LayoutsBatchesDtypes) {
  SEQMIX_TRACE_SEED();
  const auto naive = [](const Tensor& a, const Tensor& b) {
    // a [B, M, K], b [B, K, N] contiguous doubles
    const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
    const auto av = a.contiguous().to_vector<double>(), bv = b.contiguous().to_vector<double>();
    std::vector<double> c(size_t(B * M * N), 0.0);
    for (int64_t q = 0; q < B; ++q)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k)
            s += av[size_t((q * M + i) * K + k)] * bv[size_t((q * K + k) * N + j)];
          c[size_t((q * M + i) * N + j)] = s;
        }
    return Tensor::from_vector(c, {B, M, N});
  };
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const double tol = dt == DType::F64 ? 1e-13 : dt == DType::F32 ? 1e-6 : 5e-3;
    // Plain, transposed a, transposed b.
    const Tensor a = tu::randn({2, 7, 5}, dt), b = tu::randn({2, 5, 3}, dt);
    const Tensor ref = naive(a.to(DType::F64), b.to(DType::F64));
    EXPECT_TRUE(tu::close(ops::matmul(a, b), ref, tol));
    const Tensor at = tu::randn({2, 5, 7}, dt).contiguous(), bt = tu::randn({2, 3, 5}, dt);
    EXPECT_TRUE(tu::close(
        ops::matmul(at.transpose(1, 2), bt.transpose(1, 2)),
        naive(at.transpose(1, 2).to(DType::F64), bt.transpose(1, 2).to(DType::F64)), tol));
    // Shared 2-d b (folded into one GEMM).
    const Tensor w = tu::randn({5, 4}, dt);
    const Tensor wb = w.unsqueeze(0).expand({2, 5, 4});
    EXPECT_TRUE(tu::close(ops::matmul(a, w), naive(a.to(DType::F64), wb.to(DType::F64)), tol));
  }
  // Accumulate: out = 2 * a b + 1 * out, f32 out for bf16 inputs.
  const Tensor a = tu::randn({6, 4}, DType::BF16), b = tu::randn({4, 5}, DType::BF16);
  Tensor out = tu::randn({6, 5}, DType::F32);
  const Tensor expect = ops::add(out, ops::matmul(a.to(DType::F32), b.to(DType::F32)), 2.0);
  ops::matmul_out(out, a, b, 2.0, 1.0);
  EXPECT_TRUE(tu::close(out, expect, 1e-6));
  EXPECT_THROW(ops::matmul(tu::randn({3, 4}, DType::F32), tu::randn({5, 2}, DType::F32)), Error);
  EXPECT_THROW(ops::matmul(a, b.to(DType::F32)), Error);
}

TEST(RandomCpu, DeterministicAndDistributed) {
  Tensor a = Tensor::empty({100000}, DType::F32), b = Tensor::empty({100000}, DType::F32);
  ops::normal_draw(a, 0, 1, 42, 7);
  ops::normal_draw(b, 0, 1, 42, 7);
  EXPECT_TRUE(tu::bitwise_equal(a, b));
  ops::normal_draw(b, 0, 1, 42, 8);
  EXPECT_FALSE(tu::bitwise_equal(a, b));
  const auto v = a.to_vector<double>();
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= double(v.size());
  for (double x : v) s += (x - m) * (x - m);
  s = std::sqrt(s / double(v.size()));
  EXPECT_NEAR(m, 0.0, 0.02);
  EXPECT_NEAR(s, 1.0, 0.02);
  ops::uniform_draw(a, -2, 3, 1, 0);
  const auto u = a.to_vector<double>();
  EXPECT_GE(*std::min_element(u.begin(), u.end()), -2.0);
  EXPECT_LT(*std::max_element(u.begin(), u.end()), 3.0);
  // A Generator advances one draw per call.
  Generator g(5);
  ops::uniform_(a, 0, 1, g);
  EXPECT_EQ(g.offset(), 1u);
  // Non-contiguous targets get the same values as the contiguous draw, in logical order.
  Tensor t = Tensor::empty({4, 3}, DType::F32).transpose(0, 1);
  ops::normal_draw(t, 0, 1, 3, 0);
  Tensor c = Tensor::empty({3, 4}, DType::F32);
  ops::normal_draw(c, 0, 1, 3, 0);
  EXPECT_TRUE(tu::bitwise_equal(t.contiguous(), c));
}

TEST(IndexCpu, GatherScatter) {
  const Tensor x = Tensor::arange(24, DType::F32).view({2, 3, 4});
  const Tensor idx = Tensor::from_vector(std::vector<int64_t>{0, 2, 1, 1, 2, 0, 0, 1}, {2, 1, 4});
  const Tensor g = ops::gather_dim(x, 1, idx);
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{0, 9, 6, 7, 20, 13, 14, 19}));
  const Tensor s = ops::scatter_dim(x.shape(), 1, idx, g);
  EXPECT_TRUE(tu::close(ops::gather_dim(s, 1, idx), g, 0));
  EXPECT_DOUBLE_EQ(ops::sum(s).item(), ops::sum(g).item());
  EXPECT_THROW(ops::gather_dim(x, 1, ops::add_scalar(idx.to(DType::F32), 5).to(DType::I64)), Error);
}
