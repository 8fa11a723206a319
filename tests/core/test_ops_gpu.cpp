// Every CUDA primitive op against the CPU implementation on fresh random inputs, with outputs
// poisoned (the test main fills new allocations with NaN bytes).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "core/ops/copy.h"
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
const Device kGpu = Device::cuda(0);
constexpr DType kFloatTypes[] = {DType::F32, DType::BF16, DType::F16, DType::F64};

// Inputs valid for every unary op (log, sqrt, rsqrt, pow need positive values).
Tensor positive_input(const Shape& s, DType t) {
  return tu::rand_uniform(s, t, 0.2, 3.0);
}
}  // namespace

TEST(ElementwiseGpu, UnaryAllOpsAllDtypes) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (DType t : kFloatTypes) {
    for (int o = 0; o < ops::kNumUnaryOps; ++o) {
      const UnaryOp op = UnaryOp(o);
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + ops::unary_op_name(op));
      const double s = op == UnaryOp::Pow ? 1.7 : 0.75;
      // 1003 elements: not a multiple of the vector width, so the tail path runs too.
      const Tensor x = positive_input({1003}, t), dy = tu::randn({1003}, t);
      EXPECT_TRUE(tu::close(ops::unary(op, x.to(kGpu), s), ops::unary(op, x, s), tu::tol_for(t)));
      EXPECT_TRUE(tu::close(ops::unary_backward(op, x.to(kGpu), dy.to(kGpu), s),
                            ops::unary_backward(op, x, dy, s), tu::tol_for(t)));
    }
  }
}

TEST(ElementwiseGpu, BinaryBroadcastStridedMixed) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (DType t : kFloatTypes) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor a = tu::randn({6, 7, 9}, t);
    const Tensor b = tu::rand_uniform({9, 7}, t, 0.5, 2.0).transpose(0, 1);  // strided
    const Tensor c = tu::randn({9}, t);
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
      SCOPED_TRACE(ops::binary_op_name(op));
      EXPECT_TRUE(tu::close(ops::binary(op, a.to(kGpu), b.to(kGpu), 0.3),
                            ops::binary(op, a, b, 0.3), tu::tol_for(t)));
      EXPECT_TRUE(tu::close(ops::binary(op, a.to(kGpu).transpose(0, 2), c.to(kGpu).view({9, 1, 1})),
                            ops::binary(op, a.transpose(0, 2), c.view({9, 1, 1})), tu::tol_for(t)));
    }
  }
  // The kernel's paths (plan_elementwise_cuda; ElementwiseCpu.CudaPathPerLayout checks the same
  // choices without a GPU): each case asserts the path it takes, then compares with the CPU.
  // Rows of whole 16-byte vectors (one index computation per vector): an input broadcast along
  // the innermost dim (a per-row scalar, either operand), one broadcast along an outer dim,
  // permutations keeping the innermost dim, slices of 256-byte-multiple rows, a strided output,
  // the unary forward and backward. Slices of the 100-element rows of `w` take Rows for f32 / f64
  // and the element path for 2-byte types (200-byte rows); a slice at a 3-element offset, rows of
  // 3 elements and a transpose take the element path for every dtype.
  for (DType t : kFloatTypes) {
    SCOPED_TRACE(std::string("rows ") + dtype_name(t));
    using ops::ElemPath;
    const ElemPath rows_or_elem = dtype_size(t) == 2 ? ElemPath::Strided : ElemPath::Rows;
    const Tensor x = tu::randn({4, 6, 64}, t).to(kGpu);
    const Tensor r = tu::rand_uniform({4, 6, 1}, t, 0.5, 2.0).to(kGpu);    // per-row scalar
    const Tensor h = tu::rand_uniform({1, 6, 64}, t, 0.5, 2.0).to(kGpu);   // outer broadcast
    const Tensor w = tu::rand_uniform({4, 6, 100}, t, 0.5, 2.0).to(kGpu);  // 200-byte+ rows
    const Tensor w2 = tu::rand_uniform({4, 6, 128}, t, 0.5, 2.0).to(kGpu);
    const auto path = [](const Tensor& out, std::initializer_list<const Tensor*> ins) {
      std::vector<const void*> p{out.data_ptr()};
      for (const Tensor* i : ins) p.push_back(i->data_ptr());
      return ops::plan_elementwise_cuda(ops::make_elem_iter(out, ins), int(dtype_size(out.dtype())),
                                        p.data())
          .path;
    };
    const auto check = [&](const Tensor& a, const Tensor& b, ElemPath want, const char* what) {
      SCOPED_TRACE(what);
      const Tensor probe = Tensor::empty(broadcast_shapes(a.shape(), b.shape()), t, kGpu);
      EXPECT_EQ(int(path(probe, {&a, &b})), int(want));
      EXPECT_EQ(int(path(probe, {&b, &a})), int(want));
      for (BinaryOp op : {BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div}) {
        SCOPED_TRACE(ops::binary_op_name(op));
        EXPECT_TRUE(tu::close(ops::binary(op, a, b, 0.3), ops::binary(op, a.cpu(), b.cpu(), 0.3),
                              tu::tol_for(t)));
        EXPECT_TRUE(tu::close(ops::binary(op, b, a, 0.3), ops::binary(op, b.cpu(), a.cpu(), 0.3),
                              tu::tol_for(t)));
      }
    };
    check(x, r, ElemPath::Rows, "inner broadcast");
    check(x, h, ElemPath::Rows, "outer broadcast");
    check(x.permute({1, 0, 2}), h.permute({1, 0, 2}), ElemPath::Rows, "permuted");
    check(x.permute({1, 0, 2}), r.permute({1, 0, 2}), ElemPath::Rows, "permuted, inner bcast");
    check(w2.narrow(2, 16, 64), x, ElemPath::Rows, "slice of 128-element rows at 16");
    check(w2.narrow(2, 64, 64), r, ElemPath::Rows, "slice of 128-element rows, inner bcast");
    check(w.narrow(2, 16, 64), x, rows_or_elem, "slice of 100-element rows at 16");
    check(w.narrow(2, 0, 64), r, rows_or_elem, "slice of 100-element rows, inner bcast");
    check(w.narrow(2, 3, 64), x, ElemPath::Strided, "slice at 3 elements");
    check(x.narrow(2, 5, 3), r, ElemPath::Strided, "rows of 3");
    check(x.transpose(1, 2), x.transpose(1, 2).contiguous(), ElemPath::Strided, "transpose");
    // A strided output: in place into a slice of rows; the rest of the buffer is untouched.
    for (const auto& [buf, off, want] : {std::tuple{w2, int64_t(32), ElemPath::Rows},
                                         std::tuple{w, int64_t(3), ElemPath::Strided}}) {
      SCOPED_TRACE("strided output");
      Tensor og = buf.clone(), oc = buf.cpu();
      const Tensor vg = og.narrow(2, off, 64), vc = oc.narrow(2, off, 64);
      EXPECT_EQ(int(path(vg, {&x, &r})), int(want));
      ops::binary_out(BinaryOp::Mul, vg, x, r);
      ops::binary_out(BinaryOp::Mul, vc, x.cpu(), r.cpu());
      EXPECT_TRUE(tu::close(og, oc, tu::tol_for(t)));
    }
    // Aligned rows that are not a whole number of 16-byte vectors into an aligned strided output
    // (only the size condition keeps them off the rows path): 3 elements for every dtype, 6 for
    // all but f64 (three whole vectors of f64).
    for (int64_t n : {3, 6}) {
      SCOPED_TRACE("aligned rows of " + std::to_string(n));
      const ElemPath want = n == 6 && t == DType::F64 ? ElemPath::Rows : ElemPath::Strided;
      Tensor og = w2.clone(), oc = w2.cpu();
      const Tensor vg = og.narrow(2, 0, n), vc = oc.narrow(2, 0, n), xn = x.narrow(2, 0, n);
      EXPECT_EQ(int(path(vg, {&xn, &r})), int(want));
      ops::binary_out(BinaryOp::Mul, vg, xn, r);
      ops::binary_out(BinaryOp::Mul, vc, xn.cpu(), r.cpu());
      EXPECT_TRUE(tu::close(og, oc, tu::tol_for(t)));
    }
    // Unary forward and backward (two inputs) on sliced and broadcast operands.
    const Tensor ws = w2.narrow(2, 32, 64);
    const Tensor probe = Tensor::empty({4, 6, 64}, t, kGpu);
    EXPECT_EQ(int(path(probe, {&ws})), int(ElemPath::Rows));
    EXPECT_EQ(int(path(probe, {&ws, &r})), int(ElemPath::Rows));
    EXPECT_TRUE(tu::close(ops::unary(UnaryOp::Exp, ws, 0.5),
                          ops::unary(UnaryOp::Exp, ws.cpu(), 0.5), tu::tol_for(t)));
    for (UnaryOp op : {UnaryOp::Exp, UnaryOp::Sqrt}) {
      SCOPED_TRACE(ops::unary_op_name(op));
      EXPECT_TRUE(tu::close(ops::unary_backward(op, ws, r),
                            ops::unary_backward(op, ws.cpu(), r.cpu()), tu::tol_for(t)));
      EXPECT_TRUE(tu::close(ops::unary_backward(op, ws, x),
                            ops::unary_backward(op, ws.cpu(), x.cpu()), tu::tol_for(t)));
    }
  }
  // In-place accumulation of a bf16 gradient into an f32 buffer.
  Tensor acc = tu::randn({1000}, DType::F32);
  const Tensor g = tu::randn({1000}, DType::BF16);
  Tensor acc_gpu = acc.to(kGpu);
  ops::add_(acc_gpu, g.to(kGpu));
  ops::add_(acc, g);
  EXPECT_TRUE(tu::close(acc_gpu, acc, 1e-6));
}

TEST(CopyGpu, AllDtypePairsAndLayouts) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  const DType all[] = {DType::F32, DType::BF16, DType::F16, DType::F64,
                       DType::I32, DType::I64,  DType::U8};
  for (DType src_t : all) {
    for (DType dst_t : all) {
      SCOPED_TRACE(std::string(dtype_name(src_t)) + " -> " + dtype_name(dst_t));
      const Tensor src = tu::rand_uniform({5, 33}, DType::F64, 0, 200).to(src_t);
      Tensor dst_gpu = Tensor::empty({33, 5}, dst_t, kGpu);
      dst_gpu.transpose(0, 1).copy_(src.to(kGpu));  // strided destination, cast on the GPU
      Tensor dst_cpu = Tensor::empty({33, 5}, dst_t);
      dst_cpu.transpose(0, 1).copy_(src);
      EXPECT_TRUE(tu::bitwise_equal(dst_gpu, dst_cpu));
    }
  }
  // Contiguous same-dtype copies of odd sizes (vector path and fallback).
  for (int64_t n : {1, 3, 4096, 4097}) {
    const Tensor x = tu::randn({n}, DType::F32);
    const Tensor xg = x.to(kGpu);
    EXPECT_TRUE(tu::bitwise_equal(xg.clone(), x));
    EXPECT_TRUE(tu::bitwise_equal(xg.slice(0, 1, n).clone(), x.slice(0, 1, n).contiguous()));
  }
  // Strided same-dtype copies whose rows are whole 16-byte vectors (one vector per thread: a
  // broadcast, a column slice at a 16-byte offset, a permutation keeping the last dim) and ones
  // that are not (a 3-element offset, a row of 12 bytes): the same bits as on the CPU.
  for (DType t : {DType::BF16, DType::F32, DType::F64, DType::U8}) {
    SCOPED_TRACE(dtype_name(t));
    const Tensor x = tu::rand_uniform({3, 5, 1, 64}, DType::F64, 0, 100).to(t);
    const Tensor y = tu::rand_uniform({4, 6, 96}, DType::F64, 0, 100).to(t);
    const Tensor xg = x.to(kGpu), yg = y.to(kGpu);
    EXPECT_TRUE(tu::bitwise_equal(xg.expand({3, 5, 4, 64}).contiguous(),
                                  x.expand({3, 5, 4, 64}).contiguous()));
    EXPECT_TRUE(
        tu::bitwise_equal(yg.narrow(2, 16, 64).contiguous(), y.narrow(2, 16, 64).contiguous()));
    EXPECT_TRUE(
        tu::bitwise_equal(yg.permute({1, 0, 2}).contiguous(), y.permute({1, 0, 2}).contiguous()));
    EXPECT_TRUE(
        tu::bitwise_equal(yg.narrow(2, 3, 64).contiguous(), y.narrow(2, 3, 64).contiguous()));
    EXPECT_TRUE(tu::bitwise_equal(yg.narrow(2, 0, 3).contiguous(), y.narrow(2, 0, 3).contiguous()));
    // Aligned base and whole-vector rows, but an outer stride that is not a multiple of 16 bytes
    // (bf16: 100 elements = 200 bytes): the element path.
    const Tensor z = tu::rand_uniform({4, 6, 100}, DType::F64, 0, 100).to(t);
    EXPECT_TRUE(tu::bitwise_equal(z.to(kGpu).narrow(2, 0, 64).contiguous(),
                                  z.narrow(2, 0, 64).contiguous()));
  }
  Tensor f = Tensor::empty({7, 3}, DType::BF16, kGpu);
  f.transpose(0, 1).fill_(2.5);
  EXPECT_EQ(f.to_vector<float>(), std::vector<float>(21, 2.5f));
}

// |got - ref| <= tol * scale element-wise (scale: the same reduction of |x|).
::testing::AssertionResult close_to_magnitude(const Tensor& got, const Tensor& ref,
                                              const Tensor& scale, double tol) {
  const auto g = got.cpu().to(DType::F64).to_vector<double>();
  const auto r = ref.to(DType::F64).to_vector<double>();
  const auto s = scale.to(DType::F64).to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - r[i]) <= tol * s[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << g[i] << " vs " << r[i]
                                           << " (scale " << s[i] << ", tolerance " << tol << ")";
  return ::testing::AssertionSuccess();
}

TEST(ReduceGpu, ShapesOpsDtypes) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  // (shape, dim): rows (inner 1), short rows (one warp each: R <= 256), columns (inner > 1),
  // single rows, one huge global reduction and a few long rows (both two-pass, in chunks), and
  // sizes that are not multiples of the block.
  const std::vector<std::pair<Shape, int>> cases = {
      {{37, 1001}, 1}, {{37, 1001}, 0}, {{5, 300, 17}, 1}, {{3, 9000}, 1},
      {{1, 70}, 1},    {{300000}, 0},   {{2, 3, 4}, 2},    {{4, 1}, 1},
      {{1000, 77}, 1}, {{513, 256}, 1}, {{3, 200001}, 1},  {{1, 65537}, 1}};
  for (DType t : kFloatTypes) {
    for (ReduceOp op :
         {ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::LogSumExp}) {
      for (const auto& [shape, dim] : cases) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " " + ops::reduce_op_name(op) + " " +
                     shape.str() + " dim " + std::to_string(dim));
        const Tensor x = tu::randn(shape, t);
        const Tensor got = ops::reduce(op, x.to(kGpu), dim), ref = ops::reduce(op, x, dim);
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          // A sum of random signs can cancel to near zero, where its relative error is not
          // bounded; the summation error is, relative to the sum of magnitudes.
          EXPECT_TRUE(close_to_magnitude(
              got, ref, ops::reduce(op, ops::unary(UnaryOp::Abs, x), dim), tu::tol_for(t)));
        } else {
          EXPECT_TRUE(tu::close(got, ref, tu::tol_for(t)));
        }
      }
    }
    const Tensor x = tu::randn({1000, 64}, t);
    auto [gv, gi] = ops::max_with_index(x.to(kGpu), 0);
    auto [cv, ci] = ops::max_with_index(x, 0);
    EXPECT_TRUE(tu::bitwise_equal(gi, ci));
    // The index on the short-row (one warp per row) and chunked-row paths.
    for (const Shape& s : {Shape{1000, 77}, Shape{3, 200001}, Shape{1, 65537}}) {
      const Tensor y = tu::randn(s, t);
      EXPECT_TRUE(tu::bitwise_equal(ops::max_with_index(y.to(kGpu), 1).second,
                                    ops::max_with_index(y, 1).second))
          << s.str();
      EXPECT_TRUE(tu::bitwise_equal(ops::min_with_index(y.to(kGpu), 1).second,
                                    ops::min_with_index(y, 1).second))
          << s.str();
    }
    // Whole-tensor sums: of signed values against the sum of magnitudes (a sum of 64000 random
    // signs can cancel to near zero, where the relative error is unbounded: seed 4145042681 gave
    // 3.6 with |GPU - CPU| = 4.3e-5 in f32), and of their magnitudes relatively.
    const Tensor xa = ops::unary(UnaryOp::Abs, x);
    EXPECT_TRUE(close_to_magnitude(ops::reduce_all(ReduceOp::Sum, x.to(kGpu)),
                                   ops::reduce_all(ReduceOp::Sum, x),
                                   ops::reduce_all(ReduceOp::Sum, xa), tu::tol_for(t)));
    EXPECT_TRUE(tu::close(ops::reduce_all(ReduceOp::Sum, xa.to(kGpu)),
                          ops::reduce_all(ReduceOp::Sum, xa), tu::tol_for(t)));
  }
  // Deterministic: the same reduction twice gives the same bits.
  const Tensor big = tu::randn({1 << 21}, DType::F32, kGpu);
  EXPECT_TRUE(tu::bitwise_equal(ops::sum(big), ops::sum(big)));
  const Tensor rows = tu::randn({12, 1 << 20}, DType::BF16, kGpu);  // chunked rows
  EXPECT_TRUE(
      tu::bitwise_equal(ops::reduce(ReduceOp::Sum, rows, 1), ops::reduce(ReduceOp::Sum, rows, 1)));
}

TEST(MatmulGpu, AgainstCpu) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  const std::vector<Case> cases = {
      {{64, 48}, {48, 80}, false, false},       {{33, 17}, {17, 9}, true, false},
      {{33, 17}, {17, 9}, false, true},         {{4, 31, 16}, {4, 16, 24}, true, true},
      {{3, 5, 40, 24}, {24, 56}, false, false}, {{40, 24}, {2, 24, 56}, false, true},
      {{1, 128}, {128, 1}, false, false}};
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + c.a.str() + " @ " + c.b.str());
      Tensor a = tu::randn(c.a, t), b = tu::randn(c.b, t);
      if (c.ta) a = a.transpose(-1, -2).contiguous().transpose(-1, -2);  // same values, col-major
      if (c.tb) b = b.transpose(-1, -2).contiguous().transpose(-1, -2);
      const Tensor a64 = a.to(DType::F64), b64 = b.to(DType::F64);
      const Tensor ref = ops::matmul(a64, b64);
      // Element-wise against the dot products' error bound, tol · (|A| |B|): a single dot of
      // random signs can cancel to near zero ([1, 128] @ [128, 1]: rel 2.2e-5 for one seed on an
      // H100), where its relative error has no bound.
      EXPECT_TRUE(close_to_magnitude(
          ops::matmul(a.to(kGpu), b.to(kGpu)), ref,
          ops::matmul(ops::unary(UnaryOp::Abs, a64), ops::unary(UnaryOp::Abs, b64)),
          tu::tol_for(t)));
    }
  }
  // bf16 inputs accumulated into an f32 output (alpha, beta).
  const Tensor a = tu::randn({96, 64}, DType::BF16), b = tu::randn({64, 72}, DType::BF16);
  const Tensor c0 = tu::randn({96, 72}, DType::F32);
  Tensor cg = c0.to(kGpu);
  ops::matmul_out(cg, a.to(kGpu), b.to(kGpu), 0.5, 1.0);
  const Tensor ref =
      ops::add(c0, ops::matmul(a.to(DType::F64), b.to(DType::F64)).to(DType::F32), 0.5);
  EXPECT_TRUE(tu::close(cg, ref, 1e-5));
  // TF32 off by default: an f32 product is accurate to f32 precision.
  const Tensor x = tu::randn({256, 256}, DType::F32), y = tu::randn({256, 256}, DType::F32);
  EXPECT_TRUE(tu::close(ops::matmul(x.to(kGpu), y.to(kGpu)),
                        ops::matmul(x.to(DType::F64), y.to(DType::F64)), 1e-6));
}

TEST(RandomGpu, BitIdenticalToCpu) {
  SEQMIX_REQUIRE_CUDA();
  for (DType t : kFloatTypes) {
    SCOPED_TRACE(dtype_name(t));
    const uint64_t seed = tu::next_seed();
    Tensor c = Tensor::empty({100003}, t), g = Tensor::empty({100003}, t, kGpu);
    ops::normal_draw(c, 0.1, 2.0, seed, 3);
    ops::normal_draw(g, 0.1, 2.0, seed, 3);
    EXPECT_TRUE(tu::bitwise_equal(g, c));
    ops::uniform_draw(c, -1, 1, seed, 4);
    ops::uniform_draw(g, -1, 1, seed, 4);
    EXPECT_TRUE(tu::bitwise_equal(g, c));
  }
}

TEST(IndexGpu, GatherScatter) {
  SEQMIX_REQUIRE_CUDA();
  const Tensor x = tu::randn({4, 50, 3}, DType::F32);
  const Tensor idx = tu::randint({4, 1, 3}, 0, 50);
  const Tensor g = ops::gather_dim(x.to(kGpu), 1, idx.to(kGpu));
  EXPECT_TRUE(tu::bitwise_equal(g, ops::gather_dim(x, 1, idx)));
  EXPECT_TRUE(tu::bitwise_equal(ops::scatter_dim(x.shape(), 1, idx.to(kGpu), g),
                                ops::scatter_dim(x.shape(), 1, idx, g.cpu())));
}
