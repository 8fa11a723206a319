// Fused ops: CUDA against the CPU reference for every output and gradient, f32 and 16-bit
// inputs, odd sizes (scalar paths) and aligned sizes (vector paths), poisoned outputs; and
// determinism of the backward kernels.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/elementwise.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/dropout/dropout.h"
#include "kernels/embedding/embedding.h"
#include "kernels/norm/norm.h"
#include "kernels/softmax/softmax.h"
#include "tests/testing/testing.h"

using namespace seqmix;

namespace {
const Device kGpu = Device::cuda(0);
// A private copy on d (to() returns the tensor itself when nothing changes; accumulators must
// not alias the test's originals).
Tensor copy_on(const Tensor& t, Device d) {
  return t.device() == d ? t.clone() : t.to(d);
}
}  // namespace

TEST(SoftmaxGpu, MatchesReference) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    for (const Shape& s :
         std::vector<Shape>{{7, 1}, {33, 100}, {5, 1024}, {3, 5000}, {2, 3, 257}}) {
      for (bool log : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " " + s.str() + (log ? " log" : ""));
        const Tensor x = tu::randn(s, t, Device::cpu(), 3.0), dy = tu::randn(s, t);
        SoftmaxFwdArgs c{x, x.empty_like(), log}, g{x.to(kGpu), Tensor::empty(s, t, kGpu), log};
        softmax_fwd(c);
        softmax_fwd(g);
        EXPECT_TRUE(tu::close(g.y, c.y, tu::tol_for(t)));
        SoftmaxBwdArgs cb{c.y, dy, dy.empty_like(), log};
        SoftmaxBwdArgs gb{c.y.to(kGpu), dy.to(kGpu), Tensor::empty(s, t, kGpu), log};
        softmax_bwd(cb);
        softmax_bwd(gb);
        EXPECT_TRUE(tu::close(gb.dx, cb.dx, tu::tol_for(t)));
      }
    }
  }
}

TEST(CrossEntropyGpu, MatchesReference) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (DType t : {DType::F32, DType::BF16, DType::F64}) {
    for (int64_t v : {5, 1000, 5003, 32000}) {
      for (LossReduction red : {LossReduction::Mean, LossReduction::Sum}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " V=" + std::to_string(v));
        const int64_t n = 67;
        const Tensor logits = tu::randn({n, v}, t, Device::cpu(), 2.0);
        Tensor targets = tu::randint({n}, 0, v);
        targets.narrow(0, 3, 5).fill_(-100);  // some ignored rows
        const DType sd = t == DType::F64 ? DType::F64 : DType::F32;
        auto make = [&](Device d) {
          CrossEntropyFwdArgs a;
          a.logits = logits.to(d);
          a.targets = targets.to(d);
          a.lse = Tensor::empty({n}, sd, d);
          a.loss = Tensor::empty({}, sd, d);
          a.count = Tensor::empty({}, sd, d);
          a.reduction = red;
          return a;
        };
        CrossEntropyFwdArgs c = make(Device::cpu()), g = make(kGpu);
        cross_entropy_fwd(c);
        cross_entropy_fwd(g);
        EXPECT_TRUE(tu::close(g.lse, c.lse, t == DType::F64 ? 1e-12 : 1e-6));
        EXPECT_TRUE(tu::close(g.loss, c.loss, t == DType::F64 ? 1e-12 : 1e-6));
        EXPECT_EQ(g.count.item(), double(n - 5));
        const Tensor dloss = Tensor::full({}, 1.7, sd);
        auto back = [&](const CrossEntropyFwdArgs& f, Device d) {
          CrossEntropyBwdArgs b;
          b.logits = f.logits;
          b.targets = f.targets;
          b.lse = f.lse;
          b.count = f.count;
          b.dloss = dloss.to(d);
          b.dlogits = f.logits.empty_like();
          b.reduction = red;
          cross_entropy_bwd(b);
          return b.dlogits;
        };
        EXPECT_TRUE(tu::close(back(g, kGpu), back(c, Device::cpu()), tu::tol_for(t)));
      }
    }
  }
  // In place (dlogits = logits) gives the same result.
  const Tensor logits = tu::randn({9, 4096}, DType::BF16);
  const Tensor targets = tu::randint({9}, 0, 4096);
  Variable lv(logits.to(kGpu), true);
  cross_entropy(lv, targets.to(kGpu)).backward();
  CrossEntropyFwdArgs f;
  f.logits = logits.to(kGpu);
  f.targets = targets.to(kGpu);
  f.lse = Tensor::empty({9}, DType::F32, kGpu);
  f.loss = Tensor::empty({}, DType::F32, kGpu);
  f.count = Tensor::empty({}, DType::F32, kGpu);
  cross_entropy_fwd(f);
  CrossEntropyBwdArgs b{f.logits, f.targets, f.lse, f.count, Tensor::ones({}, DType::F32, kGpu),
                        f.logits};
  cross_entropy_bwd(b);
  EXPECT_TRUE(tu::bitwise_equal(f.logits, lv.grad()));
  // An invalid target makes the loss NaN on the GPU.
  f.targets = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 9999}, {9}).to(kGpu);
  cross_entropy_fwd(f);
  EXPECT_TRUE(std::isnan(f.loss.item()));
}

TEST(NormGpu, MatchesReferenceAndIsDeterministic) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (NormKind kind : {NormKind::Rms, NormKind::Layer}) {
    for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
      for (DType wt : {t, DType::F32}) {
        if (t == DType::F64 && wt != DType::F64) continue;  // refused by norm_supports
        for (const Shape& s : std::vector<Shape>{{1, 8}, {37, 100}, {300, 768}, {2, 3, 1029}}) {
          SCOPED_TRACE(std::string(kind == NormKind::Rms ? "rms " : "layer ") + dtype_name(t) +
                       " w " + dtype_name(wt) + " " + s.str());
          const int64_t c = s.back(), n = s.numel() / c;
          const DType sd = t == DType::F64 ? DType::F64 : DType::F32;
          const Tensor x = tu::randn(s, t, Device::cpu(), 2.0);
          const Tensor w = tu::randn({c}, wt), b = tu::randn({c}, wt);
          const Tensor dy = tu::randn(s, t);
          const Tensor dw0 = tu::randn({c}, wt), db0 = tu::randn({c}, wt);
          NormFwdArgs fa[2];
          NormBwdArgs ba[2];
          const Device devs[2] = {Device::cpu(), kGpu};
          for (int i = 0; i < 2; ++i) {
            const Device d = devs[i];
            fa[i].kind = kind;
            fa[i].x = x.to(d);
            fa[i].weight = w.to(d);
            fa[i].bias = kind == NormKind::Layer ? b.to(d) : Tensor();
            fa[i].y = Tensor::empty(s, t, d);
            fa[i].rstd = Tensor::empty({n}, sd, d);
            fa[i].mean = kind == NormKind::Layer ? Tensor::empty({n}, sd, d) : Tensor();
            fa[i].eps = 1e-5;
            norm_fwd(fa[i]);
            ba[i].kind = kind;
            ba[i].x = fa[i].x;
            ba[i].weight = fa[i].weight;
            ba[i].mean = fa[i].mean;
            ba[i].rstd = fa[i].rstd;
            ba[i].dy = dy.to(d);
            ba[i].dx = Tensor::empty(s, t, d);
            ba[i].dweight = copy_on(dw0, d);  // accumulated into
            ba[i].dbias = kind == NormKind::Layer ? copy_on(db0, d) : Tensor();
            norm_bwd(ba[i]);
          }
          const double tol = tu::tol_for(t);
          EXPECT_TRUE(tu::close(fa[1].y, fa[0].y, tol));
          EXPECT_TRUE(tu::close(fa[1].rstd, fa[0].rstd, t == DType::F64 ? 1e-12 : 1e-6));
          if (kind == NormKind::Layer) {
            EXPECT_TRUE(tu::close(fa[1].mean, fa[0].mean, 1e-5));
          }
          EXPECT_TRUE(tu::close(ba[1].dx, ba[0].dx, tol));
          // Parameter grads of 16-bit parameters are rounded once more: 16-bit tolerance.
          const double ptol = tu::tol_for(wt == DType::F32 ? t : wt);
          EXPECT_TRUE(tu::close(ba[1].dweight, ba[0].dweight, std::max(ptol, 1e-5)));
          if (kind == NormKind::Layer) {
            EXPECT_TRUE(tu::close(ba[1].dbias, ba[0].dbias, std::max(ptol, 1e-5)));
          }
        }
      }
    }
  }
  // Determinism of the parameter gradient: bitwise equal across runs.
  const Tensor x = tu::randn({4099, 384}, DType::BF16, kGpu);
  const Tensor dy = tu::randn({4099, 384}, DType::BF16, kGpu);
  Tensor w = tu::randn({384}, DType::F32, kGpu), rstd = Tensor::empty({4099}, DType::F32, kGpu);
  NormFwdArgs f{NormKind::Rms, x, w, Tensor(), x.empty_like(), Tensor(), rstd, 1e-6};
  norm_fwd(f);
  Tensor dw1 = Tensor::zeros({384}, DType::F32, kGpu), dw2 = Tensor::zeros({384}, DType::F32, kGpu);
  norm_bwd({NormKind::Rms, x, w, Tensor(), rstd, dy, Tensor(), dw1, Tensor()});
  norm_bwd({NormKind::Rms, x, w, Tensor(), rstd, dy, Tensor(), dw2, Tensor()});
  EXPECT_TRUE(tu::bitwise_equal(dw1, dw2));
}

TEST(EmbeddingGpu, MatchesReferenceAndIsDeterministic) {
  SEQMIX_REQUIRE_CUDA();
  SEQMIX_TRACE_SEED();
  for (DType wt : {DType::F32, DType::BF16}) {
    for (DType ot : {DType::F32, DType::BF16}) {
      for (int64_t v : {7, 65, 32000}) {
        for (int64_t c : {1, 96, 385}) {
          SCOPED_TRACE(std::string(dtype_name(wt)) + "->" + dtype_name(ot) +
                       " V=" + std::to_string(v) + " C=" + std::to_string(c));
          const int64_t n = 2000;  // with V = 7 every index repeats ~300 times
          const Tensor w = tu::randn({v, c}, wt);
          const Tensor idx = tu::randint({n}, 0, v, v % 2 ? DType::I64 : DType::I32);
          EmbeddingFwdArgs fc{w, idx, Tensor::empty({n, c}, ot)};
          EmbeddingFwdArgs fg{w.to(kGpu), idx.to(kGpu), Tensor::empty({n, c}, ot, kGpu)};
          embedding_fwd(fc);
          embedding_fwd(fg);
          EXPECT_TRUE(tu::bitwise_equal(fg.out, fc.out));
          const Tensor dout = tu::randn({n, c}, ot);
          const Tensor dw0 = tu::randn({v, c}, wt);
          EmbeddingBwdArgs bc{idx, dout, dw0.clone()};
          EmbeddingBwdArgs bg{idx.to(kGpu), dout.to(kGpu), dw0.to(kGpu)};
          embedding_bwd(bc);
          embedding_bwd(bg);
          EXPECT_TRUE(tu::close(bg.dweight, bc.dweight, tu::tol_for(wt == DType::F32 ? ot : wt)));
          if (wt == DType::F32 && ot == DType::F32) {
            // From a zero gradient the GPU adds rows in the CPU's order (increasing position):
            // bitwise equal to the CPU, and bitwise reproducible across runs.
            EmbeddingBwdArgs zc{idx, dout, Tensor::zeros({v, c}, wt)};
            EmbeddingBwdArgs z1{idx.to(kGpu), dout.to(kGpu), Tensor::zeros({v, c}, wt, kGpu)};
            EmbeddingBwdArgs z2{idx.to(kGpu), dout.to(kGpu), Tensor::zeros({v, c}, wt, kGpu)};
            embedding_bwd(zc);
            embedding_bwd(z1);
            embedding_bwd(z2);
            EXPECT_TRUE(tu::bitwise_equal(z1.dweight, zc.dweight));
            EXPECT_TRUE(tu::bitwise_equal(z1.dweight, z2.dweight));
          }
        }
      }
    }
  }
  // Invalid indices: NaN rows forward, ignored backward.
  const Tensor w = tu::randn({4, 8}, DType::F32, kGpu);
  const Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 4, -1}, {3}).to(kGpu);
  EmbeddingFwdArgs f{w, bad, Tensor::empty({3, 8}, DType::F32, kGpu)};
  embedding_fwd(f);
  const auto out = f.out.to_vector<float>();
  EXPECT_FALSE(std::isnan(out[0]));
  EXPECT_TRUE(std::isnan(out[8]) && std::isnan(out[16]));
}

TEST(DropoutGpu, SameMaskAsCpu) {
  SEQMIX_REQUIRE_CUDA();
  for (DType t : {DType::F32, DType::BF16}) {
    const Tensor x = tu::randn({3, 1001}, t);
    const uint64_t seed = tu::next_seed();
    DropoutArgs c{x, x.empty_like(), 0.25, seed, 11};
    DropoutArgs g{x.to(kGpu), Tensor::empty(x.shape(), t, kGpu), 0.25, seed, 11};
    dropout_apply(c);
    dropout_apply(g);
    EXPECT_TRUE(tu::bitwise_equal(g.out, c.out)) << dtype_name(t);
  }
}
