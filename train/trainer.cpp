// The training loop, evaluator and inspector behind `seqmix train|eval|inspect`.
//
// Step (per optimizer step): grad_accum micro-batches of forward + backward (gradients accumulate
// in place into fixed f32 buffers), then the device-side global-norm clipper and the fused AdamW
// step, which skips the update on the device when a gradient is non-finite. The host reads device
// values only at log / eval / checkpoint points (loss sums, grad norm, skip flag), so a step
// issues no synchronisation. Everything that decides a run's numbers (parameters, optimizer
// moments and counters, the dropout generator, the data position, the interval loss accumulator)
// is in the checkpoint, so a resumed run reproduces the uninterrupted one value for value.
#include "train/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/logging.h"
#include "core/ops/elementwise.h"
#include "core/ops/index.h"
#include "core/ops/random.h"
#include "core/ops/reduce.h"
#include "data/loader.h"
#include "data/mqar.h"
#include "data/tasks.h"
#include "data/token_dataset.h"
#include "kernels/cross_entropy/cross_entropy.h"
#include "layers/language_model.h"
#include "layers/mixers/mixer.h"
#include "train/checkpoint/checkpoint.h"
#include "train/distributed/communicator.h"
#include "train/distributed/process_group.h"
#include "train/distributed/reducer.h"
#include "train/optim/adamw.h"
#include "train/optim/grad_norm.h"
#include "train/optim/schedule.h"

namespace fs = std::filesystem;

namespace seqmix::train {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal.store(sig);
}

// Seeds of the independent random streams of a run, derived from run.seed.
uint64_t stream_seed(uint64_t seed, uint64_t stream) {
  uint64_t x =
      seed * 0x9E3779B97F4A7C15ull + stream * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return x;
}
enum Stream : uint64_t { kInit = 1, kData = 2, kDropout = 3, kMqarTrain = 4, kMqarTest = 5 };

std::string run_dir_of(const config::RunConfig& c, const std::string& cli_dir) {
  if (!cli_dir.empty()) return cli_dir;
  if (!c.run.dir.empty()) return c.run.dir;
  return (fs::path("runs") / c.run.name).string();
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    SEQMIX_CHECK_KIND(Internal, out.good(), "cannot write '{}'", tmp);
    out << text;
  }
  fs::rename(tmp, path);
}

// --------------------------------------------------------------------------- model and data
nn::LmConfig lm_config(const config::RunConfig& c, int64_t data_vocab) {
  nn::LmConfig m;
  if (c.model.vocab_size > 0) {
    if (data_vocab > c.model.vocab_size) {
      const auto it = c.locations.find("model.vocab_size");
      SEQMIX_THROW(Data,
                   "{}: 'model.vocab_size': the data's vocabulary ({}) is larger than the "
                   "model's ({})",
                   it != c.locations.end() ? it->second : c.source, data_vocab, c.model.vocab_size);
    }
    m.vocab_size = c.model.vocab_size;
  } else {
    m.vocab_size = data_vocab;
  }
  m.d_model = c.model.d_model;
  m.mlp = c.model.mlp;
  m.mlp_hidden = c.model.mlp_hidden;
  m.short_conv = c.model.short_conv;
  m.norm_eps = c.model.norm_eps;
  m.tie_embeddings = c.model.tie_embeddings;
  m.dropout = c.model.dropout;
  m.init_std = c.model.init_std;
  m.init_seed = stream_seed(c.run.seed, kInit);
  // Check each named spec against the mixer table once, with file:line of the offending key.
  std::vector<std::string> types;
  for (const auto& e : nn::mixer_table()) types.push_back(e.name);
  for (const auto& [name, spec] : c.model.mixers) {
    const nn::MixerEntry* entry = nn::find_mixer(spec.type);
    const std::string key = fmt::format("model.mixers.{}.type", name);
    if (!entry) {
      const std::string near = config::nearest(spec.type, types);
      c.fail(key, fmt::format("unknown mixer type '{}'{}; available: {}", spec.type,
                              near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                              fmt::join(types, ", ")));
    }
    std::vector<std::string> keys;
    for (const auto& o : entry->options) keys.push_back(o.key);
    for (const auto& [k, v] : spec.options) {
      if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
      const std::string near = config::nearest(k, keys);
      c.fail(fmt::format("model.mixers.{}.{}", name, k),
             fmt::format("mixer '{}' has no option '{}'{}; its options: {}", spec.type, k,
                         near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                         fmt::join(keys, ", ")));
    }
  }
  for (const auto& name : config::layer_mixers(c)) {
    const config::MixerConfig& mc = c.model.mixers.at(name);
    m.layers.push_back(nn::MixerSpec{mc.type, mc.options});
  }
  return m;
}

data::MqarConfig mqar_config(const config::RunConfig& c, uint64_t seed) {
  data::MqarConfig m;
  m.vocab_size = c.data.mqar.vocab_size;
  m.seq_len = c.data.seq_len;
  m.num_kv_pairs = c.data.mqar.num_kv_pairs;
  m.power_a = c.data.mqar.power_a;
  m.random_non_queries = c.data.mqar.random_non_queries;
  m.seed = seed;
  return m;
}

bool is_synthetic(const config::RunConfig& c) {
  return c.data.source != "tokens";
}

// The in-process task source of data.source (everything but token data), from `seed`.
std::unique_ptr<data::BatchSource> make_task_source(const config::RunConfig& c, uint64_t seed,
                                                    int64_t batch, int rank, int world) {
  const std::string& s = c.data.source;
  const int64_t T = c.data.seq_len;
  if (s == "mqar")
    return std::make_unique<data::MqarSource>(mqar_config(c, seed), batch, rank, world);
  if (s == "sqar") {
    data::SqarConfig t{c.data.sqar.vocab_size, T, c.data.sqar.num_kv_pairs,
                       c.data.sqar.random_filler, seed};
    return std::make_unique<data::SqarSource>(t, batch, rank, world);
  }
  if (s == "set_disjoint") {
    data::SetDisjointConfig t{c.data.set_disjoint.vocab_size,
                              T,
                              c.data.set_disjoint.short_size,
                              c.data.set_disjoint.long_size,
                              data::parse_set_order(c.data.set_disjoint.order),
                              seed};
    return std::make_unique<data::SetDisjointSource>(t, batch, rank, world);
  }
  if (s == "passkey") {
    data::PasskeyConfig t{c.data.passkey.vocab_size, T, c.data.passkey.num_digits,
                          c.data.passkey.depth, seed};
    return std::make_unique<data::PasskeySource>(t, batch, rank, world);
  }
  if (s == "parity") {
    data::ParityConfig t{T, c.data.parity.separators, seed};
    return std::make_unique<data::ParitySource>(t, batch, rank, world);
  }
  if (s == "modadd") {
    data::ModAddConfig t{T, c.data.modadd.modulus, seed};
    return std::make_unique<data::ModAddSource>(t, batch, rank, world);
  }
  if (s == "s5") {
    data::S5Config t{T, data::parse_perm_group(c.data.s5.group), seed};
    return std::make_unique<data::S5Source>(t, batch, rank, world);
  }
  c.fail("data.source", fmt::format("'{}' is not a synthetic task", s));
}

int64_t test_examples(const config::RunConfig& c) {
  const std::string& s = c.data.source;
  if (s == "mqar") return c.data.mqar.test_examples;
  if (s == "sqar") return c.data.sqar.test_examples;
  if (s == "set_disjoint") return c.data.set_disjoint.test_examples;
  if (s == "passkey") return c.data.passkey.test_examples;
  if (s == "parity") return c.data.parity.test_examples;
  if (s == "modadd") return c.data.modadd.test_examples;
  return c.data.s5.test_examples;
}

// How a task's accuracy is named in the final line ("MQAR accuracy", "parity accuracy").
std::string task_title(const std::string& source) {
  return source == "mqar" ? "MQAR" : source == "sqar" ? "SQAR" : source;
}

struct DataSources {
  std::shared_ptr<data::TokenDataset> dataset;  // tokens only
  std::unique_ptr<data::BatchSource> train;
  int64_t vocab = 0;
};

DataSources make_train_data(const config::RunConfig& c, int rank, int world) {
  DataSources d;
  if (is_synthetic(c)) {
    d.train =
        make_task_source(c, stream_seed(c.run.seed, kMqarTrain), c.data.batch_size, rank, world);
    d.vocab = d.train->vocab_size();
  } else {
    d.dataset = std::make_shared<data::TokenDataset>(c.data.path);
    d.train = std::make_unique<data::TokenWindowLoader>(
        *d.dataset, "train", c.data.batch_size, c.data.seq_len, stream_seed(c.run.seed, kData),
        rank, world, /*shuffle=*/true);
    d.vocab = d.dataset->vocab_size();
  }
  return d;
}

// --------------------------------------------------------------------------- evaluation
struct EvalSetup {
  std::string task;  // ppl, or the synthetic task (accuracy at labelled positions)
  std::string split;
  int64_t batches = 0;
  // ppl: when set, receives the mean loss at each position 0..T-1 (loss vs position).
  std::vector<double>* position_loss = nullptr;
};

// Per-token losses of one batch: lse_n - logits_n[target_n] (0 where ignored), on the host.
std::vector<double> token_losses(const Variable& logits, const Tensor& targets_dev) {
  const int64_t V = logits.size(-1);
  const Tensor l2 = logits.data().reshape({-1, V});
  const int64_t N = l2.size(0);
  CrossEntropyFwdArgs a;
  a.logits = l2;
  a.targets = targets_dev.reshape({N});
  const DType sd = l2.dtype() == DType::F64 ? DType::F64 : DType::F32;
  a.lse = Tensor::empty({N}, sd, l2.device());
  a.loss = Tensor::empty({}, sd, l2.device());
  a.count = Tensor::empty({}, sd, l2.device());
  a.reduction = LossReduction::Sum;
  cross_entropy_fwd(a);
  // Gather logits at the targets (ignored rows gather column 0 and are zeroed below).
  const auto tg = a.targets.to_vector<int64_t>();
  std::vector<int64_t> idx(tg.size());
  for (size_t i = 0; i < tg.size(); ++i) idx[i] = tg[i] == data::kIgnoreIndex ? 0 : tg[i];
  const Tensor at =
      ops::gather_dim(l2, 1, Tensor::from_vector(idx, {N, 1}, DType::I64, l2.device()));
  const auto lse = a.lse.to_vector<double>();
  const auto picked = at.to_vector<double>();
  std::vector<double> out(size_t(N), 0.0);
  for (size_t i = 0; i < out.size(); ++i)
    if (tg[i] != data::kIgnoreIndex) out[i] = lse[i] - picked[i];
  return out;
}

// Bytes of text each token id decodes to (for bits per byte).
std::vector<double> token_bytes(const data::Tokenizer& tok) {
  std::vector<double> b(size_t(tok.vocab_size()));
  for (int64_t i = 0; i < tok.vocab_size(); ++i) {
    const int64_t id = i;
    b[size_t(i)] = double(tok.decode(std::span<const int64_t>(&id, 1)).size());
  }
  return b;
}

std::map<std::string, double> evaluate(nn::LanguageModel& model, const config::RunConfig& c,
                                       const std::shared_ptr<data::TokenDataset>& dataset,
                                       const EvalSetup& e, Device dev, DType compute) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.train(false);
  nn::ForwardContext ctx{compute, false, nullptr};
  std::map<std::string, double> out;
  if (e.task != "ppl") {
    const int64_t n = test_examples(c);
    const auto src_ptr =
        make_task_source(c, stream_seed(c.run.seed, kMqarTest), c.data.batch_size, 0, 1);
    data::BatchSource& src = *src_ptr;
    int64_t correct = 0, total = 0, batches = 0;
    for (int64_t seen = 0; seen < n; seen += c.data.batch_size) {
      if (e.batches > 0 && batches >= e.batches) break;
      data::Batch b = src.next();
      const int64_t rows = std::min<int64_t>(c.data.batch_size, n - seen);
      Variable logits = model.logits(b.inputs.to(dev), ctx);
      const Tensor pred = ops::max_with_index(logits.data(), -1).second.cpu();
      const auto p = pred.to_vector<int64_t>();
      const auto t = b.targets.to_vector<int64_t>();
      const int64_t T = b.targets.size(1);
      for (int64_t i = 0; i < rows * T; ++i) {
        if (t[size_t(i)] == data::kIgnoreIndex) continue;
        ++total;
        correct += p[size_t(i)] == t[size_t(i)];
      }
      ++batches;
    }
    out["accuracy"] = total ? double(correct) / double(total) : 0.0;
    out["queries"] = double(total);
    out["examples"] = double(std::min<int64_t>(n, batches * c.data.batch_size));
  } else {
    SEQMIX_CHECK_KIND(Data, dataset && dataset->has_split(e.split),
                      "dataset '{}' has no '{}' split", dataset ? dataset->file() : c.data.path,
                      e.split);
    data::TokenWindowLoader loader(*dataset, e.split, c.data.batch_size, c.data.seq_len, 0, 0, 1,
                                   /*shuffle=*/false);
    const std::vector<double> bytes = token_bytes(dataset->tokenizer());
    std::vector<double> pos_sum, pos_count;
    double nats = 0, nbytes = 0;
    int64_t tokens = 0, batches = 0;
    while (!loader.exhausted() && (e.batches == 0 || batches < e.batches)) {
      data::Batch b = loader.next();
      if (b.inputs.numel() == 0) break;
      Variable logits = model.logits(b.inputs.to(dev), ctx);
      const Tensor targets_dev = b.targets.to(dev);
      Variable loss = cross_entropy(logits, targets_dev, data::kIgnoreIndex, LossReduction::Sum);
      nats += loss.data().item();
      if (e.position_loss) {
        const int64_t T = b.targets.size(1);
        if (pos_sum.empty()) pos_sum.assign(size_t(T), 0.0), pos_count.assign(size_t(T), 0.0);
        const auto tl = token_losses(logits, targets_dev);
        const auto tg = b.targets.to_vector<int64_t>();
        for (size_t i = 0; i < tl.size(); ++i) {
          if (tg[i] == data::kIgnoreIndex) continue;
          pos_sum[i % size_t(T)] += tl[i];
          pos_count[i % size_t(T)] += 1;
        }
      }
      for (int64_t t : b.targets.to_vector<int64_t>()) {
        if (t == data::kIgnoreIndex) continue;
        ++tokens;
        nbytes += bytes[size_t(t)];
      }
      ++batches;
    }
    SEQMIX_CHECK_KIND(Data, tokens > 0,
                      "the '{}' split of '{}' is too small for one window of {} tokens", e.split,
                      dataset->file(), c.data.seq_len + 1);
    if (e.position_loss) {
      e.position_loss->assign(pos_sum.size(), 0.0);
      for (size_t i = 0; i < pos_sum.size(); ++i)
        (*e.position_loss)[i] = pos_count[i] > 0 ? pos_sum[i] / pos_count[i] : 0.0;
    }
    out["loss"] = nats / double(tokens);
    out["ppl"] = std::exp(out["loss"]);
    out["bpb"] = nats / std::log(2.0) / nbytes;
    out["tokens"] = double(tokens);
  }
  model.train(was_training);
  return out;
}

std::string json_line(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string s = "{";
  for (size_t i = 0; i < kv.size(); ++i)
    s += fmt::format("{}\"{}\": {}", i ? ", " : "", kv[i].first, kv[i].second);
  return s + "}";
}
std::string jnum(double x) {
  if (!std::isfinite(x)) return "null";
  return fmt::format("{}", x);
}
std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o + "\"";
}

// Keeps only the metrics lines of steps <= `step` (a resumed run re-creates the rest).
void truncate_metrics(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    const auto p = line.find("\"step\": ");
    if (p == std::string::npos) continue;
    const int64_t s = std::stoll(line.substr(p + 8));
    if (s <= step) kept += line + "\n";
  }
  in.close();
  write_file_atomic(path, kept);
}

// Training FLOPs per token: 6 N for the matrices plus, per attention layer, the score and value
// products (6 * 2 * T * d per token, halved by the causal mask).
double train_flops_per_token(const config::RunConfig& c, int64_t n_params) {
  double f = 6.0 * double(n_params);
  for (const auto& l : config::layer_mixers(c))
    if (c.model.mixers.at(l).type == "attention")
      f += 6.0 * double(c.data.seq_len) * double(c.model.d_model);
  return f;
}

double peak_tflops(const config::RunConfig& c, Device dev) {
  if (c.train.peak_tflops > 0) return c.train.peak_tflops;
  if (!dev.is_cuda()) return 0;
  const std::string name = cuda::props(dev.index).name;
  // Dense bf16 tensor-core peaks (SXM parts).
  if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos) return 989;
  if (name.find("A100") != std::string::npos) return 312;
  return 0;
}

std::string eta_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  const int64_t s = int64_t(seconds);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string git_revision() {
#ifdef SEQMIX_GIT_REVISION
  return SEQMIX_GIT_REVISION;
#else
  return "unknown";
#endif
}

// The parameters' fixed f32 gradient buffers, the clipper and AdamW, and one optimizer step:
// `accum` micro-batches of forward + backward (gradients accumulate in place), then the
// device-side clipping and the fused AdamW update (skipped on the device when a gradient is
// non-finite). No host synchronisation. Shared by training and `seqmix bench train`. With a
// GradReducer (data-parallel), the gradients are its bucket views and each step's last
// micro-batch all-reduces them (average) during backward.
struct Stepper {
  nn::LanguageModel& model;
  Device dev;
  dist::GradReducer* reducer;
  std::vector<Tensor> grads;
  AdamW adamw;
  GradClipper clipper;

  Stepper(nn::LanguageModel& m, const config::RunConfig& cfg, Device d,
          dist::GradReducer* r = nullptr)
      : model(m),
        dev(d),
        reducer(r),
        adamw(make_refs(m, d, grads), adamw_config(cfg)),
        clipper(grads, cfg.train.grad_clip) {}

  static std::vector<ParamRef> make_refs(nn::LanguageModel& m, Device d,
                                         std::vector<Tensor>& grads) {
    std::vector<ParamRef> refs;
    for (const auto& [name, p] : m.named_parameters()) {
      // A reducer has already made the gradients views into its buckets.
      if (!p.grad().defined()) p.set_grad(Tensor::zeros(p.shape(), DType::F32, d));
      refs.push_back(ParamRef{p.data(), p.grad(), m.decays(name), name});
      grads.push_back(p.grad());
    }
    return refs;
  }
  static AdamWConfig adamw_config(const config::RunConfig& cfg) {
    AdamWConfig a;
    a.lr = cfg.optim.lr;
    a.beta1 = cfg.optim.beta1;
    a.beta2 = cfg.optim.beta2;
    a.eps = cfg.optim.eps;
    a.weight_decay = cfg.optim.weight_decay;
    return a;
  }

  // Mean loss of one batch. When at most half the positions have a target (the synthetic
  // tasks label only their answers: MQAR, sqar, set_disjoint, passkey, ...), the head and the
  // cross-entropy run on the labelled rows alone (LanguageModel::loss_at): the same loss and
  // gradients, and at MQAR T = 512 the [B, T, 8192] head was most of a step.
  Variable batch_loss(const data::Batch& b, const nn::ForwardContext& ctx) {
    const std::vector<int64_t> t = b.targets.to_vector<int64_t>();
    std::vector<int64_t> rows, row_targets;
    for (size_t i = 0; i < t.size(); ++i)
      if (t[i] != data::kIgnoreIndex) {
        rows.push_back(int64_t(i));
        row_targets.push_back(t[i]);
      }
    if (rows.empty() || 2 * rows.size() > t.size())
      return model.loss(b.inputs.to(dev), b.targets.to(dev), ctx);
    const int64_t n = int64_t(rows.size());
    return model.loss_at(b.inputs.to(dev), Tensor::from_vector(rows, {n}).to(dev),
                         Tensor::from_vector(row_targets, {n}).to(dev), ctx);
  }

  template <class NextBatch>
  void step(NextBatch&& next, int64_t accum, double lr, const nn::ForwardContext& ctx,
            const Tensor& loss_sum) {
    for (int64_t micro = 0; micro < accum; ++micro) {
      if (reducer) reducer->set_enabled(micro == accum - 1);
      data::Batch b = next();
      Variable loss = batch_loss(b, ctx);
      ops::add_(loss_sum, loss.data());
      if (accum > 1) loss = seqmix::mul(loss, 1.0 / double(accum));
      loss.backward();
    }
    if (reducer) reducer->finish();
    clipper.compute();  // the global norm of the averaged gradients: equal on every rank
    adamw.step(lr, clipper);
    if (reducer)
      reducer->zero_grad();
    else
      for (const Tensor& g : grads) g.zero_();
  }
};

}  // namespace

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") {
    SEQMIX_CHECK_KIND(Config, cuda::is_available(), "train.device is 'cuda' but {}",
                      cuda::unavailable_reason());
    return Device::cuda(0);
  }
  return cuda::is_available() ? Device::cuda(0) : Device::cpu();
}

int run_train(const TrainOptions& opt) {
  const auto t_start = Clock::now();
  config::RunConfig cfg = config::load_config(opt.config_path, opt.overrides);
  const std::string run_dir = run_dir_of(cfg, opt.run_dir);
  const std::string ckpt_dir = run_dir;
  const std::string metrics_path = (fs::path(run_dir) / "metrics.jsonl").string();

  // Resume: the checkpoint's config is the run's config (overrides still apply on top).
  CheckpointData resume_from;
  bool resuming = false;
  if (opt.resume) {
    const std::string latest = latest_checkpoint(ckpt_dir);
    if (latest.empty()) {
      // Files that look like checkpoints but none complete: refuse rather than start over.
      std::vector<std::string> broken;
      const fs::path cdir = fs::path(ckpt_dir) / "checkpoints";
      if (fs::is_directory(cdir))
        for (const auto& e : fs::directory_iterator(cdir))
          if (e.path().extension() == ".h5") broken.push_back(e.path().string());
      SEQMIX_CHECK_KIND(Checkpoint, broken.empty(),
                        "--resume: no complete checkpoint in '{}' (incomplete or corrupt: {})",
                        run_dir, fmt::join(broken, ", "));
      logs::warn("--resume: no checkpoint in '{}'; starting from step 0", run_dir);
    } else {
      resume_from = load_checkpoint(latest);
      resuming = true;
      cfg = config::parse_config(resume_from.config_yaml, latest + ":/config", opt.overrides);
      logs::info("resuming from {} (step {})", latest, resume_from.step);
    }
  } else if (!latest_checkpoint(ckpt_dir).empty()) {
    SEQMIX_THROW(Usage,
                 "run directory '{}' already holds checkpoints: pass --resume to continue it, or "
                 "--run-dir for a new run",
                 run_dir);
  }

  // Data-parallel: one process per GPU, started by `seqmix launch`, torchrun-style launchers,
  // Slurm or mpirun (train/distributed/process_group.h); a single process otherwise.
  const dist::ProcessGroupEnv pg = dist::detect_process_group();
  Device dev;
  if (pg.distributed()) {
    SEQMIX_CHECK_KIND(Config, cfg.train.device != "cpu",
                      "a data-parallel run ({}) needs GPUs, but train.device is 'cpu'", pg.str());
    dev = dist::device_for_rank(pg);
  } else {
    dev = resolve_device(cfg.train.device);
  }
  if (dev.is_cuda()) cuda::set_device(dev.index);
  std::unique_ptr<dist::Communicator> comm = pg.distributed()
                                                 ? dist::make_communicator(pg, dev)
                                                 : std::make_unique<dist::SingleProcessComm>();
  const int rank = comm->rank(), world = comm->world_size();
  const bool root = rank == 0;
  logs::set_log_rank(rank);
  const bool quiet = opt.quiet || !root;
  if (pg.distributed() && root) logs::info("data-parallel: {} ranks ({})", world, comm->backend());
  if (root) {
    fs::create_directories(run_dir);
    write_file_atomic((fs::path(run_dir) / "config.yaml").string(), config::to_yaml(cfg));
  }

  const DType compute = dev.is_cuda() && cfg.train.precision == "bf16" ? DType::BF16 : DType::F32;
  if (!dev.is_cuda() && cfg.train.precision == "bf16" && !quiet)
    logs::info("precision bf16 on CPU: computing in fp32 (the CPU path has no bf16 compute)");

  DataSources data = make_train_data(cfg, rank, world);
  nn::LanguageModel model(lm_config(cfg, data.vocab));
  model.to(dev);
  model.train(true);

  // Parameters, their fixed gradient buffers, optimizer, clipper, schedule.
  std::unique_ptr<dist::GradReducer> reducer;
  if (world > 1)
    reducer =
        std::make_unique<dist::GradReducer>(model.named_parameters(), *comm, cfg.train.bucket_mib);
  Stepper stepper(model, cfg, dev, reducer.get());
  AdamW& adamw = stepper.adamw;
  GradClipper& clipper = stepper.clipper;
  ScheduleConfig scfg;
  scfg.kind = cfg.optim.schedule;
  scfg.warmup_steps = cfg.optim.warmup_steps;
  scfg.total_steps = cfg.train.steps;
  scfg.lr_max = cfg.optim.lr;
  scfg.lr_min = cfg.optim.min_lr;
  scfg.decay_fraction = cfg.optim.decay_fraction;
  LrSchedule schedule(scfg);
  Generator dropout_gen(stream_seed(cfg.run.seed, kDropout));

  // Interval accumulators live on the device; read at log points only.
  Tensor loss_sum = Tensor::zeros({}, DType::F32, dev);
  int64_t interval_steps = 0, skipped_total = 0;
  int64_t step = 0, tokens_seen = 0;
  double wall_before = 0;

  if (resuming) {
    const auto& r = resume_from;
    model.load_state_dict(r.model, true);
    adamw.load_state(r.optim);
    step = r.step;
    tokens_seen = r.tokens_seen;
    wall_before = r.wall_time_s;
    const auto rng = r.rng.find("dropout");
    SEQMIX_CHECK_KIND(Checkpoint, rng != r.rng.end() && rng->second.size() == 2,
                      "checkpoint has no /rng/dropout state");
    dropout_gen.set_state(rng->second[0], rng->second[1]);
    const auto ds = r.data.find("train");
    SEQMIX_CHECK_KIND(Checkpoint, ds != r.data.end() && ds->second.size() == 3,
                      "checkpoint has no /data/train loader state");
    data.train->restore(data::LoaderState{ds->second[0], ds->second[1], ds->second[2]});
    auto metric = [&](const char* k) {
      const auto it = r.metrics.find(k);
      SEQMIX_CHECK_KIND(Checkpoint, it != r.metrics.end(), "checkpoint has no metric '{}'", k);
      return it->second;
    };
    loss_sum.fill_(metric("interval_loss_sum"));
    interval_steps = int64_t(metric("interval_steps"));
    skipped_total = adamw.attempted_steps() - adamw.read_applied_steps();
    if (root) truncate_metrics(metrics_path, step);
  } else if (root && fs::exists(metrics_path)) {
    fs::remove(metrics_path);
  }

  const int64_t n_params = model.num_parameters();
  const int64_t B = cfg.data.batch_size, T = cfg.data.seq_len, accum = cfg.train.grad_accum;
  const int64_t tokens_per_step = B * T * accum * world;  // all ranks
  const double flops_per_token = train_flops_per_token(cfg, n_params);
  const double peak = peak_tflops(cfg, dev);

  // Only rank 0 writes metrics and checkpoints (every rank holds the same state).
  std::ofstream metrics;
  if (root) {
    metrics.open(metrics_path, std::ios::app);
    SEQMIX_CHECK_KIND(Internal, metrics.good(), "cannot write '{}'", metrics_path);
  }
  if (!quiet)
    logs::info("run dir {} | device {} | compute {} | {:.2f}M parameters | {} layers | vocab {}",
               run_dir, dev.str(), dtype_name(compute), double(n_params) / 1e6,
               config::layer_mixers(cfg).size(), model.config().vocab_size);

  auto save = [&](int64_t at_step) {
    if (!root) return;
    CheckpointData d;
    d.step = at_step;
    d.tokens_seen = tokens_seen;
    d.wall_time_s = wall_before + std::chrono::duration<double>(Clock::now() - t_start).count();
    d.git_revision = git_revision();
    d.config_yaml = config::to_yaml(cfg);
    d.model = model.state_dict();
    d.optim = adamw.state();
    d.rng["dropout"] = {dropout_gen.seed(), dropout_gen.offset()};
    const data::LoaderState ls = data.train->state();
    d.data["train"] = {ls.seed, ls.epoch, ls.samples_consumed};
    d.metrics["interval_loss_sum"] = loss_sum.item();
    d.metrics["interval_steps"] = double(interval_steps);
    const std::string path = checkpoint_path(ckpt_dir, at_step);
    save_checkpoint(path, d);
    prune_checkpoints(ckpt_dir, int(cfg.train.keep_last));
    if (!quiet) logs::info("checkpoint {}", path);
  };

  auto run_eval_at = [&](int64_t at_step) {
    EvalSetup e{is_synthetic(cfg) ? cfg.data.source : "ppl", "val", cfg.train.eval_batches};
    const auto m = evaluate(model, cfg, data.dataset, e, dev, compute);
    std::vector<std::pair<std::string, std::string>> kv{{"step", fmt::format("{}", at_step)},
                                                        {"split", jstr("val")}};
    std::string line = fmt::format("eval  step {:>6}", at_step);
    for (const auto& [k, v] : m) {
      kv.emplace_back(k, jnum(v));
      line += v == std::floor(v) && std::fabs(v) >= 2 ? fmt::format(" | {} {:.0f}", k, v)
                                                      : fmt::format(" | {} {:.4f}", k, v);
    }
    if (root) metrics << json_line(kv) << "\n" << std::flush;
    if (!quiet) logs::info("{}", line);
    return m;
  };

  g_signal.store(0);
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);

  nn::ForwardContext ctx{compute, true, &dropout_gen};
  auto t_interval = Clock::now();
  int64_t steps_timed = 0;
  double seconds_timed = 0;
  bool stopped_nan = false, finished_early = false;
  std::map<std::string, double> final_eval;
  int exit_code = 0;
  while (step < cfg.train.steps) {
    const double lr = schedule.lr(step);
    stepper.step([&] { return data.train->next(); }, accum, lr, ctx, loss_sum);
    ++step;
    ++interval_steps;
    tokens_seen += tokens_per_step;

    const bool last = step == cfg.train.steps;
    if (step % cfg.train.log_every == 0 || last) {
      // The one synchronising read of the interval (the loss averaged over ranks).
      if (world > 1) comm->all_reduce(loss_sum, dist::ReduceOp::Avg);
      const double mean_loss = loss_sum.item() / double(interval_steps * accum);
      const double gnorm = clipper.read_norm();
      // Skipped updates: attempted (host count) minus applied (device count) steps.
      const int64_t skipped_now = adamw.attempted_steps() - adamw.read_applied_steps();
      const int64_t new_skips = skipped_now - skipped_total;
      skipped_total = skipped_now;
      const bool nonfinite = new_skips > 0;
      const double dt = std::chrono::duration<double>(Clock::now() - t_interval).count();
      const double tok_s = double(interval_steps * tokens_per_step) / dt;
      steps_timed += interval_steps;
      seconds_timed += dt;
      const double eta = seconds_timed / double(steps_timed) * double(cfg.train.steps - step);
      const double mfu = peak > 0 ? tok_s * flops_per_token / (peak * 1e12) : 0;
      if (root)
        metrics << json_line({{"step", fmt::format("{}", step)},
                              {"loss", jnum(mean_loss)},
                              {"lr", jnum(lr)},
                              {"grad_norm", jnum(gnorm)},
                              {"tokens_per_s", jnum(tok_s)},
                              {"tokens", fmt::format("{}", tokens_seen)},
                              {"mfu", jnum(mfu)},
                              {"skipped", fmt::format("{}", new_skips)}})
                << "\n"
                << std::flush;
      if (!quiet)
        logs::info(
            "step {:>6}/{} | loss {:.4f} | lr {:.2e} | grad norm {:.3f} | {:.1f}k tok/s | "
            "MFU {} | ETA {}",
            step, cfg.train.steps, mean_loss, lr, gnorm, tok_s / 1e3,
            peak > 0 ? fmt::format("{:.1f}%", 100 * mfu) : std::string("-"), eta_text(eta));
      loss_sum.zero_();
      interval_steps = 0;
      t_interval = Clock::now();
      if (nonfinite && cfg.train.nan_policy == "stop") {
        logs::error(
            "non-finite gradient in the {} steps up to step {} ({} updates skipped); "
            "stopping (train.nan_policy: stop). The last checkpoint is intact.",
            cfg.train.log_every, step, new_skips);
        stopped_nan = true;
        exit_code = 1;
        break;
      }
      if (nonfinite)
        logs::warn("non-finite gradients: {} update(s) skipped in the steps up to {}", new_skips,
                   step);
    }
    bool early_stop = false;
    if (cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0 && !last) {
      final_eval = run_eval_at(step);
      early_stop = cfg.train.stop_at_accuracy > 0 && final_eval.count("accuracy") &&
                   final_eval.at("accuracy") >= cfg.train.stop_at_accuracy;
      if (early_stop && !quiet)
        logs::info("accuracy {:.4f} >= train.stop_at_accuracy {}: stopping at step {}",
                   final_eval.at("accuracy"), cfg.train.stop_at_accuracy, step);
    }
    // Every rank stops at the same step (a signal may reach the ranks at different steps). The
    // agreement synchronises the host, so data-parallel runs take it only at log and checkpoint
    // steps: a signal stops the run within train.log_every steps.
    const bool agree_now =
        step % cfg.train.log_every == 0 || last ||
        (cfg.train.checkpoint_every > 0 && step % cfg.train.checkpoint_every == 0);
    const bool interrupted = world == 1  ? g_signal.load() != 0
                             : agree_now ? comm->all_reduce_flag(g_signal.load() != 0)
                                         : false;
    if ((cfg.train.checkpoint_every > 0 && step % cfg.train.checkpoint_every == 0) || last ||
        interrupted || early_stop)
      save(step);
    if (interrupted) {
      // Another rank may have been the one signalled.
      const int sig = g_signal.load() != 0 ? g_signal.load() : SIGTERM;
      logs::warn("interrupted by signal {} at step {}; resume with --resume", sig, step);
      exit_code = 128 + sig;
      break;
    }
    if (early_stop) {
      finished_early = true;
      break;
    }
    if (opt.stop_at_step > 0 && step >= opt.stop_at_step && !last) {
      if (!quiet) logs::info("stopping at step {} (--stop-at-step)", step);
      break;
    }
  }
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);

  if ((step == cfg.train.steps || finished_early) && !stopped_nan && exit_code == 0) {
    const auto m = finished_early ? final_eval : run_eval_at(step);
    if (root) {  // the final result is printed even with --quiet
      if (m.count("accuracy"))
        fmt::print("final {} accuracy: {:.4f} ({} queries)\n", task_title(cfg.data.source),
                   m.at("accuracy"), int64_t(m.at("queries")));
      else
        fmt::print("final val loss {:.4f} | ppl {:.3f} | bits/byte {:.4f}\n", m.at("loss"),
                   m.at("ppl"), m.at("bpb"));
    }
  }
  return exit_code;
}

// --------------------------------------------------------------------------- bench train
int run_bench_train(const BenchTrainOptions& opt) {
  const auto t0 = Clock::now();
  config::RunConfig cfg = config::load_config(opt.config_path, opt.overrides);
  SEQMIX_CHECK_KIND(Usage, opt.steps > 0 && opt.warmup >= 1,
                    "bench train: --steps must be > 0 and --warmup >= 1");
  const Device dev = resolve_device(opt.device == "auto" ? cfg.train.device : opt.device);
  const DType compute = dev.is_cuda() && cfg.train.precision == "bf16" ? DType::BF16 : DType::F32;
  const int64_t vocab =
      cfg.model.vocab_size > 0
          ? cfg.model.vocab_size
          : (is_synthetic(cfg) ? make_task_source(cfg, 0, 1, 0, 1)->vocab_size() : 256);
  nn::LanguageModel model(lm_config(cfg, vocab));
  model.to(dev);
  model.train(true);
  Stepper stepper(model, cfg, dev);
  Generator dropout_gen(stream_seed(cfg.run.seed, kDropout));
  const nn::ForwardContext ctx{compute, true, &dropout_gen};
  const int64_t B = cfg.data.batch_size, T = cfg.data.seq_len, accum = cfg.train.grad_accum;

  // A few batches of uniform random tokens (targets: the next token), drawn once on the CPU.
  std::vector<data::Batch> batches;
  Generator gen(stream_seed(cfg.run.seed, kData));
  for (int i = 0; i < 4; ++i) {
    Tensor u = Tensor::empty({B, T + 1}, DType::F64);
    ops::uniform_(u, 0.0, double(vocab), gen);
    std::vector<int64_t> tok;
    for (double x : u.to_vector<double>()) tok.push_back(std::min<int64_t>(int64_t(x), vocab - 1));
    Tensor all = Tensor::from_vector(tok, {B, T + 1}, DType::I64);
    batches.push_back(
        {all.narrow(1, 0, T).contiguous().to(dev), all.narrow(1, 1, T).contiguous().to(dev)});
  }
  size_t next_batch = 0;
  auto next = [&] { return batches[next_batch++ % batches.size()]; };
  Tensor loss_sum = Tensor::zeros({}, DType::F32, dev);
  auto sync = [&] {
    if (dev.is_cuda())
      cuda::synchronize(dev.index);
    else
      (void)loss_sum.item();
  };

  std::vector<double> ms;
  double first_step_s = 0;
  for (int64_t i = 0; i < opt.warmup + opt.steps; ++i) {
    const auto a = Clock::now();
    stepper.step(next, accum, cfg.optim.lr, ctx, loss_sum);
    sync();
    const auto b = Clock::now();
    if (i == 0) first_step_s = std::chrono::duration<double>(b - t0).count();
    if (i >= opt.warmup) ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const double tok_s = double(B * T * accum) / (med / 1e3);
  const int64_t n_params = model.num_parameters();
  const double peak = peak_tflops(cfg, dev);
  const double mfu = peak > 0 ? tok_s * train_flops_per_token(cfg, n_params) / (peak * 1e12) : 0;
  const std::string name = dev.is_cuda() ? cuda::props(dev.index).name : "cpu";
  if (opt.json) {
    fmt::print(
        "{{\"bench\": \"train\", \"config\": {}, \"device\": {}, \"params\": {}, "
        "\"batch\": {}, \"seq_len\": {}, \"median_ms\": {:.3f}, \"min_ms\": {:.3f}, "
        "\"max_ms\": {:.3f}, \"tokens_per_s\": {:.1f}, \"mfu\": {:.4f}, "
        "\"first_step_s\": {:.3f}}}\n",
        jstr(opt.config_path), jstr(name), n_params, B * accum, T, med, ms.front(), ms.back(),
        tok_s, mfu, first_step_s);
  } else {
    fmt::print("bench train {}: {:.2f}M parameters, {} x {} tokens per step, {}\n", opt.config_path,
               double(n_params) / 1e6, B * accum, T, dtype_name(compute));
    fmt::print(
        "step median {:.2f} ms (min {:.2f}, max {:.2f}, {} timed after {} warm-up) | "
        "{:.1f}k tokens/s | MFU {} | first step done {:.2f} s after start\n",
        med, ms.front(), ms.back(), ms.size(), opt.warmup, tok_s / 1e3,
        peak > 0 ? fmt::format("{:.1f}%", 100 * mfu) : std::string("-"), first_step_s);
    fmt::print("device: {}\n", name);
  }
  return 0;
}

// --------------------------------------------------------------------------- eval / inspect
namespace {
std::string resolve_checkpoint(const std::string& target) {
  SEQMIX_CHECK_KIND(Checkpoint, fs::exists(target), "'{}' does not exist", target);
  if (fs::is_directory(target)) {
    const std::string latest = latest_checkpoint(target);
    SEQMIX_CHECK_KIND(Checkpoint, !latest.empty(), "run directory '{}' holds no checkpoint",
                      target);
    return latest;
  }
  return target;
}
}  // namespace

// Loss vs position as a self-contained SVG line plot; a dashed line marks the training length.
std::string position_loss_svg(const std::vector<double>& loss, int64_t train_len,
                              const std::string& title) {
  const double W = 720, H = 400, L = 64, R = 20, Tp = 40, Bm = 50;
  double lo = 1e300, hi = -1e300;
  for (double v : loss) lo = std::min(lo, v), hi = std::max(hi, v);
  if (loss.empty()) lo = 0, hi = 1;
  if (hi - lo < 1e-9) hi = lo + 1;
  const double n = std::max<double>(1, double(loss.size()) - 1);
  auto X = [&](double i) { return L + (W - L - R) * i / n; };
  auto Y = [&](double v) { return Tp + (H - Tp - Bm) * (1 - (v - lo) / (hi - lo)); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"20\" font-size=\"13\">loss vs position: {3}</text>\n",
      W, H, L, title);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", L,
                     Tp, H - Bm);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", L,
                     H - Bm, W - R);
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0, i = n * k / 4.0;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3g}</text>\n", L - 6,
                       Y(v) + 4, v);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{:.0f}</text>\n", X(i),
                       H - Bm + 16, i);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">position</text>\n",
                     (L + W - R) / 2, H - 12);
  svg += fmt::format(
      "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">loss "
      "(nats)</text>\n",
      (Tp + H - Bm) / 2, (Tp + H - Bm) / 2);
  if (train_len > 0 && double(train_len) < n) {
    svg += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"gray\" "
        "stroke-dasharray=\"4 3\"/>\n<text x=\"{3}\" y=\"{4}\" fill=\"gray\">training length "
        "{5}</text>\n",
        X(double(train_len)), Tp, H - Bm, X(double(train_len)) + 4, Tp + 12, train_len);
  }
  std::string pts;
  for (size_t i = 0; i < loss.size(); ++i)
    pts += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", X(double(i)), Y(loss[i]));
  svg += fmt::format(
      "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n</svg>\n",
      pts);
  return svg;
}

int run_eval(const EvalOptions& opt) {
  const std::string path = resolve_checkpoint(opt.target);
  const CheckpointData ck = load_checkpoint(path);
  std::vector<std::string> overrides;
  if (!opt.data.empty()) {
    overrides.push_back("data.source=tokens");
    overrides.push_back("data.path=" + opt.data);
  }
  config::RunConfig cfg = config::parse_config(ck.config_yaml, path + ":/config", overrides);
  const int64_t train_seq_len = cfg.data.seq_len;
  if (opt.seq_len > 0) cfg.data.seq_len = opt.seq_len;
  const std::string task = !opt.task.empty()   ? opt.task
                           : is_synthetic(cfg) ? cfg.data.source
                                               : "ppl";
  SEQMIX_CHECK_KIND(Usage, task == "ppl" || (task == cfg.data.source && is_synthetic(cfg)),
                    "--task must be ppl (with token data) or the run's task '{}', got '{}'",
                    cfg.data.source, task);
  SEQMIX_CHECK_KIND(Usage, opt.split == "val" || opt.split == "test" || opt.split == "train",
                    "--split must be val, test or train, got '{}'", opt.split);
  const Device dev = resolve_device(opt.device);
  const DType compute = dev.is_cuda() && cfg.train.precision == "bf16" ? DType::BF16 : DType::F32;

  std::shared_ptr<data::TokenDataset> dataset;
  int64_t vocab = is_synthetic(cfg) ? make_task_source(cfg, 0, 1, 0, 1)->vocab_size() : 0;
  if (task == "ppl") {
    SEQMIX_CHECK_KIND(Usage, cfg.data.source == "tokens",
                      "--task ppl needs token data: pass --data DIR (a `seqmix prepare` output)");
    dataset = std::make_shared<data::TokenDataset>(cfg.data.path);
    vocab = dataset->vocab_size();
  }
  nn::LanguageModel model(lm_config(cfg, vocab));
  SEQMIX_CHECK_KIND(Data, vocab <= model.config().vocab_size,
                    "the data's vocabulary ({}) is larger than the model's ({})", vocab,
                    model.config().vocab_size);
  model.load_state_dict(ck.model, true);
  model.to(dev);
  // MQAR: one evaluation per (seq_len, num_kv_pairs) slice; the top-level metrics pool them.
  std::vector<std::pair<int64_t, int64_t>> slices;
  for (const std::string& sl : opt.mqar_slices) {
    const auto colon = sl.find(':');
    int64_t t = 0, n = 0;
    try {
      SEQMIX_CHECK_KIND(Usage, colon != std::string::npos, "x");
      t = std::stoll(sl.substr(0, colon));
      n = std::stoll(sl.substr(colon + 1));
    } catch (...) {
      SEQMIX_THROW(Usage, "--mqar-slices: expected SEQ_LEN:NUM_KV_PAIRS, got '{}'", sl);
    }
    slices.emplace_back(t, n);
  }
  SEQMIX_CHECK_KIND(Usage, slices.empty() || task == "mqar",
                    "--mqar-slices needs --task mqar (got '{}')", task);
  if (slices.empty()) slices.emplace_back(cfg.data.seq_len, cfg.data.mqar.num_kv_pairs);
  SEQMIX_CHECK_KIND(Usage, !opt.per_position || task == "ppl",
                    "--per-position needs --task ppl (token data)");
  std::map<std::string, double> m;
  std::vector<double> position_loss;
  std::vector<std::map<std::string, double>> slice_metrics;
  if (task == "mqar") {
    double correct = 0, queries = 0, examples = 0;
    for (const auto& [t, n] : slices) {
      config::RunConfig c = cfg;
      c.data.seq_len = t;
      c.data.mqar.num_kv_pairs = n;
      auto r = evaluate(model, c, dataset, EvalSetup{task, opt.split, opt.batches}, dev, compute);
      r["seq_len"] = double(t);
      r["num_kv_pairs"] = double(n);
      correct += r.at("accuracy") * r.at("queries");
      queries += r.at("queries");
      examples += r.at("examples");
      slice_metrics.push_back(r);
    }
    if (slice_metrics.size() == 1) {
      m = slice_metrics[0];  // exactly the values of the one slice
    } else {
      m["accuracy"] = queries > 0 ? correct / queries : 0.0;
      m["queries"] = queries;
      m["examples"] = examples;
    }
  } else {
    EvalSetup es{task, opt.split, opt.batches};
    es.position_loss = opt.per_position ? &position_loss : nullptr;
    m = evaluate(model, cfg, dataset, es, dev, compute);
  }
  const bool accuracy_task = task != "ppl";

  fmt::print("checkpoint  {} (step {})\n", path, ck.step);
  if (task == "mqar") {
    fmt::print(
        "task        mqar ({} test examples per slice, trained at seq_len {}, "
        "num_kv_pairs {})\n",
        cfg.data.mqar.test_examples, cfg.data.seq_len, cfg.data.mqar.num_kv_pairs);
    fmt::print("{:>8} {:>8} {:>10} {:>9}\n", "seq_len", "kv", "accuracy", "queries");
    for (const auto& r : slice_metrics)
      fmt::print("{:>8} {:>8} {:>10.4f} {:>9}\n", int64_t(r.at("seq_len")),
                 int64_t(r.at("num_kv_pairs")), r.at("accuracy"), int64_t(r.at("queries")));
    fmt::print("{:>17} {:>10.4f} {:>9}\n", "all", m.at("accuracy"), int64_t(m.at("queries")));
  } else if (accuracy_task) {
    fmt::print("task        {} (seq_len {}, {} test examples)\n", task, cfg.data.seq_len,
               test_examples(cfg));
    fmt::print("{:<12}{:>14}\n", "metric", "value");
    for (const auto& [k, v] : m) fmt::print("{:<12}{:>14.6g}\n", k, v);
  } else {
    fmt::print("task        ppl on '{}' split of {}\n", opt.split, dataset->file());
    fmt::print("{:<12}{:>14}\n", "metric", "value");
    for (const auto& [k, v] : m) fmt::print("{:<12}{:>14.6g}\n", k, v);
  }

  std::vector<std::pair<std::string, std::string>> kv;
  kv.emplace_back("checkpoint", jstr(path));
  kv.emplace_back("step", fmt::format("{}", ck.step));
  kv.emplace_back("task", jstr(task));
  kv.emplace_back("split", jstr(accuracy_task ? "test" : opt.split));
  if (task == "mqar") {
    std::vector<std::string> parts;
    for (const auto& r : slice_metrics) {
      std::vector<std::pair<std::string, std::string>> e;
      for (const auto& [k, v] : r) e.emplace_back(k, jnum(v));
      parts.push_back(json_line(e));
    }
    kv.emplace_back("slices", fmt::format("[{}]", fmt::join(parts, ", ")));
  }
  for (const auto& [k, v] : m) kv.emplace_back(k, jnum(v));
  const std::string out =
      !opt.output.empty()
          ? opt.output
          : (fs::path(path).parent_path().parent_path() /
             fmt::format("eval_{}_{}.json", task, accuracy_task ? "test" : opt.split))
                .string();
  write_file_atomic(out, json_line(kv) + "\n");
  fmt::print("wrote {}\n", out);
  if (opt.per_position) {
    const std::string stem = out.substr(0, out.size() - (out.ends_with(".json") ? 5 : 0));
    std::string csv = "position,loss\n";
    for (size_t i = 0; i < position_loss.size(); ++i)
      csv += fmt::format("{},{}\n", i, position_loss[i]);
    write_file_atomic(stem + "_positions.csv", csv);
    write_file_atomic(
        stem + "_positions.svg",
        position_loss_svg(position_loss, train_seq_len,
                          fmt::format("{} (step {}), '{}' split", path, ck.step, opt.split)));
    fmt::print("wrote {}_positions.csv and {}_positions.svg\n", stem, stem);
  }
  return 0;
}

int run_inspect(const std::string& target) {
  const std::string path = resolve_checkpoint(target);
  const CheckpointData ck = load_checkpoint(path);
  fmt::print("checkpoint   {}\n", path);
  fmt::print("step         {}\n", ck.step);
  fmt::print("tokens seen  {}\n", ck.tokens_seen);
  fmt::print("wall time    {:.1f} s\n", ck.wall_time_s);
  fmt::print("git revision {}\n", ck.git_revision);
  int64_t total = 0;
  for (const auto& [n, t] : ck.model) total += t.numel();
  fmt::print("parameters   {} tensors, {} values\n\n", ck.model.size(), total);
  fmt::print("{:<48} {:>18} {:>12}\n", "name", "shape", "L2 norm");
  for (const auto& [n, t] : ck.model) {
    double s = 0;
    for (double x : t.to_vector<double>()) s += x * x;
    fmt::print("{:<48} {:>18} {:>12.6g}\n", n, t.shape_str(), std::sqrt(s));
  }
  fmt::print("\nconfig:\n{}", ck.config_yaml);
  return 0;
}

}  // namespace seqmix::train
