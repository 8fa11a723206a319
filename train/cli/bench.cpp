// `seqmix bench op matmul|copy`: the two ceilings of a device (matrix throughput through
// cuBLASLt, memory bandwidth through seqmix's copy kernel), reported as the median of repeated
// runs. `bench kernel` and `bench train` arrive with the mixer and trainer issues.
#include "train/cli/bench.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/ops/matmul.h"
#include "core/ops/random.h"
#include "core/tensor.h"
#include "train/cli/timing.h"

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

  // ---- not yet built ----
  for (const auto& [name, desc, issue] :
       {std::tuple{"kernel", "Time a mixer kernel's forward and forward+backward", "F3"},
        std::tuple{"train", "Time training steps of a config on random tokens", "F2"}}) {
    CLI::App* c = bench->add_subcommand(name, std::string(desc) + " (not built yet)");
    c->allow_extras();
    c->callback([name = std::string(name), issue = std::string(issue)] {
      SEQMIX_THROW(Usage, "seqmix bench {}: not built yet (arrives with issue {})", name, issue);
    });
  }
}

}  // namespace seqmix::cli
