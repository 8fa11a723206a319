// train/optim on the GPU: the clipper and the fused multi-tensor AdamW against the CPU path
// (rel RMS < 1e-6, and bitwise: both paths do the same rounded f32 operations) over many
// parameters of odd sizes and alignments, skip-on-non-finite, determinism, no allocation in the
// step after construction, and no host synchronisation (the step is captured as a CUDA graph).
#include <gtest/gtest.h>

#include <limits>

#include "core/allocator.h"
#include "tests/testing/testing.h"
#include "train/optim/adamw.h"
#include "train/optim/grad_norm.h"

#if SEQMIX_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

using namespace seqmix;

namespace {
const Device kGpu = Device::cuda(0);

// Many parameters: odd sizes, a multi-chunk one, an empty one, a 0-d one, and views at an odd
// element offset (not 16-byte aligned: the scalar path).
struct Model {
  std::vector<Tensor> params, grads;
  std::vector<bool> decay;
  Tensor flat_p, flat_g;  // storage for the misaligned views
  std::vector<Shape> shapes = {{1}, {3, 5},   {17}, {7, 129},   {100003}, {0, 4},
                               {},  {64, 64}, {33}, {5, 3, 11}, {65537},  {2}};

  // Draws everything on the CPU; `d` gets copies.
  static std::pair<Model, Model> make() {
    Model c, g;
    int i = 0;
    for (const Shape& s : c.shapes) {
      const Tensor p = tu::randn(s, DType::F32);
      c.params.push_back(p);
      c.grads.push_back(Tensor::zeros(s, DType::F32));
      g.params.push_back(p.to(kGpu));
      g.grads.push_back(Tensor::zeros(s, DType::F32, kGpu));
      c.decay.push_back(i % 3 != 0);
      g.decay.push_back(i % 3 != 0);
      ++i;
    }
    // Two misaligned views (offset 1 element) into flat buffers.
    const Tensor fp = tu::randn({1 + 1001}, DType::F32);
    c.flat_p = fp.clone();
    g.flat_p = fp.to(kGpu);
    c.flat_g = Tensor::zeros({1002}, DType::F32);
    g.flat_g = Tensor::zeros({1002}, DType::F32, kGpu);
    for (Model* m : {&c, &g}) {
      m->params.push_back(m->flat_p.narrow(0, 1, 1001));
      m->grads.push_back(m->flat_g.narrow(0, 1, 1001));
      m->decay.push_back(true);
    }
    return {std::move(c), std::move(g)};
  }
  std::vector<ParamRef> refs() const {
    std::vector<ParamRef> r;
    for (size_t i = 0; i < params.size(); ++i)
      r.push_back({params[i], grads[i], decay[i], std::string("p").append(std::to_string(i))});
    return r;
  }
};

// Fresh gradients: the same values on both devices.
void fill_grads(Model& c, Model& g, double std) {
  for (size_t i = 0; i < c.grads.size(); ++i) {
    const Tensor x = tu::randn(c.grads[i].shape(), DType::F32, Device::cpu(), std);
    c.grads[i].copy_(x);
    g.grads[i].copy_(x);
  }
}
}  // namespace

TEST(OptimGpu, ClipperMatchesCpu) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  auto [c, g] = Model::make();
  fill_grads(c, g, 0.5);
  for (double max_norm : {0.0, 1.0, 1e6}) {
    GradClipper cc(c.grads, max_norm), gc(g.grads, max_norm);
    cc.compute();
    gc.compute();
    EXPECT_TRUE(tu::close(gc.norm(), cc.norm(), 1e-6));
    EXPECT_TRUE(tu::close(gc.scale(), cc.scale(), 1e-6));
    EXPECT_EQ(gc.read_nonfinite(), false);
    // Deterministic: a second computation is bitwise equal.
    const Tensor n1 = gc.norm().clone();
    gc.compute();
    EXPECT_TRUE(tu::bitwise_equal(gc.norm(), n1));
  }
  GradClipper gc(g.grads, 1.0);
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    g.grads[4].narrow(0, 77777, 1).fill_(bad);
    gc.compute();
    EXPECT_TRUE(gc.read_nonfinite());
    g.grads[4].narrow(0, 77777, 1).copy_(c.grads[4].narrow(0, 77777, 1));
    gc.compute();
    EXPECT_FALSE(gc.read_nonfinite());
  }
}

TEST(OptimGpu, AdamWMatchesCpuAndIsDeterministic) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  auto [c, g] = Model::make();
  // A second GPU replica for the determinism check.
  Model g2;
  g2.shapes = g.shapes;
  for (size_t i = 0; i < g.params.size(); ++i) {
    g2.params.push_back(g.params[i].clone());
    g2.grads.push_back(g.grads[i]);  // shares the gradients
    g2.decay.push_back(g.decay[i]);
  }
  AdamWConfig cfg;
  cfg.weight_decay = 0.05;
  AdamW co(c.refs(), cfg), go(g.refs(), cfg), go2(g2.refs(), cfg);
  GradClipper cc(c.grads, 2.0), gc(g.grads, 2.0);
  for (int step = 0; step < 8; ++step) {
    fill_grads(c, g, step % 2 ? 0.2 : 0.01);
    cc.compute();
    gc.compute();
    const double lr = 1e-2 / (1 + step);
    co.step(lr, cc);
    go.step(lr, gc);
    go2.step(lr, gc);
  }
  EXPECT_EQ(go.read_applied_steps(), 8);
  const auto cs = co.state(), gs = go.state();
  for (size_t i = 0; i < c.params.size(); ++i) {
    SCOPED_TRACE("param " + std::to_string(i) + " " + c.params[i].shape_str());
    if (c.params[i].numel() == 0) continue;
    EXPECT_TRUE(tu::close(g.params[i], c.params[i], 1e-6));
    EXPECT_TRUE(tu::close(gs[2 * i].second, cs[2 * i].second, 1e-6));
    EXPECT_TRUE(tu::close(gs[2 * i + 1].second, cs[2 * i + 1].second, 1e-6));
    // The update is the same sequence of rounded f32 operations on both devices.
    EXPECT_TRUE(tu::bitwise_equal(g.params[i].cpu(), c.params[i]));
    EXPECT_TRUE(tu::bitwise_equal(g.params[i], g2.params[i]));
  }
}

TEST(OptimGpu, NonFiniteSkipsStepBitwise) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  auto [c, g] = Model::make();
  AdamW go(g.refs());
  GradClipper gc(g.grads, 1.0);
  fill_grads(c, g, 0.3);
  gc.compute();
  go.step(1e-2, gc);
  std::vector<Tensor> before;
  for (const Tensor& p : g.params) before.push_back(p.clone());
  std::vector<Tensor> state_before;
  for (const auto& [k, t] : go.state()) state_before.push_back(t.clone());
  g.grads[7].narrow(0, 5, 1).fill_(std::numeric_limits<float>::quiet_NaN());
  gc.compute();
  go.step(1e-2, gc);
  go.step(1e-2, gc);  // two skipped steps in a row (both counter slots exercised)
  EXPECT_EQ(go.attempted_steps(), 3);
  EXPECT_EQ(go.read_applied_steps(), 1);
  EXPECT_TRUE(gc.read_nonfinite());
  for (size_t i = 0; i < g.params.size(); ++i)
    EXPECT_TRUE(tu::bitwise_equal(g.params[i], before[i])) << i;
  const auto after = go.state();
  for (size_t i = 0; i < 2 * g.params.size(); ++i)
    EXPECT_TRUE(tu::bitwise_equal(after[i].second, state_before[i])) << after[i].first;
  fill_grads(c, g, 0.3);
  gc.compute();
  go.step(1e-2, gc);
  EXPECT_EQ(go.read_applied_steps(), 2);
  EXPECT_FALSE(tu::bitwise_equal(g.params[4], before[4]));
}

TEST(OptimGpu, NoAllocationAndNoHostSyncInStep) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
#if SEQMIX_WITH_CUDA
  auto [c, g] = Model::make();
  auto [c2, g2] = Model::make();
  for (size_t i = 0; i < g.params.size(); ++i) {  // g2 starts equal to g
    g2.params[i].copy_(g.params[i]);
  }
  AdamW go(g.refs()), go2(g2.refs());
  GradClipper gc(g.grads, 1.0), gc2(g2.grads, 1.0);
  fill_grads(c, g, 0.3);
  for (size_t i = 0; i < g.grads.size(); ++i) g2.grads[i].copy_(g.grads[i]);
  // Warm-up step, then count allocations over further steps.
  gc.compute();
  go.step(1e-3, gc);
  cuda::synchronize(0);
  const memory::Stats s0 = memory::stats(kGpu);
  for (int i = 0; i < 5; ++i) {
    gc.compute();
    go.step(1e-3 * (i + 2), gc);
  }
  const memory::Stats s1 = memory::stats(kGpu);
  EXPECT_EQ(s1.num_allocs, s0.num_allocs);
  EXPECT_EQ(s1.num_device_allocs, s0.num_device_allocs);

  // Capture clipper + step in a CUDA graph (global capture mode fails on any synchronising call
  // or legacy-stream use), then replay it and compare with the same step run eagerly.
  gc2.compute();
  go2.step(1e-3, gc2);
  for (int i = 0; i < 5; ++i) {
    gc2.compute();
    go2.step(1e-3 * (i + 2), gc2);
  }
  cudaStream_t stream = cuda::current_stream(0);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  bool threw = false;
  try {
    gc.compute();
    go.step(5e-3, gc);
  } catch (const std::exception& e) {
    threw = true;
    ADD_FAILURE() << "step failed under capture: " << e.what();
  }
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_FALSE(threw);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  cuda::synchronize(0);
  gc2.compute();
  go2.step(5e-3, gc2);
  for (size_t i = 0; i < g.params.size(); ++i)
    EXPECT_TRUE(tu::bitwise_equal(g.params[i], g2.params[i])) << i;
  EXPECT_EQ(go.read_applied_steps(), 7);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
#endif
}
