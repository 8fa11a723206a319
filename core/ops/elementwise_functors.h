// Forward and backward formulas of the elementwise ops, shared verbatim by the CPU and CUDA
// implementations. A is the computation type (float, or double for f64 tensors). Safe for .cu.
#pragma once
#include <cmath>

#include "core/macros.h"
#include "core/ops/elementwise.h"

namespace seqmix::ops::fn {

// Overloads that pick the float or double libm / CUDA math function.
#define SEQMIX_MATH1(name, fname, dname)                \
  SEQMIX_HD SEQMIX_FORCE_INLINE float name(float x) {   \
    return ::fname(x);                                  \
  }                                                     \
  SEQMIX_HD SEQMIX_FORCE_INLINE double name(double x) { \
    return ::dname(x);                                  \
  }
SEQMIX_MATH1(m_exp, expf, exp)
SEQMIX_MATH1(m_log, logf, log)
SEQMIX_MATH1(m_log1p, log1pf, log1p)
SEQMIX_MATH1(m_sqrt, sqrtf, sqrt)
SEQMIX_MATH1(m_tanh, tanhf, tanh)
SEQMIX_MATH1(m_erf, erff, erf)
SEQMIX_MATH1(m_abs, fabsf, fabs)
#undef SEQMIX_MATH1
SEQMIX_HD SEQMIX_FORCE_INLINE float m_pow(float x, float p) {
  return ::powf(x, p);
}
SEQMIX_HD SEQMIX_FORCE_INLINE double m_pow(double x, double p) {
  return ::pow(x, p);
}

template <typename A>
SEQMIX_HD SEQMIX_FORCE_INLINE A sigmoid(A x) {
  return A(1) / (A(1) + m_exp(-x));
}
template <typename A>
SEQMIX_HD SEQMIX_FORCE_INLINE A softplus(A x) {
  return x > A(20) ? x : m_log1p(m_exp(x));
}

template <UnaryOp OP, typename A>
struct Unary;

#define SEQMIX_UNARY(OPNAME, FWD, BWD)                                  \
  template <typename A>                                                 \
  struct Unary<UnaryOp::OPNAME, A> {                                    \
    SEQMIX_HD SEQMIX_FORCE_INLINE static A fwd(A x, A s) { FWD; }       \
    SEQMIX_HD SEQMIX_FORCE_INLINE static A bwd(A x, A dy, A s) { BWD; } \
  };

SEQMIX_UNARY(Neg, return -x, return -dy)
SEQMIX_UNARY(Exp, return m_exp(x), return dy * m_exp(x))
SEQMIX_UNARY(Log, return m_log(x), return dy / x)
SEQMIX_UNARY(Sqrt, return m_sqrt(x), return dy * A(0.5) / m_sqrt(x))
SEQMIX_UNARY(Rsqrt, return A(1) / m_sqrt(x), {
  const A r = A(1) / m_sqrt(x);
  return dy * A(-0.5) * r * r * r;
})
SEQMIX_UNARY(Pow, return s == A(2) ? x * x : m_pow(x, s),
             return s == A(2) ? dy * A(2) * x : dy * s * m_pow(x, s - A(1)))
SEQMIX_UNARY(Sigmoid, return sigmoid(x), {
  const A y = sigmoid(x);
  return dy * y * (A(1) - y);
})
// log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)); d/dx = sigmoid(-x)
SEQMIX_UNARY(LogSigmoid, return (x < A(0) ? x : A(0)) - m_log1p(m_exp(-m_abs(x))),
             return dy * sigmoid(-x))
SEQMIX_UNARY(Silu, return x * sigmoid(x), {
  const A y = sigmoid(x);
  return dy * y * (A(1) + x * (A(1) - y));
})
SEQMIX_UNARY(GeluErf, return A(0.5) * x * (A(1) + m_erf(x * A(0.70710678118654752440))), {
  const A cdf = A(0.5) * (A(1) + m_erf(x * A(0.70710678118654752440)));
  const A pdf = A(0.39894228040143267794) * m_exp(A(-0.5) * x * x);
  return dy * (cdf + x * pdf);
})
SEQMIX_UNARY(
    GeluTanh,
    {
      const A u = A(0.79788456080286535588) * (x + A(0.044715) * x * x * x);
      return A(0.5) * x * (A(1) + m_tanh(u));
    },
    {
      const A u = A(0.79788456080286535588) * (x + A(0.044715) * x * x * x);
      const A t = m_tanh(u);
      const A du = A(0.79788456080286535588) * (A(1) + A(3 * 0.044715) * x * x);
      return dy * (A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du);
    })
SEQMIX_UNARY(Tanh, return m_tanh(x), {
  const A t = m_tanh(x);
  return dy * (A(1) - t * t);
})
SEQMIX_UNARY(Softplus, return softplus(x), return x > A(20) ? dy : dy * sigmoid(x))
SEQMIX_UNARY(Relu, return x > A(0) ? x : A(0), return x > A(0) ? dy : A(0))
SEQMIX_UNARY(Abs, return m_abs(x), return x > A(0) ? dy : (x < A(0) ? -dy : A(0)))
SEQMIX_UNARY(AddScalar, return x + s, return dy)
SEQMIX_UNARY(MulScalar, return x * s, return dy * s)
SEQMIX_UNARY(RSubScalar, return s - x, return -dy)
SEQMIX_UNARY(RDivScalar, return s / x, return -dy * s / (x * x))
#undef SEQMIX_UNARY

template <BinaryOp OP, typename A>
struct Binary;
template <typename A>
struct Binary<BinaryOp::Add, A> {
  SEQMIX_HD SEQMIX_FORCE_INLINE static A f(A a, A b, A alpha) { return a + alpha * b; }
};
template <typename A>
struct Binary<BinaryOp::Sub, A> {
  SEQMIX_HD SEQMIX_FORCE_INLINE static A f(A a, A b, A) { return a - b; }
};
template <typename A>
struct Binary<BinaryOp::Mul, A> {
  SEQMIX_HD SEQMIX_FORCE_INLINE static A f(A a, A b, A) { return a * b; }
};
template <typename A>
struct Binary<BinaryOp::Div, A> {
  SEQMIX_HD SEQMIX_FORCE_INLINE static A f(A a, A b, A) { return a / b; }
};

// Calls f.template operator()<OP>() with the runtime op as a template argument.
#define SEQMIX_UNARY_OP_CASE(OPNAME, ...)               \
  case ::seqmix::ops::UnaryOp::OPNAME: {                \
    constexpr auto OP = ::seqmix::ops::UnaryOp::OPNAME; \
    __VA_ARGS__;                                        \
    break;                                              \
  }
#define SEQMIX_DISPATCH_UNARY_OP(op, ...)         \
  switch (op) {                                   \
    SEQMIX_UNARY_OP_CASE(Neg, __VA_ARGS__)        \
    SEQMIX_UNARY_OP_CASE(Exp, __VA_ARGS__)        \
    SEQMIX_UNARY_OP_CASE(Log, __VA_ARGS__)        \
    SEQMIX_UNARY_OP_CASE(Sqrt, __VA_ARGS__)       \
    SEQMIX_UNARY_OP_CASE(Rsqrt, __VA_ARGS__)      \
    SEQMIX_UNARY_OP_CASE(Pow, __VA_ARGS__)        \
    SEQMIX_UNARY_OP_CASE(Sigmoid, __VA_ARGS__)    \
    SEQMIX_UNARY_OP_CASE(LogSigmoid, __VA_ARGS__) \
    SEQMIX_UNARY_OP_CASE(Silu, __VA_ARGS__)       \
    SEQMIX_UNARY_OP_CASE(GeluErf, __VA_ARGS__)    \
    SEQMIX_UNARY_OP_CASE(GeluTanh, __VA_ARGS__)   \
    SEQMIX_UNARY_OP_CASE(Tanh, __VA_ARGS__)       \
    SEQMIX_UNARY_OP_CASE(Softplus, __VA_ARGS__)   \
    SEQMIX_UNARY_OP_CASE(Relu, __VA_ARGS__)       \
    SEQMIX_UNARY_OP_CASE(Abs, __VA_ARGS__)        \
    SEQMIX_UNARY_OP_CASE(AddScalar, __VA_ARGS__)  \
    SEQMIX_UNARY_OP_CASE(MulScalar, __VA_ARGS__)  \
    SEQMIX_UNARY_OP_CASE(RSubScalar, __VA_ARGS__) \
    SEQMIX_UNARY_OP_CASE(RDivScalar, __VA_ARGS__) \
  }

#define SEQMIX_BINARY_OP_CASE(OPNAME, ...)               \
  case ::seqmix::ops::BinaryOp::OPNAME: {                \
    constexpr auto OP = ::seqmix::ops::BinaryOp::OPNAME; \
    __VA_ARGS__;                                         \
    break;                                               \
  }
#define SEQMIX_DISPATCH_BINARY_OP(op, ...)  \
  switch (op) {                             \
    SEQMIX_BINARY_OP_CASE(Add, __VA_ARGS__) \
    SEQMIX_BINARY_OP_CASE(Sub, __VA_ARGS__) \
    SEQMIX_BINARY_OP_CASE(Mul, __VA_ARGS__) \
    SEQMIX_BINARY_OP_CASE(Div, __VA_ARGS__) \
  }

}  // namespace seqmix::ops::fn
