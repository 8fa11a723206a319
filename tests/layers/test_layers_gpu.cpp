// layers/ on CUDA: the small attention LM in f32 matches the CPU model (logits, loss, every
// parameter gradient) and in bf16 (the training precision) stays close to the f32 loss.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "autograd/functions.h"
#include "layers/language_model.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using namespace seqmix::nn;

namespace {
const Device kGpu = Device::cuda(0);

LmConfig gpu_config() {
  // head_dim 64: the fused CUDA attention supports D in {64, 128} in bf16.
  LmConfig c;
  c.vocab_size = 16;
  c.d_model = 128;
  c.layers.assign(2, MixerSpec{"attention", {{"n_heads", "2"}}});
  c.init_seed = tu::next_seed();
  return c;
}
}  // namespace

TEST(LanguageModelGpu, F32MatchesCpuAndBf16IsClose) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  const LmConfig c = gpu_config();
  LanguageModel cpu(c), gpu(c);
  gpu.to(kGpu);
  for (const Variable& p : gpu.parameters()) ASSERT_TRUE(p.device() == kGpu);
  const Tensor tokens = tu::randint({2, 67}, 0, c.vocab_size);
  Tensor targets = tu::randint({2, 67}, 0, c.vocab_size);
  targets.narrow(1, 0, 3).fill_(-100);
  const Tensor tg = tokens.to(kGpu), yg = targets.to(kGpu);

  const ForwardContext f32{DType::F32, true, nullptr};
  const Variable lc = cpu.logits(tokens, f32), lg = gpu.logits(tg, f32);
  EXPECT_EQ(lg.device(), kGpu);
  EXPECT_TRUE(tu::close(lg.data(), lc.data(), 1e-4));
  std::printf("f32 logits gpu vs cpu: %s\n", tu::compare(lg.data(), lc.data()).str().c_str());
  const Variable loss_c = cpu.loss(tokens, targets, f32), loss_g = gpu.loss(tg, yg, f32);
  EXPECT_NEAR(loss_g.data().item(), loss_c.data().item(), 1e-4 * loss_c.data().item());
  loss_c.backward();
  loss_g.backward();
  const auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    SCOPED_TRACE(pc[i].first);
    ASSERT_TRUE(pg[i].second.grad().defined());
    EXPECT_TRUE(tu::close(pg[i].second.grad(), pc[i].second.grad(), 1e-4));
  }

  const ForwardContext bf16{DType::BF16, true, nullptr};
  const Variable lb = gpu.logits(tg, bf16);
  EXPECT_EQ(lb.dtype(), DType::BF16);
  const Variable loss_b = gpu.loss(tg, yg, bf16);
  EXPECT_EQ(loss_b.dtype(), DType::F32);
  EXPECT_NEAR(loss_b.data().item(), loss_c.data().item(), 2e-2);
  std::printf("loss cpu f32 %.6f, gpu f32 %.6f, gpu bf16 %.6f\n", loss_c.data().item(),
              loss_g.data().item(), loss_b.data().item());
  for (const Variable& p : gpu.parameters()) p.zero_grad();
  loss_b.backward();
  for (const auto& [n, p] : gpu.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << n;
    EXPECT_EQ(p.grad().dtype(), DType::F32) << n;
  }
  // Moving back to the CPU gives the CPU model's parameters exactly (init drawn on the CPU).
  gpu.to(Device::cpu());
  for (size_t i = 0; i < pc.size(); ++i)
    EXPECT_TRUE(tu::bitwise_equal(pg[i].second.data(), pc[i].second.data())) << pc[i].first;
}

TEST(LanguageModelGpu, DropoutMasksMatchCpu) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  LmConfig c = gpu_config();
  c.dropout = 0.2;
  LanguageModel cpu(c), gpu(c);
  gpu.to(kGpu);
  const Tensor tokens = tu::randint({2, 33}, 0, c.vocab_size),
               targets = tu::randint({2, 33}, 0, c.vocab_size);
  Generator g1(tu::next_seed()), g2(g1.seed());
  const double lc = cpu.loss(tokens, targets, {DType::F32, true, &g1}).data().item();
  const double lg =
      gpu.loss(tokens.to(kGpu), targets.to(kGpu), {DType::F32, true, &g2}).data().item();
  EXPECT_NEAR(lg, lc, 1e-4 * lc);
}
