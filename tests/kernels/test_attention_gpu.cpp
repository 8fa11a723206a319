// Softmax attention on CUDA against the fp64 CPU reference for o, lse, dq, dk, dv: bf16 (tensor
// core FlashAttention-2 kernels, D in {64, 128}) and f32 (SIMT path) inputs, T in {1, 63, 64, 65,
// 257, 1000}, H = Hkv and H = 4 Hkv, causal / sliding window / full; fresh random inputs, outputs
// freshly allocated (poisoned with NaN by the test main). Also: bitwise determinism of the
// backward, a long sequence (T = 8192), the autograd path, and the refusals of unsupported inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/cuda/runtime.h"
#include "core/error.h"
#include "kernels/attention/attention.h"
#include "tests/testing/testing.h"

using namespace seqmix;

namespace {
const Device kGpu = Device::cuda(0);

struct Case {
  DType dtype;
  int64_t b, t, h, hkv, d;
  bool causal;
  int64_t window;
  std::string str() const {
    return std::string(dtype_name(dtype)) + " B=" + std::to_string(b) + " T=" + std::to_string(t) +
           " H=" + std::to_string(h) + " Hkv=" + std::to_string(hkv) + " D=" + std::to_string(d) +
           (causal ? " causal" : " full") + " window=" + std::to_string(window);
  }
};

struct Result {
  Tensor o, lse, dq, dk, dv;
};

// Forward + backward on `dev`; the backward consumes this device's own o and lse.
Result run(const Case& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
           Device dev, DType dt) {
  const DType sd = dt == DType::F64 ? DType::F64 : DType::F32;
  AttentionFwdArgs f;
  f.q = q.to(dev, dt);
  f.k = k.to(dev, dt);
  f.v = v.to(dev, dt);
  f.o = Tensor::empty(f.q.shape(), dt, dev);
  f.lse = Tensor::empty({c.b, c.h, c.t}, sd, dev);
  f.causal = c.causal;
  f.window = c.window;
  attention_fwd(f);
  AttentionBwdArgs g;
  g.q = f.q;
  g.k = f.k;
  g.v = f.v;
  g.o = f.o;
  g.lse = f.lse;
  g.dout = dout.to(dev, dt);
  g.dq = Tensor::empty(f.q.shape(), dt, dev);
  g.dk = Tensor::empty(f.k.shape(), dt, dev);
  g.dv = Tensor::empty(f.v.shape(), dt, dev);
  g.causal = c.causal;
  g.window = c.window;
  attention_bwd(g);
  return {f.o, f.lse, g.dq, g.dk, g.dv};
}

// Worst relative RMS / max-abs error per output over the cases of one check_all (reported).
tu::Comparison g_worst[5];

void check_case(const Case& c) {
  SCOPED_TRACE(c.str());
  // Inputs drawn in the tested dtype, so the fp64 reference sees exactly the same values.
  const Tensor q = tu::randn({c.b, c.t, c.h, c.d}, c.dtype);
  const Tensor k = tu::randn({c.b, c.t, c.hkv, c.d}, c.dtype);
  const Tensor v = tu::randn({c.b, c.t, c.hkv, c.d}, c.dtype);
  const Tensor dout = tu::randn({c.b, c.t, c.h, c.d}, c.dtype);
  const Result ref = run(c, q, k, v, dout, Device::cpu(), DType::F64);
  const Result got = run(c, q, k, v, dout, kGpu, c.dtype);
  const double tol = tu::tol_for(c.dtype);
  const char* names[] = {"o", "lse", "dq", "dk", "dv"};
  const Tensor* g[] = {&got.o, &got.lse, &got.dq, &got.dk, &got.dv};
  const Tensor* r[] = {&ref.o, &ref.lse, &ref.dq, &ref.dk, &ref.dv};
  for (int i = 0; i < 5; ++i) {
    const tu::Comparison cmp = tu::compare(*g[i], *r[i]);
    EXPECT_TRUE(tu::close(*g[i], *r[i], tol)) << names[i] << ": " << cmp.str();
    g_worst[i].rel_rms = std::max(g_worst[i].rel_rms, cmp.rel_rms);
    g_worst[i].max_abs = std::max(g_worst[i].max_abs, cmp.max_abs);
  }
}

void check_all(DType dt) {
  for (tu::Comparison& w : g_worst) w = {};
  for (int64_t d : {64, 128})
    for (int64_t t : {1, 63, 64, 65, 257, 1000})
      for (const auto& [h, hkv] : {std::pair<int64_t, int64_t>{2, 2}, {4, 1}})
        for (const auto& [causal, window] :
             {std::pair<bool, int64_t>{true, 0}, {true, 100}, {false, 0}})
          check_case({dt, 2, t, h, hkv, d, causal, window});
  const char* names[] = {"o", "lse", "dq", "dk", "dv"};
  for (int i = 0; i < 5; ++i)
    std::printf("attention %s worst %s: rel_rms %.3g max_abs %.3g\n", dtype_name(dt), names[i],
                g_worst[i].rel_rms, g_worst[i].max_abs);
}
}  // namespace

TEST(AttentionGpu, Bf16MatchesReference) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  check_all(DType::BF16);
}

TEST(AttentionGpu, F32MatchesReference) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  check_all(DType::F32);
}

TEST(AttentionGpu, BackwardIsDeterministic) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (DType dt : {DType::BF16, DType::F32}) {
    for (int64_t d : {64, 128}) {
      const Case c{dt, 2, 700, 8, 2, d, true, 0};
      SCOPED_TRACE(c.str());
      const Tensor q = tu::randn({c.b, c.t, c.h, c.d}, dt), dout = tu::randn(q.shape(), dt);
      const Tensor k = tu::randn({c.b, c.t, c.hkv, c.d}, dt), v = tu::randn(k.shape(), dt);
      const Result a = run(c, q, k, v, dout, kGpu, dt), b = run(c, q, k, v, dout, kGpu, dt);
      EXPECT_TRUE(tu::bitwise_equal(a.o, b.o));
      EXPECT_TRUE(tu::bitwise_equal(a.dq, b.dq));
      EXPECT_TRUE(tu::bitwise_equal(a.dk, b.dk));
      EXPECT_TRUE(tu::bitwise_equal(a.dv, b.dv));
    }
  }
}

TEST(AttentionGpu, LongSequence) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  // T = 8192: many tiles per grid row; the sliding window case also checks tile skipping far from
  // the start of the sequence. Compared in full with the reference.
  for (const auto& [causal, window] : {std::pair<bool, int64_t>{true, 256}, {true, 0}})
    check_case({DType::BF16, 1, 8192, 2, 1, 64, causal, window});
  check_case({DType::BF16, 1, 8192, 1, 1, 128, true, 1000});
}

TEST(AttentionGpu, AutogradMatchesArgsApi) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  const Case c{DType::BF16, 2, 130, 4, 2, 64, true, 50};
  const Tensor q = tu::randn({c.b, c.t, c.h, c.d}, c.dtype), dout = tu::randn(q.shape(), c.dtype);
  const Tensor k = tu::randn({c.b, c.t, c.hkv, c.d}, c.dtype), v = tu::randn(k.shape(), c.dtype);
  const Result r = run(c, q, k, v, dout, kGpu, c.dtype);
  Variable qv(q.to(kGpu), true), kv(k.to(kGpu), true), vv(v.to(kGpu), true);
  const Variable o = attention(qv, kv, vv, {0, c.causal, c.window});
  o.backward(dout.to(kGpu));
  EXPECT_TRUE(tu::bitwise_equal(o.data(), r.o));
  EXPECT_TRUE(tu::bitwise_equal(qv.grad(), r.dq));
  EXPECT_TRUE(tu::bitwise_equal(kv.grad(), r.dk));
  EXPECT_TRUE(tu::bitwise_equal(vv.grad(), r.dv));
}

TEST(AttentionGpu, RefusesUnsupportedInputs) {
  SEQMIX_REQUIRE_CUDA();
  auto expect_unsupported = [](DType dt, int64_t d) {
    const Variable q(Tensor::zeros({1, 4, 2, d}, dt, kGpu)),
        k(Tensor::zeros({1, 4, 1, d}, dt, kGpu));
    try {
      attention(q, k, k);
      ADD_FAILURE() << "expected Error(Unsupported) for " << dtype_name(dt) << " D=" << d;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.message();
    }
  };
  expect_unsupported(DType::BF16, 32);
  expect_unsupported(DType::BF16, 96);
  expect_unsupported(DType::F16, 64);
  expect_unsupported(DType::F64, 64);
  expect_unsupported(DType::F32, 512);
}

