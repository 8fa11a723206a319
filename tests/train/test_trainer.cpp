// End-to-end training through the seqmix executable (CPU): a tiny model learns, the run
// directory holds what the docs promise, an interrupted-and-resumed run equals the uninterrupted
// one value for value (losses, grad norms and final parameters), and bad configs, existing run
// directories and corrupt checkpoints give the documented errors and exit codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/testing.h"
#include "train/checkpoint/checkpoint.h"

namespace fs = std::filesystem;
using seqmix::tu::CmdResult;

namespace {

CmdResult run(const std::string& args) {
  return seqmix::tu::run_command(std::string(SEQMIX_BIN) + " " + args);
}

[[maybe_unused]] std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The training records of metrics.jsonl: step -> {loss, lr, grad_norm} as written (text), so
// the comparison is exact. Eval records (with "split") are returned separately.
struct Metrics {
  std::map<int64_t, std::string> train;  // step -> "loss|lr|grad_norm"
  std::vector<std::string> eval;
};
std::string field(const std::string& line, const std::string& key) {
  const std::string k = "\"" + key + "\": ";
  const auto p = line.find(k);
  if (p == std::string::npos) return "";
  const auto e = line.find_first_of(",}", p + k.size());
  return line.substr(p + k.size(), e - p - k.size());
}
Metrics read_metrics(const fs::path& p) {
  Metrics m;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    if (!field(line, "split").empty()) {
      m.eval.push_back(line);
      continue;
    }
    m.train[std::stoll(field(line, "step"))] =
        field(line, "loss") + "|" + field(line, "lr") + "|" + field(line, "grad_norm");
  }
  return m;
}

class TrainerE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("seqmix_test_trainer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(dir_ / name) << text;
    return p(name);
  }
  // A small char-level dataset of generated text.
  std::string make_dataset() const {
    std::string text;
    for (int i = 0; i < 400; ++i)
      text += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
    write("text.txt", text);
    const CmdResult r = run("prepare --input " + p("text.txt") + " --output " + p("ds") +
                            " --tokenizer char --val-fraction 0.1");
    EXPECT_EQ(r.code, 0) << r.out;
    return p("ds");
  }
  void check_resume(const std::string& device, int64_t d_model);
  fs::path dir_;
};

// A tiny attention model on token data with every stateful feature on: dropout (RNG state),
// gradient accumulation, shuffled data order across epochs, warmup + cosine.
std::string token_config(const std::string& data, const std::string& device = "cpu",
                         int64_t d_model = 32) {
  return R"(
run: {name: tiny, seed: 99}
model:
  d_model: )" +
         std::to_string(d_model) +
         R"(
  layers: {pattern: "A", repeat: 2}
  mixers: {A: {type: attention, n_heads: 2}}
  dropout: 0.1
data: {source: tokens, path: )" +
         data + R"(, batch_size: 4, seq_len: 32}
train: {steps: 12, log_every: 3, eval_every: 6, eval_batches: 2, checkpoint_every: 4,
        keep_last: 2, device: )" +
         device + R"(, grad_accum: 2}
optim: {lr: 3e-3, warmup_steps: 3, min_lr: 1e-4}
)";
}

}  // namespace

#ifndef SEQMIX_TRAINER_GPU
TEST_F(TrainerE2E, LearnsMqarAndWritesTheRunDirectory) {
  const std::string cfg = write("mqar.yaml", R"(
run: {name: mqar, seed: 5}
model:
  d_model: 32
  layers: {pattern: "A", repeat: 2}
  mixers: {A: {type: attention, n_heads: 1}}
  mlp: false
data: {source: mqar, batch_size: 16, seq_len: 16, mqar: {vocab_size: 32, num_kv_pairs: 2, test_examples: 64}}
train: {steps: 150, log_every: 10, device: cpu}
optim: {lr: 1e-2, warmup_steps: 10}
)");
  const CmdResult r = run("train " + cfg + " --run-dir " + p("run"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("final MQAR accuracy"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(p("run/config.yaml")));
  EXPECT_EQ(seqmix::latest_checkpoint(p("run")), seqmix::checkpoint_path(p("run"), 150));
  const Metrics m = read_metrics(p("run/metrics.jsonl"));
  ASSERT_EQ(m.train.size(), 15u);
  const double first = std::stod(m.train.begin()->second);
  const double last = std::stod(m.train.rbegin()->second);
  EXPECT_LT(last, 0.6 * first) << "loss did not fall: " << first << " -> " << last;
  ASSERT_EQ(m.eval.size(), 1u);
  EXPECT_NE(m.eval[0].find("\"split\": \"val\""), std::string::npos);
  // Chance is 1/16 (values are half of the 32-token vocabulary).
  EXPECT_GT(std::stod(field(m.eval[0], "accuracy")), 0.3) << m.eval[0];

  // eval and inspect on the finished run.
  const CmdResult e = run("eval " + p("run") + " --device cpu --output " + p("eval.json"));
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("accuracy"), std::string::npos) << e.out;
  EXPECT_EQ(field(read(p("eval.json")), "accuracy"), field(m.eval[0], "accuracy"));
  // Several (seq_len, num_kv_pairs) slices in one evaluation.
  const CmdResult sl =
      run("eval " + p("run") + " --device cpu --mqar-slices 16:2 32:4 --output " + p("sl.json"));
  ASSERT_EQ(sl.code, 0) << sl.out;
  const std::string js = read(p("sl.json"));
  EXPECT_NE(js.find("\"slices\": [{"), std::string::npos) << js;
  EXPECT_NE(js.find("\"seq_len\": 32"), std::string::npos) << js;
  EXPECT_EQ(run("eval " + p("run") + " --device cpu --mqar-slices 16").code, 2);
  const CmdResult i = run("inspect " + p("run"));
  ASSERT_EQ(i.code, 0) << i.out;
  EXPECT_NE(i.out.find("blocks.1.mixer.q_proj.weight"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("step         150"), std::string::npos) << i.out;
}
#endif

#ifndef SEQMIX_TRAINER_GPU
TEST_F(TrainerE2E, InterruptedAndResumedEqualsUninterrupted) {
  check_resume("cpu", 32);
}
#else
// The same on the GPU (bf16 compute, head dim 64): every kernel on the training path must be
// deterministic for this to hold.
TEST_F(TrainerE2E, InterruptedAndResumedEqualsUninterruptedGpu) {
  SEQMIX_REQUIRE_CUDA();
  check_resume("cuda", 128);
}
#endif

void TrainerE2E::check_resume(const std::string& device, int64_t d_model) {
  const std::string data = make_dataset();
  const std::string cfg = write("tok.yaml", token_config(data, device, d_model));
  const CmdResult full = run("train " + cfg + " --quiet --run-dir " + p("full"));
  ASSERT_EQ(full.code, 0) << full.out;
  // Interrupted after step 10: the last checkpoint is step 8, so steps 9-10 are redone.
  const CmdResult part =
      run("train " + cfg + " --quiet --run-dir " + p("part") + " --stop-at-step 10");
  ASSERT_EQ(part.code, 0) << part.out;
  EXPECT_EQ(seqmix::latest_checkpoint(p("part")), seqmix::checkpoint_path(p("part"), 8));
  EXPECT_EQ(read_metrics(p("part/metrics.jsonl")).train.size(), 3u);  // steps 3, 6, 9
  const CmdResult res = run("train " + cfg + " --quiet --run-dir " + p("part") + " --resume");
  ASSERT_EQ(res.code, 0) << res.out;

  const Metrics a = read_metrics(p("full/metrics.jsonl")),
                b = read_metrics(p("part/metrics.jsonl"));
  ASSERT_EQ(a.train.size(), 4u);
  // Interval mean loss, lr and grad norm at every log step, as text (the step-9 interval spans
  // the checkpoint at step 8, so the saved interval accumulator matters).
  EXPECT_EQ(a.train, b.train);
  ASSERT_EQ(a.eval.size(), b.eval.size());
  for (size_t i = 0; i < a.eval.size(); ++i)
    EXPECT_EQ(field(a.eval[i], "loss"), field(b.eval[i], "loss"));

  // Final parameters and optimizer state are bitwise equal.
  const auto ca = seqmix::load_checkpoint(seqmix::latest_checkpoint(p("full")));
  const auto cb = seqmix::load_checkpoint(seqmix::latest_checkpoint(p("part")));
  ASSERT_EQ(ca.model.size(), cb.model.size());
  for (size_t i = 0; i < ca.model.size(); ++i) {
    EXPECT_EQ(ca.model[i].first, cb.model[i].first);
    EXPECT_TRUE(seqmix::tu::bitwise_equal(ca.model[i].second, cb.model[i].second))
        << ca.model[i].first;
  }
  for (size_t i = 0; i < ca.optim.size(); ++i)
    EXPECT_TRUE(seqmix::tu::bitwise_equal(ca.optim[i].second, cb.optim[i].second))
        << ca.optim[i].first;
  // keep_last: 2
  EXPECT_EQ(seqmix::list_checkpoints(p("full")).size(), 2u);

  // Perplexity evaluation of the token run.
  const CmdResult e = run("eval " + p("full") + " --device cpu --split val");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_NE(e.out.find("ppl"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("bpb"), std::string::npos) << e.out;
  EXPECT_TRUE(fs::exists(p("full/eval_ppl_val.json")));
  // Loss vs position beyond the training length (32): CSV rows and an SVG plot.
  const CmdResult pp = run("eval " + p("full") + " --device cpu --seq-len 48 --per-position " +
                           "--output " + p("pp.json"));
  ASSERT_EQ(pp.code, 0) << pp.out;
  const std::string csv = read(p("pp_positions.csv"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 49) << csv;  // header + 48 positions
  const std::string svg = read(p("pp_positions.svg"));
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find("training length 32"), std::string::npos);
}

#ifndef SEQMIX_TRAINER_GPU
TEST_F(TrainerE2E, StopsEarlyAtTheAccuracyThreshold) {
  const std::string cfg = write("mqar.yaml", R"(
run: {name: mqar, seed: 5}
model:
  d_model: 32
  layers: {pattern: "A", repeat: 2}
  mixers: {A: {type: attention, n_heads: 1}}
  mlp: false
data: {source: mqar, batch_size: 16, seq_len: 16, mqar: {vocab_size: 32, num_kv_pairs: 2, test_examples: 64}}
train: {steps: 400, log_every: 10, eval_every: 10, device: cpu, stop_at_accuracy: 0.3}
optim: {lr: 1e-2, warmup_steps: 10}
)");
  const CmdResult r = run("train " + cfg + " --run-dir " + p("run") + " --quiet");
  ASSERT_EQ(r.code, 0) << r.out;
  // The run ends at the first evaluation that reaches 0.3, with a checkpoint of that step.
  const Metrics m = read_metrics(p("run/metrics.jsonl"));
  ASSERT_FALSE(m.eval.empty());
  const int64_t stop = std::stoll(field(m.eval.back(), "step"));
  EXPECT_LT(stop, 400);
  EXPECT_GE(std::stod(field(m.eval.back(), "accuracy")), 0.3) << m.eval.back();
  for (size_t i = 0; i + 1 < m.eval.size(); ++i)
    EXPECT_LT(std::stod(field(m.eval[i], "accuracy")), 0.3) << m.eval[i];
  EXPECT_EQ(seqmix::latest_checkpoint(p("run")), seqmix::checkpoint_path(p("run"), stop));
  EXPECT_EQ(m.train.rbegin()->first, stop);
  EXPECT_NE(r.out.find("final MQAR accuracy"), std::string::npos) << r.out;
}

// Each synthetic task (docs/evaluation.md) trains a tiny attention model above chance on the CPU
// (set disjointness is not here: this model stays at chance on it within a test's budget).
TEST_F(TrainerE2E, SyntheticTasksTrainAboveChance) {
  const std::string cfg = write("task.yaml", R"(
run: {seed: 3}
model:
  d_model: 32
  layers: {pattern: "A", repeat: 2}
  mixers: {A: {type: attention, n_heads: 1}}
data: {batch_size: 16, seq_len: 24}
train: {steps: 150, log_every: 50, device: cpu}
optim: {lr: 3e-3, warmup_steps: 10}
)");
  struct Task {
    const char* name;
    const char* sets;
    double chance, above;  // chance level, and the accuracy the test requires (> chance)
  };
  for (const Task& t : {
           Task{"sqar", "--set data.sqar.vocab_size=32 --set data.sqar.num_kv_pairs=2", 1.0 / 16,
                0.1},
           Task{"passkey", "--set data.passkey.vocab_size=32 --set data.passkey.num_digits=2", 0.1,
                0.2},
           Task{"parity", "--set data.seq_len=8", 0.5, 0.56},
           Task{"modadd", "--set data.seq_len=8", 0.2, 0.3},
           Task{"s5", "", 1.0 / 120, 0.02},
       }) {
    const std::string dir = p(std::string("run_") + t.name);
    const CmdResult r =
        run("train " + cfg + " --quiet --run-dir " + dir + " --set data.source=" + t.name +
            " --set data." + t.name + ".test_examples=128 " + t.sets);
    ASSERT_EQ(r.code, 0) << t.name << ": " << r.out;
    const Metrics m = read_metrics(dir + "/metrics.jsonl");
    ASSERT_FALSE(m.eval.empty()) << t.name;
    const double acc = std::stod(field(m.eval.back(), "accuracy"));
    EXPECT_GT(acc, t.above) << t.name << " accuracy " << acc << ", chance " << t.chance;
    const CmdResult e = run("eval " + dir + " --device cpu");
    EXPECT_EQ(e.code, 0) << e.out;
    EXPECT_NE(e.out.find(std::string("task        ") + t.name), std::string::npos) << e.out;
  }
}

TEST_F(TrainerE2E, ErrorsHaveTheDocumentedCodes) {
  const std::string data = make_dataset();
  const std::string cfg = write("tok.yaml", token_config(data));
  // A dataset whose vocabulary is larger than the model's: data error naming the key.
  CmdResult r = run("train " + cfg + " --run-dir " + p("v") + " --set model.vocab_size=5");
  EXPECT_EQ(r.code, 3) << r.out;
  EXPECT_NE(r.out.find("model.vocab_size"), std::string::npos) << r.out;
  // Missing data directory: data error.
  r = run("train " + cfg + " --run-dir " + p("m") + " --set data.path=" + p("nope"));
  EXPECT_EQ(r.code, 3) << r.out;
  // A mixer option typo: config error with the nearest option.
  r = run("train " + cfg + " --run-dir " + p("o") + " --set model.mixers.A.windw=4");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("did you mean 'window'"), std::string::npos) << r.out;

  // A finished run is not silently overwritten.
  ASSERT_EQ(run("train " + cfg + " --quiet --run-dir " + p("run") + " --set train.steps=4").code,
            0);
  r = run("train " + cfg + " --quiet --run-dir " + p("run") + " --set train.steps=4");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--resume"), std::string::npos) << r.out;

  // A corrupt (truncated) checkpoint: checkpoint error (exit 3) for inspect, eval and resume.
  const std::string ck = seqmix::latest_checkpoint(p("run"));
  ASSERT_FALSE(ck.empty());
  fs::resize_file(ck, fs::file_size(ck) / 2);
  EXPECT_EQ(run("inspect " + ck).code, 3);
  EXPECT_EQ(run("eval " + ck + " --device cpu").code, 3);
  r = run("train " + cfg + " --quiet --run-dir " + p("run") + " --resume --set train.steps=8");
  EXPECT_NE(r.code, 0) << r.out;
}
#endif
