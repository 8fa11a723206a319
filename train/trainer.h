// The training loop and the evaluator: builds the model, data source, optimizer and schedule
// from a RunConfig; runs steps without host synchronisation except at log / eval / checkpoint
// points; writes the progress line, metrics.jsonl, checkpoints; resumes bit-exactly.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "configs/config.h"
#include "core/device.h"
#include "core/dtype.h"

namespace seqmix::train {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set a.b=c
  std::string run_dir;                 // "" : config's run.dir or runs/<run.name>
  bool resume = false;                 // continue from the run directory's latest checkpoint
  int64_t stop_at_step = 0;            // >0: stop once this step is done, as if interrupted
  bool quiet = false;                  // no progress lines (metrics.jsonl is still written)
};

// Runs training; returns the process exit code (0 success).
int run_train(const TrainOptions& opt);

struct EvalOptions {
  std::string target;  // run directory (its latest checkpoint) or a checkpoint file
  std::string data;    // "" : the config's data.path
  std::string split = "val";
  std::string task;  // "" : ppl for token data, mqar for MQAR runs
  std::string device = "auto";
  int64_t batches = 0;  // 0: the whole split / test set
  std::string output;   // JSON path; "" : <run dir>/eval_<task>_<split>.json next to the checkpoint
  // MQAR: "T:KV" slices to evaluate (sequence length, key-value pairs); empty: the run's own.
  std::vector<std::string> mqar_slices;
  int64_t seq_len = 0;        // >0: evaluate at this sequence length (length generalisation)
  bool per_position = false;  // ppl: also write loss vs position (CSV + SVG plot)
};

struct EvalResult {
  std::string task, split;
  std::map<std::string, double> metrics;  // loss, ppl, bpb, tokens | accuracy, queries
  // MQAR: accuracy per (seq_len, num_kv_pairs) slice.
  std::vector<std::map<std::string, double>> slices;
};

int run_eval(const EvalOptions& opt);

// `seqmix bench train`: optimizer steps of a config's model on random tokens (vocabulary and
// B x T from the config), timed per step with a device sync; reports the median step time,
// tokens/s, MFU and when the first step finished (seconds since the command started).
struct BenchTrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;
  int64_t steps = 20;  // timed steps
  int64_t warmup = 3;  // untimed steps first (the first one is reported separately)
  std::string device = "auto";
  bool json = false;
};
int run_bench_train(const BenchTrainOptions& opt);
int run_inspect(const std::string& checkpoint_or_run_dir);

// Resolves the device of train.device ("auto": CUDA when available).
Device resolve_device(const std::string& name);

}  // namespace seqmix::train
