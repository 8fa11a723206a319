// `seqmix bench op matmul|copy`: the two ceilings of a device (matrix throughput through
// cuBLASLt, memory bandwidth through seqmix's copy kernel), reported as the median of repeated
// runs; `seqmix bench kernel <name>`: a fused kernel's forward and forward+backward times.
// `seqmix bench train CONFIG`: optimizer steps of a config's model on random tokens.
#include "train/cli/bench.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cmath>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/matmul.h"
#include "core/ops/random.h"
#include "core/tensor.h"
#include "kernels/attention/attention.h"
#include "kernels/delta_rule/delta_rule.h"
#include "kernels/gla/gla.h"
#include "kernels/short_conv/short_conv.h"
#include "train/cli/timing.h"
#include "train/trainer.h"

namespace seqmix::cli {

namespace {

struct CommonOpts {
  std::string device = "auto";
  int warmup = 10;
  int iters = 50;
  bool json = false;
};

Device pick_device(const std::string& s) {
  if (s == "auto") return cuda::is_available() ? Device::cuda(0) : Device::cpu();
  Device d;
  try {
    d = parse_device(s);
  } catch (const Error& e) {
    SEQMIX_THROW(Usage, "--device: {}", e.message());
  }
  if (d.is_cuda()) {
    SEQMIX_CHECK_KIND(Usage, cuda::is_available(), "--device {}: {}", s,
                      cuda::unavailable_reason());
    SEQMIX_CHECK_KIND(Usage, d.index < cuda::device_count(),
                      "--device {}: this machine has {} CUDA device(s)", s, cuda::device_count());
  }
  return d;
}

std::string device_name(Device d) {
  return d.is_cuda() ? fmt::format("{} ({})", cuda::props(d.index).name, d.str()) : "cpu";
}

void add_common(CLI::App* c, CommonOpts& o) {
  c->add_option("--device", o.device, "cpu, cuda, cuda:N or auto (a GPU when present)")
      ->capture_default_str();
  c->add_option("--warmup", o.warmup, "untimed runs first")->capture_default_str();
  c->add_option("--iters", o.iters, "timed runs; the median is reported")->capture_default_str();
  c->add_flag("--json", o.json, "print one JSON object instead of a table");
}

void report(const CommonOpts& o, const std::string& what, Device dev, const Timing& t,
            const std::string& rate_name, double rate_per_ms) {
  const double med = t.median();
  const double rate = rate_per_ms / med;
  if (o.json) {
    fmt::print(
        "{{\"bench\": \"{}\", \"device\": \"{}\", \"median_ms\": {:.6f}, \"min_ms\": {:.6f}, "
        "\"max_ms\": {:.6f}, \"runs\": {}, \"{}\": {:.3f}}}\n",
        what, device_name(dev), med, t.min(), t.max(), t.ms.size(), rate_name, rate);
  } else {
    fmt::print("{:<40} {:>10} {:>10} {:>10} {:>12}\n", "bench", "median ms", "min ms", "max ms",
               rate_name);
    fmt::print("{:<40} {:>10.4f} {:>10.4f} {:>10.4f} {:>12.2f}\n", what, med, t.min(), t.max(),
               rate);
    fmt::print("device: {}, {} timed runs after {} warm-up runs\n", device_name(dev), t.ms.size(),
               o.warmup);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Time ops, kernels and training steps");
  bench->require_subcommand(1);
  CLI::App* op = bench->add_subcommand("op", "Time a primitive op: matmul or copy");
  op->require_subcommand(1);

  // ---- matmul ----
  auto mm = std::make_shared<CommonOpts>();
  auto mm_shape =
      std::make_shared<std::array<int64_t, 4>>(std::array<int64_t, 4>{8192, 8192, 8192, 1});
  auto mm_dtype = std::make_shared<std::string>("bf16");
  CLI::App* c_mm = op->add_subcommand(
      "matmul", "C[M,N] = A[M,K] B[K,N] (cuBLASLt on GPU, OpenBLAS on CPU); prints TFLOP/s");
  c_mm->add_option("--m", (*mm_shape)[0], "rows of A and C")->capture_default_str();
  c_mm->add_option("--n", (*mm_shape)[1], "columns of B and C")->capture_default_str();
  c_mm->add_option("--k", (*mm_shape)[2], "inner dimension")->capture_default_str();
  c_mm->add_option("--batch", (*mm_shape)[3], "independent products")->capture_default_str();
  c_mm->add_option("--dtype", *mm_dtype, "bf16, f16, f32 or f64")->capture_default_str();
  add_common(c_mm, *mm);
  c_mm->callback([mm, mm_shape, mm_dtype] {
    const Device dev = pick_device(mm->device);
    const DType dt = parse_dtype(*mm_dtype);
    const auto [m, n, k, b] = *mm_shape;
    SEQMIX_CHECK_KIND(Usage, m > 0 && n > 0 && k > 0 && b > 0, "matmul sizes must be positive");
    Generator gen(0);
    const Shape sa = b > 1 ? Shape{b, m, k} : Shape{m, k};
    const Shape sb = b > 1 ? Shape{b, k, n} : Shape{k, n};
    const Shape sc = b > 1 ? Shape{b, m, n} : Shape{m, n};
    Tensor A = Tensor::empty(sa, dt, dev), B = Tensor::empty(sb, dt, dev),
           C = Tensor::empty(sc, dt, dev);
    ops::normal_(A, 0.0, 1.0, gen);  // random data: zeros run faster than real data
    ops::normal_(B, 0.0, 1.0, gen);
    const Timing t =
        time_runs(dev, mm->warmup, mm->iters, [&] { ops::matmul_out(C, A, B, 1.0, 0.0); });
    const double flops = 2.0 * double(m) * double(n) * double(k) * double(b);
    report(*mm,
           fmt::format("matmul {} {}x{}x{}{}", dtype_name(dt), m, n, k,
                       b > 1 ? fmt::format(" x{}", b) : ""),
           dev, t, "TFLOP/s", flops / 1e9);
  });

  // ---- copy ----
  auto cp = std::make_shared<CommonOpts>();
  auto cp_mib = std::make_shared<int64_t>(1024);
  CLI::App* c_cp = op->add_subcommand(
      "copy", "Contiguous device copy with seqmix's copy kernel; prints GB/s read + write");
  c_cp->add_option("--mib", *cp_mib, "bytes copied per run, in MiB")->capture_default_str();
  add_common(c_cp, *cp);
  c_cp->callback([cp, cp_mib] {
    const Device dev = pick_device(cp->device);
    SEQMIX_CHECK_KIND(Usage, *cp_mib > 0, "--mib must be positive");
    const int64_t n = *cp_mib * (int64_t(1) << 20) / 4;
    Generator gen(0);
    Tensor src = Tensor::empty({n}, DType::F32, dev), dst = Tensor::empty({n}, DType::F32, dev);
    ops::uniform_(src, -1.0, 1.0, gen);
    const Timing t = time_runs(dev, cp->warmup, cp->iters, [&] { dst.copy_(src); });
    const double bytes = 2.0 * double(n) * 4.0;  // read + write
    report(*cp, fmt::format("copy {} MiB", *cp_mib), dev, t, "GB/s", bytes / 1e6);
  });

  // ---- kernels ----
  CLI::App* kernel =
      bench->add_subcommand("kernel", "Time a fused kernel's forward and forward+backward");
  kernel->require_subcommand(1);
  struct AttnShape {
    int64_t b = 8, t = 2048, h = 16, hkv = 0, d = 64, window = 0;
    std::string dtype = "bf16";
    bool causal = true;
  };
  auto at = std::make_shared<CommonOpts>();
  at->iters = 20;
  at->warmup = 3;
  auto as = std::make_shared<AttnShape>();
  CLI::App* c_at = kernel->add_subcommand(
      "attention", "FlashAttention-style softmax attention (q, k, v: [B, T, H, D])");
  c_at->add_option("--batch", as->b, "batch B")->capture_default_str();
  c_at->add_option("--seq-len", as->t, "sequence length T")->capture_default_str();
  c_at->add_option("--heads", as->h, "query heads H")->capture_default_str();
  c_at->add_option("--kv-heads", as->hkv, "key/value heads (0: H)")->capture_default_str();
  c_at->add_option("--head-dim", as->d, "head dim D")->capture_default_str();
  c_at->add_option("--window", as->window, "sliding window (0: none)")->capture_default_str();
  c_at->add_option("--dtype", as->dtype, "bf16 or f32")->capture_default_str();
  add_common(c_at, *at);
  c_at->callback([at, as] {
    const Device dev = pick_device(at->device);
    const DType dt = parse_dtype(as->dtype);
    const int64_t hkv = as->hkv > 0 ? as->hkv : as->h;
    Generator gen(0);
    auto rnd = [&](const Shape& s) {
      Tensor x = Tensor::empty(s, dt, dev);
      ops::normal_(x, 0.0, 1.0, gen);
      return x;
    };
    AttentionFwdArgs f;
    f.q = rnd({as->b, as->t, as->h, as->d});
    f.k = rnd({as->b, as->t, hkv, as->d});
    f.v = rnd({as->b, as->t, hkv, as->d});
    f.o = f.q.empty_like();
    f.lse = Tensor::empty({as->b, as->h, as->t}, DType::F32, dev);
    f.window = as->window;
    const Support sup = attention_supports(f);
    SEQMIX_CHECK_KIND(Usage, sup.ok, "attention does not support this shape: {}", sup.why);
    AttentionBwdArgs g{f.q,
                       f.k,
                       f.v,
                       f.o,
                       f.lse,
                       rnd(f.q.shape()),
                       f.q.empty_like(),
                       f.k.empty_like(),
                       f.v.empty_like(),
                       0,
                       true,
                       f.window};
    // Causal FLOPs: 4 B H T^2 D / 2 forward (two products), 2.5x that for the backward.
    const double fwd_flops =
        2.0 * double(as->b * as->h) * double(as->t) * double(as->t) * double(as->d);
    const std::string what =
        fmt::format("attention {} B{} T{} H{}/{} D{}{}", dtype_name(dt), as->b, as->t, as->h, hkv,
                    as->d, as->window ? fmt::format(" W{}", as->window) : "");
    const Timing tf = time_runs(dev, at->warmup, at->iters, [&] { attention_fwd(f); });
    report(*at, what + " fwd", dev, tf, "TFLOP/s", fwd_flops / 1e9);
    const Timing tb = time_runs(dev, at->warmup, at->iters, [&] {
      attention_fwd(f);
      attention_bwd(g);
    });
    report(*at, what + " fwd+bwd", dev, tb, "TFLOP/s", 3.5 * fwd_flops / 1e9);
  });

  // ---- the gated linear attention family: one kernel, five mixers' gate modes ----
  struct GlaShape {
    int64_t b = 8, t = 2048, h = 16, d = 64, k = 0, v = 0;
    std::string dtype = "bf16", algo = "auto";
  };
  for (const auto& [name, gate, desc] :
       {std::tuple{"linear_attn", GlaGate::None, "linear attention (no gate)"},
        std::tuple{"retention", GlaGate::HeadConst, "RetNet retention (fixed per-head decay)"},
        std::tuple{"mamba2", GlaGate::HeadScalar, "Mamba-2 / SSD (data-dependent scalar gate)"},
        std::tuple{"gla", GlaGate::KeyVector, "GLA (data-dependent per-key-dim gate)"},
        std::tuple{"hgrn2", GlaGate::KeyVector, "HGRN2 (per-key-dim forget gate; GLA kernel)"}}) {
    auto go = std::make_shared<CommonOpts>();
    go->iters = 20;
    go->warmup = 3;
    auto gs = std::make_shared<GlaShape>();
    CLI::App* c = kernel->add_subcommand(
        name, std::string(desc) + ": gla kernel, q, k: [B, T, H, K], v: [B, T, H, V]");
    c->add_option("--batch", gs->b, "batch B")->capture_default_str();
    c->add_option("--seq-len", gs->t, "sequence length T")->capture_default_str();
    c->add_option("--heads", gs->h, "heads H")->capture_default_str();
    c->add_option("--head-dim", gs->d, "K = V = D unless --k-dim / --v-dim")->capture_default_str();
    c->add_option("--k-dim", gs->k, "key dim K (0: D)");
    c->add_option("--v-dim", gs->v, "value dim V (0: D)");
    c->add_option("--dtype", gs->dtype, "bf16 or f32")->capture_default_str();
    c->add_option("--algo", gs->algo, "auto, chunked or recurrent")->capture_default_str();
    add_common(c, *go);
    c->callback([go, gs, gate = gate, name = std::string(name)] {
      const Device dev = pick_device(go->device);
      const DType dt = parse_dtype(gs->dtype);
      const int64_t B = gs->b, T = gs->t, H = gs->h;
      const int64_t K = gs->k > 0 ? gs->k : gs->d, V = gs->v > 0 ? gs->v : gs->d;
      Generator gen(0);
      auto rnd = [&](const Shape& s, DType t, double lo, double hi) {
        Tensor x = Tensor::empty(s, t, dev);
        ops::uniform_(x, lo, hi, gen);
        return x;
      };
      const double r = 1.0 / std::sqrt(double(K));  // q, k at the scale the mixers feed
      GlaFwdArgs f;
      f.q = rnd({B, T, H, K}, dt, -r, r);
      f.k = rnd({B, T, H, K}, dt, -r, r);
      f.v = rnd({B, T, H, V}, dt, -1, 1);
      f.gate = gate;
      if (gate == GlaGate::HeadConst) {
        std::vector<float> lg;
        for (int64_t i = 0; i < H; ++i) lg.push_back(float(std::log1p(-std::exp2(-5.0 - i))));
        f.g = Tensor::from_vector(lg, {H}, DType::F32, dev);
      } else if (gate == GlaGate::HeadScalar) {
        f.g = rnd({B, T, H}, DType::F32, -0.2, 0.0);
      } else if (gate == GlaGate::KeyVector) {
        f.g = rnd({B, T, H, K}, DType::F32, -0.2, 0.0);
      }
      f.o = Tensor::empty({B, T, H, V}, dt, dev);
      f.algo = gs->algo == "chunked"     ? GlaAlgo::Chunked
               : gs->algo == "recurrent" ? GlaAlgo::Recurrent
                                         : GlaAlgo::Auto;
      SEQMIX_CHECK_KIND(Usage,
                        gs->algo == "auto" || gs->algo == "chunked" || gs->algo == "recurrent",
                        "--algo must be auto, chunked or recurrent, got '{}'", gs->algo);
      const Support sup = gla_supports(f);
      SEQMIX_CHECK_KIND(Usage, sup.ok, "{}: not supported: {}", name, sup.why);
      GlaBwdArgs g;
      g.q = f.q;
      g.k = f.k;
      g.v = f.v;
      g.g = f.g;
      g.gate = gate;
      g.algo = f.algo;
      g.dout = rnd(f.o.shape(), dt, -1, 1);
      g.dq = f.q.empty_like();
      g.dk = f.k.empty_like();
      g.dv = f.v.empty_like();
      if (gate == GlaGate::HeadScalar || gate == GlaGate::KeyVector) {
        g.dg = f.g.empty_like();
        // As in training (the autograd node of gla()): the backward reuses the forward's
        // chunk-local cumulative gates (only the chunked kernels write / read them, and both
        // passes pick the same algorithm).
        f.gc = Tensor::empty(f.g.shape(), DType::F32, dev);
        g.gc = f.gc;
      }
      // Likewise the chunk-start states (the autograd node keeps them when a gradient will be
      // needed; the backward then skips its recompute of the forward state pass).
      if (dev.is_cuda()) {
        f.hs = Tensor::empty(gla_chunk_states_shape(f.q, f.v, f.cu_seqlens), DType::BF16, dev);
        g.hs = f.hs;
      }
      const std::string what =
          fmt::format("{} {} B{} T{} H{} K{} V{}", name, dtype_name(dt), B, T, H, K, V);
      // Chunked FLOPs (BT = 64): intra-chunk 2 T BT (K + V) / 2 plus state 4 T K V per head,
      // backward about twice the forward; reported as a guide, compare times.
      const double fwd_flops =
          double(B * H) * double(T) * (64.0 * double(K + V) + 4.0 * double(K * V));
      const Timing tf = time_runs(dev, go->warmup, go->iters, [&] { gla_fwd(f); });
      report(*go, what + " fwd", dev, tf, "TFLOP/s", fwd_flops / 1e9);
      const Timing tb = time_runs(dev, go->warmup, go->iters, [&] {
        gla_fwd(f);
        gla_bwd(g);
      });
      report(*go, what + " fwd+bwd", dev, tb, "TFLOP/s", 3.0 * fwd_flops / 1e9);
    });
  }

  // ---- the delta-rule family: one kernel, three mixers' gate modes ----
  struct DeltaShape {
    int64_t b = 8, t = 2048, h = 16, d = 64, k = 0, v = 0;
    std::string dtype = "bf16", algo = "auto";
  };
  for (const auto& [name, gate, desc] :
       {std::tuple{"deltanet", DeltaGate::None, "DeltaNet (delta rule, no gate)"},
        std::tuple{"gated_deltanet", DeltaGate::HeadScalar,
                   "Gated DeltaNet (delta rule, data-dependent scalar gate)"},
        std::tuple{"kda", DeltaGate::KeyVector,
                   "KDA (delta rule, data-dependent per-key-dim gate)"}}) {
    auto go = std::make_shared<CommonOpts>();
    go->iters = 20;
    go->warmup = 3;
    auto ds = std::make_shared<DeltaShape>();
    CLI::App* c = kernel->add_subcommand(
        name, std::string(desc) + ": delta_rule kernel, q, k: [B, T, H, K], v: [B, T, H, V]");
    c->add_option("--batch", ds->b, "batch B")->capture_default_str();
    c->add_option("--seq-len", ds->t, "sequence length T")->capture_default_str();
    c->add_option("--heads", ds->h, "heads H")->capture_default_str();
    c->add_option("--head-dim", ds->d, "K = V = D unless --k-dim / --v-dim")->capture_default_str();
    c->add_option("--k-dim", ds->k, "key dim K (0: D)");
    c->add_option("--v-dim", ds->v, "value dim V (0: D)");
    c->add_option("--dtype", ds->dtype, "bf16 or f32")->capture_default_str();
    c->add_option("--algo", ds->algo, "auto, chunked or recurrent")->capture_default_str();
    add_common(c, *go);
    c->callback([go, ds, gate = gate, name = std::string(name)] {
      const Device dev = pick_device(go->device);
      const DType dt = parse_dtype(ds->dtype);
      const int64_t B = ds->b, T = ds->t, H = ds->h;
      const int64_t K = ds->k > 0 ? ds->k : ds->d, V = ds->v > 0 ? ds->v : ds->d;
      SEQMIX_CHECK_KIND(Usage,
                        ds->algo == "auto" || ds->algo == "chunked" || ds->algo == "recurrent",
                        "--algo must be auto, chunked or recurrent, got '{}'", ds->algo);
      Generator gen(0);
      auto rnd = [&](const Shape& s, DType t, double lo, double hi) {
        Tensor x = Tensor::empty(s, t, dev);
        ops::uniform_(x, lo, hi, gen);
        return x;
      };
      DeltaFwdArgs f;
      // Raw q, k (the op l2-normalises them, as the mixers ask), β = sigmoid(logit) with
      // logits uniform in [-3, 3], log-gates uniform in [-0.2, 0].
      f.q = rnd({B, T, H, K}, dt, -1, 1);
      f.k = rnd({B, T, H, K}, dt, -1, 1);
      f.v = rnd({B, T, H, V}, dt, -1, 1);
      {
        const std::vector<float> logit = rnd({B, T, H}, DType::F32, -3, 3).cpu().to_vector<float>();
        std::vector<float> beta(logit.size());
        for (size_t i = 0; i < logit.size(); ++i) beta[i] = 1.f / (1.f + std::exp(-logit[i]));
        f.beta = Tensor::from_vector(beta, {B, T, H}, DType::F32, dev);
      }
      f.gate = gate;
      if (gate == DeltaGate::HeadScalar)
        f.g = rnd({B, T, H}, DType::F32, -0.2, 0.0);
      else if (gate == DeltaGate::KeyVector)
        f.g = rnd({B, T, H, K}, DType::F32, -0.2, 0.0);
      f.l2norm_qk = true;
      f.o = Tensor::empty({B, T, H, V}, dt, dev);
      f.algo = ds->algo == "chunked"     ? DeltaAlgo::Chunked
               : ds->algo == "recurrent" ? DeltaAlgo::Recurrent
                                         : DeltaAlgo::Auto;
      const Support sup = delta_rule_supports(f);
      SEQMIX_CHECK_KIND(Usage, sup.ok, "{}: not supported: {}", name, sup.why);
      DeltaBwdArgs g;
      g.q = f.q;
      g.k = f.k;
      g.v = f.v;
      g.beta = f.beta;
      g.g = f.g;
      g.gate = gate;
      g.l2norm_qk = true;
      g.algo = f.algo;
      g.dout = rnd(f.o.shape(), dt, -1, 1);
      g.dq = f.q.empty_like();
      g.dk = f.k.empty_like();
      g.dv = f.v.empty_like();
      g.dbeta = f.beta.empty_like();
      if (gate != DeltaGate::None) g.dg = f.g.empty_like();
      const std::string what =
          fmt::format("{} {} B{} T{} H{} K{} V{}", name, dtype_name(dt), B, T, H, K, V);
      // Chunked FLOPs (BT = 64) per head and chunk: K Kᵀ, Q Kᵀ (2·64²K each), W, U (2·64²(K+V)),
      // U -= W S, S += Kᵀ U, O = Q S (2·64·K·V each), O += P U (2·64²V); backward about twice
      // the forward. Reported as a guide, compare times.
      const double per_chunk = 2.0 * 64 * 64 * double(2 * K + K + V + V) + 6.0 * 64 * double(K * V);
      const double fwd_flops = double(B * H) * double(T) / 64.0 * per_chunk;
      const Timing tf = time_runs(dev, go->warmup, go->iters, [&] { delta_rule_fwd(f); });
      report(*go, what + " fwd", dev, tf, "TFLOP/s", fwd_flops / 1e9);
      // fwd+bwd as the autograd node runs it: the chunked forward keeps its states and U (with
      // their lo parts for dg) and its prep outputs, and the backward reuses them.
      DeltaChunkKeep keep;
      keep.want_dg = gate != DeltaGate::None;  // g.dg is computed for both gates
      DeltaFwdArgs fk = f;
      fk.keep = &keep;
      g.keep = &keep;
      const Timing tb = time_runs(dev, go->warmup, go->iters, [&] {
        delta_rule_fwd(fk);
        delta_rule_bwd(g);
        keep = DeltaChunkKeep{};  // released after the backward, as the autograd node does
        keep.want_dg = gate != DeltaGate::None;
      });
      report(*go, what + " fwd+bwd", dev, tb, "TFLOP/s", 3.0 * fwd_flops / 1e9);
    });
  }

  // ---- short causal conv ----
  struct ConvShape {
    int64_t b = 8, t = 2048, c = 2048, w = 4;
    std::string dtype = "bf16";
  };
  auto co = std::make_shared<CommonOpts>();
  co->iters = 20;
  co->warmup = 3;
  auto cs = std::make_shared<ConvShape>();
  CLI::App* c_sc = kernel->add_subcommand(
      "short_conv",
      "short causal depthwise conv + SiLU (x: [B, T, C]); prints GB/s of x, y, dy, dx");
  c_sc->add_option("--batch", cs->b, "batch B")->capture_default_str();
  c_sc->add_option("--seq-len", cs->t, "sequence length T")->capture_default_str();
  c_sc->add_option("--channels", cs->c, "channels C")->capture_default_str();
  c_sc->add_option("--width", cs->w, "kernel width W (2..4)")->capture_default_str();
  c_sc->add_option("--dtype", cs->dtype, "bf16 or f32")->capture_default_str();
  add_common(c_sc, *co);
  c_sc->callback([co, cs] {
    const Device dev = pick_device(co->device);
    const DType dt = parse_dtype(cs->dtype);
    Generator gen(0);
    auto rnd = [&](const Shape& s, DType t) {
      Tensor x = Tensor::empty(s, t, dev);
      ops::uniform_(x, -1.0, 1.0, gen);
      return x;
    };
    ShortConvFwdArgs f;
    f.x = rnd({cs->b, cs->t, cs->c}, dt);
    f.weight = rnd({cs->c, cs->w}, DType::F32);
    f.bias = rnd({cs->c}, DType::F32);
    f.y = f.x.empty_like();
    f.silu = true;
    const Support sup = short_conv_supports(f);
    SEQMIX_CHECK_KIND(Usage, sup.ok, "short_conv: not supported: {}", sup.why);
    ShortConvBwdArgs b;
    b.x = f.x;
    b.weight = f.weight;
    b.bias = f.bias;
    b.silu = true;
    b.dy = rnd(f.x.shape(), dt);
    b.dx = f.x.empty_like();
    b.dweight = f.weight.zeros_like();
    b.dbias = f.bias.zeros_like();
    const double bytes = double(f.x.nbytes());
    const std::string what =
        fmt::format("short_conv {} B{} T{} C{} W{}", dtype_name(dt), cs->b, cs->t, cs->c, cs->w);
    const Timing tf = time_runs(dev, co->warmup, co->iters, [&] { short_conv_fwd(f); });
    report(*co, what + " fwd", dev, tf, "GB/s", 2 * bytes / 1e6);
    const Timing tb = time_runs(dev, co->warmup, co->iters, [&] {
      short_conv_fwd(f);
      short_conv_bwd(b);
    });
    report(*co, what + " fwd+bwd", dev, tb, "GB/s", 5 * bytes / 1e6);
  });

  // ---- training steps ----
  auto bt = std::make_shared<train::BenchTrainOptions>();
  CLI::App* c_bt = bench->add_subcommand(
      "train", "Time optimizer steps of a config's model on random tokens (B x T from the config)");
  c_bt->add_option("config", bt->config_path, "Run config (YAML)")->required();
  c_bt->add_option("--set", bt->overrides, "Override a config key (repeatable)")
      ->type_name("KEY=VALUE");
  c_bt->add_option("--steps", bt->steps, "timed steps; the median is reported")
      ->capture_default_str();
  c_bt->add_option("--warmup", bt->warmup, "untimed steps first")->capture_default_str();
  c_bt->add_option("--device", bt->device, "auto (the config's train.device), cpu or cuda")
      ->capture_default_str();
  c_bt->add_flag("--json", bt->json, "print one JSON object instead of text");
  c_bt->callback([bt] { train::run_bench_train(*bt); });
}

}  // namespace seqmix::cli
