// The gated-linear-attention mixers on CUDA: a small LM of each mixer (head dims 64/128, T not a
// multiple of the chunk size) in f32 matches the CPU model (logits, loss, every parameter
// gradient; rel RMS < 1e-4), and in bf16 (the training precision) its loss stays within 2e-2
// of the f32 loss, with f32 gradients on every master parameter. Each mixer alone on unit-scale
// inputs (perturbed norm weights and biases, long T through the chunked path): f32 output, input
// and parameter gradients match the same mixer in f64 on the CPU (< 1e-4, or 4× the CPU f32
// mixer's own error where the draw is ill-conditioned); the bf16 output is within 3e-2 of f32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "layers/language_model.h"
#include "layers/mixers/mixer.h"
#include "tests/testing/testing.h"

using namespace seqmix;
using namespace seqmix::nn;

namespace {
const Device kGpu = Device::cuda(0);

struct Case {
  MixerSpec spec;
  int64_t t;
};

// d_model 128: every mixer's head dims land on 64 or 128 (the chunked kernel's bf16 sizes).
std::vector<Case> cases() {
  return {
      {{"linear_attn", {{"n_heads", "2"}}}, 67},
      {{"linear_attn", {{"n_heads", "2"}, {"feature_map", "elu1"}, {"normalize", "true"}}}, 67},
      {{"retnet", {{"n_heads", "2"}}}, 67},
      {{"gla", {{"n_heads", "1"}}}, 67},
      {{"gla", {{"n_heads", "1"}}}, 130},
      {{"mamba2", {{"d_state", "64"}, {"head_dim", "64"}}}, 67},
      {{"hgrn2", {{"expand_ratio", "64"}}}, 67},
      {{"deltanet", {{"n_heads", "2"}}}, 67},
      {{"gated_deltanet", {{"n_heads", "1"}, {"expand_k", "0.5"}, {"expand_v", "1"}}}, 67},
      {{"kda", {{"n_heads", "2"}}}, 67},
  };
}
}  // namespace

TEST(MixersGpu, F32MatchesCpuAndBf16IsClose) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (const Case& k : cases()) {
    SCOPED_TRACE(k.spec.type + " T=" + std::to_string(k.t));
    LmConfig c;
    c.vocab_size = 16;
    c.d_model = 128;
    c.layers.assign(2, k.spec);
    c.init_seed = tu::next_seed();
    LanguageModel cpu(c), gpu(c);
    gpu.to(kGpu);
    const Tensor tokens = tu::randint({2, k.t}, 0, c.vocab_size);
    Tensor targets = tu::randint({2, k.t}, 0, c.vocab_size);
    targets.narrow(1, 0, 3).fill_(-100);
    const Tensor tg = tokens.to(kGpu), yg = targets.to(kGpu);

    const ForwardContext f32{DType::F32, true, nullptr};
    const Variable lc = cpu.logits(tokens, f32), lg = gpu.logits(tg, f32);
    EXPECT_EQ(lg.device(), kGpu);
    EXPECT_TRUE(tu::close(lg.data(), lc.data(), 1e-4));
    std::printf("%s T=%lld f32 logits gpu vs cpu: %s\n", k.spec.type.c_str(), (long long)k.t,
                tu::compare(lg.data(), lc.data()).str().c_str());
    const Variable loss_c = cpu.loss(tokens, targets, f32), loss_g = gpu.loss(tg, yg, f32);
    EXPECT_NEAR(loss_g.data().item(), loss_c.data().item(), 1e-4 * loss_c.data().item());
    loss_c.backward();
    loss_g.backward();
    const auto pc = cpu.named_parameters(), pg = gpu.named_parameters();
    ASSERT_EQ(pc.size(), pg.size());
    for (size_t i = 0; i < pc.size(); ++i) {
      SCOPED_TRACE(pc[i].first);
      ASSERT_TRUE(pg[i].second.grad().defined());
      EXPECT_TRUE(tu::close(pg[i].second.grad(), pc[i].second.grad(), 1e-4))
          << tu::compare(pg[i].second.grad(), pc[i].second.grad()).str();
    }

    const ForwardContext bf16{DType::BF16, true, nullptr};
    for (const Variable& p : gpu.parameters()) p.zero_grad();
    const Variable loss_b = gpu.loss(tg, yg, bf16);
    EXPECT_EQ(loss_b.dtype(), DType::F32);
    EXPECT_NEAR(loss_b.data().item(), loss_c.data().item(), 2e-2);
    std::printf("%s loss cpu f32 %.6f, gpu f32 %.6f, gpu bf16 %.6f\n", k.spec.type.c_str(),
                loss_c.data().item(), loss_g.data().item(), loss_b.data().item());
    loss_b.backward();
    for (const auto& [n, p] : gpu.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << n;
      EXPECT_EQ(p.grad().dtype(), DType::F32) << n;
      const auto g = p.grad().to(Device::cpu()).to_vector<double>();
      bool finite = true;
      for (double v : g) finite &= std::isfinite(v);
      EXPECT_TRUE(finite) << n;
    }
  }
}

TEST(MixersGpu, MixerAloneF32MatchesCpuAndBf16IsClose) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  struct MCase {
    MixerSpec spec;
    int64_t b, t;
  };
  const std::vector<MCase> mcases = {
      {{"linear_attn", {{"n_heads", "2"}, {"feature_map", "relu"}, {"output_norm", "true"}}},
       2,
       200},
      {{"retnet", {{"n_heads", "2"}}}, 1, 1000},
      {{"gla", {{"n_heads", "1"}}}, 1, 1000},
      {{"gla", {{"n_heads", "2"}, {"expand_k", "1"}}}, 3, 65},
      {{"mamba2", {{"d_state", "64"}, {"head_dim", "64"}}}, 1, 1000},
      {{"mamba2", {{"d_state", "128"}, {"head_dim", "64"}}}, 2, 63},
      {{"hgrn2", {{"expand_ratio", "64"}, {"lower_bound", "0.5"}}}, 1, 1000},
      {{"deltanet", {{"n_heads", "2"}, {"output_gate", "true"}}}, 2, 200},
      {{"gated_deltanet",
        {{"n_heads", "1"}, {"expand_k", "0.5"}, {"expand_v", "1"}, {"allow_neg_eigval", "true"}}},
       1,
       1000},
      {{"kda", {{"n_heads", "2"}}}, 1, 1000},
  };
  const int64_t d = 128;
  // The reference is the same mixer on the CPU in f64. The GPU's f32 result must be within
  // max(tol, 4 e) of it, where e is the CPU f32 mixer's own error against that reference: a draw
  // can make the function ill-conditioned, and then no f32 implementation is within 1e-4. Seen
  // with SEQMIX_TEST_SEED=1164275042 on gla (2 heads, B = 3, T = 65): at one position q_0 · k_0
  // cancels 4e3-fold and the pre-norm mean square is about the norm's eps, so one ulp of x moves
  // dx and the q / k projection gradients by 1e-4 to 3e-4, and the CPU f32 mixer is 2.4e-4 from
  // f64 there (GPU vs CPU f32: 1.0e-4). Elsewhere e is 3e-7 to 1e-6, and tol (1e-4) holds.
  auto check = [](const Tensor& gpu, const Tensor& cpu, const Tensor& ref, double tol) {
    const double e = tu::compare(cpu, ref).rel_rms;
    EXPECT_LE(e, 1e-3) << "the CPU f32 mixer against f64 (worst seen: 2.4e-4)";
    EXPECT_TRUE(tu::close(gpu, ref, std::max(tol, 4 * e)))
        << "gpu vs f64 " << tu::compare(gpu, ref).str() << "; cpu f32 vs f64 rel_rms " << e;
  };
  for (const MCase& k : mcases) {
    SCOPED_TRACE(k.spec.type + " B=" + std::to_string(k.b) + " T=" + std::to_string(k.t));
    const uint64_t seed = tu::next_seed();
    auto cpu = make_mixer(d, k.spec, seed), gpu = make_mixer(d, k.spec, seed),
         c64 = make_mixer(d, k.spec, seed);
    {
      NoGradGuard ng;
      for (const auto& [n, v] : cpu->named_parameters())
        v.data().copy_(ops::binary(ops::BinaryOp::Add, v.data(),
                                   tu::randn(v.shape(), v.dtype(), Device::cpu(), 0.1)));
      const auto pc = cpu->named_parameters(), pg = gpu->named_parameters(),
                 p64 = c64->named_parameters();
      for (size_t i = 0; i < pc.size(); ++i) {
        pg[i].second.data().copy_(pc[i].second.data());
        p64[i].second.data().copy_(pc[i].second.data());
      }
    }
    gpu->to(kGpu);
    c64->to(DType::F64);
    const Tensor x = tu::randn({k.b, k.t, d}, DType::F32);
    const Tensor w = tu::randn({k.b, k.t, d}, DType::F32);
    Variable xc(x.clone(), true), xg(x.to(kGpu), true), x64(x.to(DType::F64), true);
    const ForwardContext f32{DType::F32, true, nullptr};
    const Variable yc = cpu->forward(xc, f32), yg = gpu->forward(xg, f32),
                   y64 = c64->forward(x64, {DType::F64, true, nullptr});
    ASSERT_EQ(y64.data().dtype(), DType::F64);
    check(yg.data(), yc.data(), y64.data(), 1e-4);
    sum(mul(yc, Variable(w))).backward();
    sum(mul(yg, Variable(w.to(kGpu)))).backward();
    sum(mul(y64, Variable(w.to(DType::F64)))).backward();
    {
      SCOPED_TRACE("dx");
      check(xg.grad(), xc.grad(), x64.grad(), 1e-4);
    }
    const auto pc = cpu->named_parameters(), pg = gpu->named_parameters(),
               p64 = c64->named_parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      SCOPED_TRACE(pc[i].first);
      ASSERT_TRUE(pg[i].second.grad().defined());
      ASSERT_TRUE(p64[i].second.grad().defined());
      // A per-head scalar (Mamba-2's dt_bias, A_log, D: a few elements) has a gradient summed
      // over all B·T positions, whose terms can cancel: its f32 summation error is bounded by
      // ε Σ|terms|, not ε |Σ terms|, so its relative error has no bound at 1e-4 (dt_bias: 1.3e-4
      // for one seed on an H100, 4 elements). Those get 1e-3; every other gradient 1e-4.
      const double tol = pc[i].second.numel() <= 16 ? 1e-3 : 1e-4;
      check(pg[i].second.grad(), pc[i].second.grad(), p64[i].second.grad(), tol);
    }
    NoGradGuard ng;
    const Tensor yb =
        gpu->forward(Variable(x.to(kGpu, DType::BF16)), {DType::BF16, true, nullptr}).data();
    EXPECT_EQ(yb.dtype(), DType::BF16);
    const Tensor yb32 = yb.to(DType::F32);
    EXPECT_TRUE(tu::close(yb32, yg.data(), 3e-2));
    std::printf("%s B=%lld T=%lld: f32 gpu vs cpu f64 %s; bf16 vs f32 %s\n", k.spec.type.c_str(),
                (long long)k.b, (long long)k.t, tu::compare(yg.data(), y64.data()).str().c_str(),
                tu::compare(yb32, yg.data()).str().c_str());
  }
}
