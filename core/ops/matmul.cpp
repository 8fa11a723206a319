// matmul / matmul_out: shape checks, batch folding, operand layouts; then CPU or CUDA GEMM.
#include "core/ops/matmul.h"

#include <algorithm>
#include <atomic>

#include "core/ops/common.h"
#include "core/ops/elementwise.h"
#include "core/ops/matmul_impl.h"

namespace seqmix::ops {

namespace {

std::atomic<bool> g_allow_tf32{false};

// Describes a 2-d matrix view (rows x cols with the given strides) as a GEMM operand, or returns
// false when it is neither row- nor column-major (the caller then copies it).
bool describe_matrix(int64_t rows, int64_t cols, int64_t s_r, int64_t s_c, impl::GemmOperand* op) {
  if (s_c == 1 && (rows <= 1 || s_r >= std::max<int64_t>(cols, 1))) {
    op->col_major = false;
    op->ld = rows <= 1 ? std::max<int64_t>(cols, 1) : s_r;
    return true;
  }
  if (s_r == 1 && (cols <= 1 || s_c >= std::max<int64_t>(rows, 1))) {
    op->col_major = true;
    op->ld = cols <= 1 ? std::max<int64_t>(rows, 1) : s_c;
    return true;
  }
  return false;
}

// Collapses the batch dims (all but the last two) of t into one stride; false if impossible.
bool batch_stride_of(const Tensor& t, int64_t* stride) {
  const int nb = t.dim() - 2;
  int64_t s = 0, expected = -1;
  bool first = true;
  for (int i = nb - 1; i >= 0; --i) {
    const int64_t sz = t.shape()[i], st = t.strides()[i];
    if (sz == 1) continue;
    if (first) {
      s = st;
      expected = st * sz;
      first = false;
    } else {
      if (st != expected) return false;
      expected = st * sz;
    }
  }
  *stride = s;
  return true;
}

impl::GemmOperand operand(Tensor& t) {
  impl::GemmOperand op;
  const int nd = t.dim();
  if (!describe_matrix(t.shape()[nd - 2], t.shape()[nd - 1], t.strides()[nd - 2],
                       t.strides()[nd - 1], &op) ||
      !batch_stride_of(t, &op.batch_stride)) {
    t = t.contiguous();
    describe_matrix(t.shape()[nd - 2], t.shape()[nd - 1], t.strides()[nd - 2], t.strides()[nd - 1],
                    &op);
    batch_stride_of(t, &op.batch_stride);
  }
  op.ptr = t.data_ptr();
  return op;
}

Shape batch_shape(const Tensor& t) {
  Shape s;
  for (int i = 0; i + 2 < t.dim(); ++i) s.push_back(t.shape()[i]);
  return s;
}

}  // namespace

void set_allow_tf32(bool on) {
  g_allow_tf32.store(on);
}
bool allow_tf32() {
  return g_allow_tf32.load();
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  const Device dev = common_device("matmul", {{"a", &a}, {"b", &b}});
  SEQMIX_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: operands must be at least 2-d, got {} and {}",
               a.shape_str(), b.shape_str());
  Shape out_shape = broadcast_shapes(batch_shape(a), batch_shape(b));
  out_shape.push_back(a.size(-2));
  out_shape.push_back(b.size(-1));
  Tensor out = Tensor::empty(out_shape, a.dtype(), dev);
  matmul_out(out, a, b, 1.0, 0.0);
  return out;
}

void matmul_out(const Tensor& out, const Tensor& a_in, const Tensor& b_in, double alpha,
                double beta) {
  const Device dev = common_device("matmul", {{"out", &out}, {"a", &a_in}, {"b", &b_in}});
  check_floating("matmul", "a", a_in);
  SEQMIX_CHECK(a_in.dtype() == b_in.dtype(), "matmul: a is {} but b is {}",
               dtype_name(a_in.dtype()), dtype_name(b_in.dtype()));
  const bool half_in = a_in.dtype() == DType::BF16 || a_in.dtype() == DType::F16;
  SEQMIX_CHECK(out.dtype() == a_in.dtype() || (half_in && out.dtype() == DType::F32),
               "matmul: out must be {}{}, got {}", dtype_name(a_in.dtype()),
               half_in ? " or f32" : "", dtype_name(out.dtype()));
  SEQMIX_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2 && out.dim() >= 2,
               "matmul: operands must be at least 2-d");
  const int64_t m = a_in.size(-2), k = a_in.size(-1), n = b_in.size(-1);
  SEQMIX_CHECK(b_in.size(-2) == k, "matmul: a {} and b {} have mismatched inner dimensions",
               a_in.shape_str(), b_in.shape_str());
  Shape bshape = broadcast_shapes(batch_shape(a_in), batch_shape(b_in));
  Shape expect = bshape;
  expect.push_back(m);
  expect.push_back(n);
  SEQMIX_CHECK(out.shape() == expect, "matmul: out has shape {}, expected {}", out.shape_str(),
               expect.str());
  SEQMIX_CHECK(out.stride(-1) == 1 || n <= 1, "matmul: out must have unit stride in its last dim");
  if (m == 0 || n == 0) return;
  if (k == 0) {  // empty sum: out = beta * out
    if (beta == 0.0)
      out.zero_();
    else if (beta != 1.0)
      mul_(out, beta);
    return;
  }

  impl::GemmArgs g;
  g.ab_dtype = a_in.dtype();
  g.c_dtype = out.dtype();
  g.alpha = alpha;
  g.beta = beta;
  g.allow_tf32 = allow_tf32();
  g.m = m;
  g.n = n;
  g.k = k;

  Tensor a = a_in, b = b_in, c = out;
  const int64_t nbatch = bshape.numel();
  // Fold a's batch into M when b is shared (2-d) and a's and out's batches are linear in rows.
  bool folded = false;
  if (nbatch > 1 && b.dim() == 2 && a.stride(-1) == 1 && c.stride(-1) == 1) {
    Tensor a2, c2;
    try {
      a2 = a.view({-1, k});
      c2 = c.view({-1, n});
      folded = true;
    } catch (const Error&) {
    }
    if (folded) {
      a = a2;
      c = c2;
      g.m = a.size(0);
    }
  }
  if (!folded && nbatch > 1) {
    Shape ea = bshape, eb = bshape;
    ea.push_back(m);
    ea.push_back(k);
    eb.push_back(k);
    eb.push_back(n);
    a = a.expand(ea);
    b = b.expand(eb);
    g.batch = nbatch;
  }
  g.a = operand(a);
  g.b = operand(b);
  int64_t cbs = 0;
  SEQMIX_CHECK(
      batch_stride_of(c, &cbs) && c.stride(-1) == 1 && (c.size(-2) <= 1 || c.stride(-2) >= n),
      "matmul: out {} with strides {} is not a batch of row-major matrices", c.shape_str(),
      c.strides().str());
  g.c = c.data_ptr();
  g.ldc = c.size(-2) <= 1 ? n : c.stride(-2);
  g.c_batch_stride = cbs;
  if (g.batch == 1) {
    g.a.batch_stride = g.b.batch_stride = g.c_batch_stride = 0;
  }

  if (dev.is_cpu()) {
    impl::gemm_cpu(g);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard guard(dev.index);
    impl::gemm_cuda(g, dev.index, stream_of(dev));
#endif
  }
  out.bump_version();
}

}  // namespace seqmix::ops
