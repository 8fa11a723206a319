// `seqmix bench op matmul|copy`: the two ceilings of a device (matrix throughput through
// cuBLASLt, memory bandwidth through seqmix's copy kernel), reported as the median of repeated
// runs; `seqmix bench kernel <name>`: a fused kernel's forward and forward+backward times.
// `seqmix bench train CONFIG`: optimizer steps of a config's model on random tokens.
#include "train/cli/bench.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/matmul.h"
#include "core/ops/random.h"
#include "core/tensor.h"
#include "kernels/attention/attention.h"
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
