// Validation and device dispatch of the elementwise ops.
#include "core/ops/elementwise.h"

#include "core/ops/common.h"
#include "core/ops/elementwise_impl.h"

namespace seqmix::ops {

const char* unary_op_name(UnaryOp op) {
  static constexpr const char* kNames[] = {
      "neg",        "exp",        "log",        "sqrt",        "rsqrt",      "pow",      "sigmoid",
      "logsigmoid", "silu",       "gelu",       "gelu_tanh",   "tanh",       "softplus", "relu",
      "abs",        "add_scalar", "mul_scalar", "rsub_scalar", "rdiv_scalar"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kNumUnaryOps);
  return kNames[int(op)];
}

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return "add";
    case BinaryOp::Sub:
      return "sub";
    case BinaryOp::Mul:
      return "mul";
    case BinaryOp::Div:
      return "div";
  }
  return "?";
}

namespace {
Tensor as_dtype(const Tensor& t, DType d) {
  return t.dtype() == d ? t : t.to(d);
}
}  // namespace

Tensor unary(UnaryOp op, const Tensor& x, double scalar) {
  const char* name = unary_op_name(op);
  SEQMIX_CHECK(x.defined(), "{}: operand 'x' is undefined", name);
  check_floating(name, "x", x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  unary_out(op, y, x, scalar);
  return y;
}

void unary_out(UnaryOp op, const Tensor& out, const Tensor& x_in, double scalar) {
  const char* name = unary_op_name(op);
  const Device dev = common_device(name, {{"out", &out}, {"x", &x_in}});
  check_floating(name, "out", out);
  const Tensor x = as_dtype(x_in, out.dtype());
  const ElemIter it = make_elem_iter(out, {&x});
  if (dev.is_cpu()) {
    impl::unary_cpu(op, out.dtype(), it, out.data_ptr(), x.data_ptr(), scalar);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::unary_cuda(op, out.dtype(), it, out.data_ptr(), x.data_ptr(), scalar, stream_of(dev));
#endif
  }
  out.bump_version();
}

Tensor unary_backward(UnaryOp op, const Tensor& x_in, const Tensor& dy_in, double scalar) {
  const char* name = unary_op_name(op);
  const Device dev = common_device(name, {{"x", &x_in}, {"dy", &dy_in}});
  check_floating(name, "x", x_in);
  check_floating(name, "dy", dy_in);
  const DType t = promote_floating(x_in.dtype(), dy_in.dtype());
  const Tensor x = as_dtype(x_in, t), dy = as_dtype(dy_in, t);
  Tensor dx = Tensor::empty(broadcast_shapes(x.shape(), dy.shape()), t, dev);
  const ElemIter it = make_elem_iter(dx, {&x, &dy});
  if (dev.is_cpu()) {
    impl::unary_backward_cpu(op, t, it, dx.data_ptr(), x.data_ptr(), dy.data_ptr(), scalar);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::unary_backward_cuda(op, t, it, dx.data_ptr(), x.data_ptr(), dy.data_ptr(), scalar,
                              stream_of(dev));
#endif
  }
  return dx;
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, double alpha) {
  const char* name = binary_op_name(op);
  const Device dev = common_device(name, {{"a", &a}, {"b", &b}});
  check_floating(name, "a", a);
  check_floating(name, "b", b);
  Tensor c = Tensor::empty(broadcast_shapes(a.shape(), b.shape()),
                           promote_floating(a.dtype(), b.dtype()), dev);
  binary_out(op, c, a, b, alpha);
  return c;
}

void binary_out(BinaryOp op, const Tensor& out, const Tensor& a_in, const Tensor& b_in,
                double alpha) {
  const char* name = binary_op_name(op);
  const Device dev = common_device(name, {{"out", &out}, {"a", &a_in}, {"b", &b_in}});
  check_floating(name, "out", out);
  check_floating(name, "a", a_in);
  check_floating(name, "b", b_in);
  const Tensor a = as_dtype(a_in, out.dtype()), b = as_dtype(b_in, out.dtype());
  const ElemIter it = make_elem_iter(out, {&a, &b});
  if (dev.is_cpu()) {
    impl::binary_cpu(op, out.dtype(), it, out.data_ptr(), a.data_ptr(), b.data_ptr(), alpha);
  } else {
#if SEQMIX_WITH_CUDA
    cuda::DeviceGuard g(dev.index);
    impl::binary_cuda(op, out.dtype(), it, out.data_ptr(), a.data_ptr(), b.data_ptr(), alpha,
                      stream_of(dev));
#endif
  }
  out.bump_version();
}

}  // namespace seqmix::ops
