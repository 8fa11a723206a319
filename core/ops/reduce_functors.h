// Reduction states and their combine rules, shared by the CPU and CUDA reductions. A reduction
// pushes elements into a state, merges states, and finishes a state into the result. Max/Min
// track the first index of the extremum; NaN counts as the extremum (it propagates).
// Safe for .cu files.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/macros.h"
#include "core/ops/reduce.h"

namespace seqmix::ops::red {

template <typename A>
SEQMIX_HD SEQMIX_FORCE_INLINE bool is_nan(A x) {
  return x != x;
}

template <ReduceOp OP, typename A>
struct Reducer;

template <typename A>
struct SumState {
  A s;
};

template <typename A>
struct Reducer<ReduceOp::Sum, A> {
  using State = SumState<A>;
  SEQMIX_HD static State init() { return {A(0)}; }
  SEQMIX_HD static void push(State& st, A x, int64_t) { st.s += x; }
  SEQMIX_HD static State merge(State a, State b) { return {a.s + b.s}; }
  SEQMIX_HD static A finish(State st, int64_t) { return st.s; }
};

template <typename A>
struct Reducer<ReduceOp::Mean, A> {
  using State = SumState<A>;
  SEQMIX_HD static State init() { return {A(0)}; }
  SEQMIX_HD static void push(State& st, A x, int64_t) { st.s += x; }
  SEQMIX_HD static State merge(State a, State b) { return {a.s + b.s}; }
  SEQMIX_HD static A finish(State st, int64_t n) { return n > 0 ? st.s / A(n) : A(NAN); }
};

template <typename A>
struct ArgState {
  A v;
  int64_t i;
};

// b is better than a: NaN first, then the larger (max) / smaller (min) value, then lower index.
template <bool kMax, typename A>
SEQMIX_HD SEQMIX_FORCE_INLINE bool arg_better(const ArgState<A>& b, const ArgState<A>& a) {
  const bool bn = is_nan(b.v), an = is_nan(a.v);
  if (bn != an) return bn;
  if (!bn && b.v != a.v) return kMax ? (b.v > a.v) : (b.v < a.v);
  return b.i < a.i;
}

template <bool kMax, typename A>
struct ArgReducer {
  using State = ArgState<A>;
  SEQMIX_HD static State init() {
    return {kMax ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::infinity(),
            std::numeric_limits<int64_t>::max()};
  }
  SEQMIX_HD static void push(State& st, A x, int64_t i) {
    const State c{x, i};
    if (arg_better<kMax>(c, st)) st = c;
  }
  SEQMIX_HD static State merge(State a, State b) { return arg_better<kMax>(b, a) ? b : a; }
  SEQMIX_HD static A finish(State st, int64_t) { return st.v; }
};
template <typename A>
struct Reducer<ReduceOp::Max, A> : ArgReducer<true, A> {};
template <typename A>
struct Reducer<ReduceOp::Min, A> : ArgReducer<false, A> {};

template <typename A>
struct LseState {
  A m;  // running maximum
  A s;  // sum of exp(x - m)
};

template <typename A>
struct Reducer<ReduceOp::LogSumExp, A> {
  using State = LseState<A>;
  SEQMIX_HD static State init() { return {-std::numeric_limits<A>::infinity(), A(0)}; }
  SEQMIX_HD static void push(State& st, A x, int64_t) {
    if (is_nan(x)) {
      st.m = x;
      st.s = A(1);
      return;
    }
    if (x == -std::numeric_limits<A>::infinity() || is_nan(st.m)) return;
    if (x > st.m) {
      st.s = st.s * exp_(st.m - x) + A(1);
      st.m = x;
    } else {
      st.s += exp_(x - st.m);
    }
  }
  SEQMIX_HD static State merge(State a, State b) {
    if (is_nan(a.m)) return a;
    if (is_nan(b.m)) return b;
    if (b.s == A(0)) return a;
    if (a.s == A(0)) return b;
    if (a.m < b.m) {
      const State t = a;
      a = b;
      b = t;
    }
    return {a.m, a.s + b.s * exp_(b.m - a.m)};
  }
  SEQMIX_HD static A finish(State st, int64_t) {
    if (is_nan(st.m)) return st.m;
    if (st.s == A(0)) return -std::numeric_limits<A>::infinity();
    return st.m + log_(st.s);
  }
  SEQMIX_HD static float exp_(float x) { return ::expf(x); }
  SEQMIX_HD static double exp_(double x) { return ::exp(x); }
  SEQMIX_HD static float log_(float x) { return ::logf(x); }
  SEQMIX_HD static double log_(double x) { return ::log(x); }
};

#define SEQMIX_REDUCE_OP_CASE(OPNAME, ...)               \
  case ::seqmix::ops::ReduceOp::OPNAME: {                \
    constexpr auto OP = ::seqmix::ops::ReduceOp::OPNAME; \
    __VA_ARGS__;                                         \
    break;                                               \
  }
#define SEQMIX_DISPATCH_REDUCE_OP(op, ...)        \
  switch (op) {                                   \
    SEQMIX_REDUCE_OP_CASE(Sum, __VA_ARGS__)       \
    SEQMIX_REDUCE_OP_CASE(Mean, __VA_ARGS__)      \
    SEQMIX_REDUCE_OP_CASE(Max, __VA_ARGS__)       \
    SEQMIX_REDUCE_OP_CASE(Min, __VA_ARGS__)       \
    SEQMIX_REDUCE_OP_CASE(LogSumExp, __VA_ARGS__) \
  }

}  // namespace seqmix::ops::red
