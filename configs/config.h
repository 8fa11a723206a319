// Typed run configuration <-> YAML. A run is described by one YAML file whose keys map onto the
// structs below; every field has a default, a type and a one-line doc, declared once in the
// struct's visit() and used by the reader (validation), the writer (resolved config) and the
// reference generator (docs/config.md).
//
// Errors (ErrorKind::Config) name the key path, the file and line, and suggest the nearest valid
// key:   configs/x.yaml:12: unknown key 'train.step' (did you mean 'train.steps'?)
// `--set a.b.c=value` overrides are applied to the YAML tree before validation, so they are
// checked exactly like file keys.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace seqmix::config {

// One mixer spec: `type` plus its options as raw YAML scalars (validated against the mixer table
// when the model is built; `locations` remembers "file:line" of each option for error messages).
struct MixerConfig {
  std::string type;
  std::map<std::string, std::string> options;
  std::map<std::string, std::string> locations;
  std::string location;  // "file:line" of the spec itself
};

struct RunSection {
  std::string name = "run";
  uint64_t seed = 1234;
  std::string dir;  // run directory; default runs/<name>; --run-dir overrides
  template <class V>
  void visit(V& v) {
    v("name", name, "Run name (used for the default run directory runs/<name>).");
    v("seed", seed, "Seed of every random stream: init, data order, dropout, MQAR examples.");
    v("dir", dir, "Run directory (checkpoints, metrics.jsonl, config.yaml); empty: runs/<name>.");
  }
};

struct LayersSection {
  std::string pattern = "A";  // one letter per layer, each naming an entry of model.mixers
  int64_t repeat = 1;
  std::vector<std::string> list;  // explicit per-layer mixer names (instead of pattern)
  template <class V>
  void visit(V& v) {
    v("pattern", pattern,
      "Per-layer mixer letters, each a key of model.mixers, e.g. \"GGGA\" (ignored when list is "
      "given).");
    v("repeat", repeat, "How many times the pattern is repeated (layers = len(pattern) * repeat).");
    v("list", list, "Explicit per-layer mixer names (keys of model.mixers), instead of pattern.");
  }
};

struct ModelSection {
  int64_t vocab_size = 0;  // 0: taken from the data
  int64_t d_model = 256;
  LayersSection layers;
  std::map<std::string, MixerConfig> mixers;
  bool mlp = true;
  int64_t mlp_hidden = 0;
  int64_t short_conv = 0;
  double norm_eps = 1e-5;
  bool tie_embeddings = true;
  double dropout = 0.0;
  double init_std = 0.02;
  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size,
      "Vocabulary size; 0 takes the data's (a dataset larger than an explicit value is an error).");
    v("d_model", d_model, "Model width C.");
    v("layers", layers, "Layer stack: {pattern, repeat} or {list}.");
    v("mixers", mixers,
      "Named mixer specs: NAME: {type: attention|..., <options>}; see docs/mixers.md.");
    v("mlp", mlp, "SwiGLU MLP after each mixer (false: mixer-only blocks, as in Zoology).");
    v("mlp_hidden", mlp_hidden, "SwiGLU hidden width; 0: 8/3 d_model rounded up to 64.");
    v("short_conv", short_conv,
      "Width (2-4) of a causal depthwise conv on each block's normalised mixer input, as in "
      "Zoology's MQAR models; 0: none.");
    v("norm_eps", norm_eps, "RMSNorm epsilon.");
    v("tie_embeddings", tie_embeddings, "Share the embedding matrix with the LM head.");
    v("dropout", dropout, "Dropout probability on embeddings and residual branches.");
    v("init_std", init_std, "Standard deviation of the normal init of matrices.");
  }
};

struct MqarSection {
  int64_t vocab_size = 8192;
  int64_t num_kv_pairs = 4;
  double power_a = 0.01;
  bool random_non_queries = true;
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size, "MQAR vocabulary (keys from [1, V/2), values from [V/2, V)).");
    v("num_kv_pairs", num_kv_pairs, "Key-value pairs per example.");
    v("power_a", power_a, "Power-law exponent of the query gaps (Zoology's power_a).");
    v("random_non_queries", random_non_queries, "Fill non-query positions with random tokens.");
    v("test_examples", test_examples, "Examples in the MQAR test set (eval).");
  }
};

struct SqarSection {
  int64_t vocab_size = 8192;
  int64_t num_kv_pairs = 8;
  bool random_filler = true;
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size, "Vocabulary (keys from [1, V/2), values from [V/2, V)).");
    v("num_kv_pairs", num_kv_pairs, "Key-value pairs before the single query.");
    v("random_filler", random_filler, "Fill the gap before the query with random tokens.");
    v("test_examples", test_examples, "Examples in the test set (eval).");
  }
};

struct SetDisjointSection {
  int64_t vocab_size = 256;
  int64_t short_size = 4;
  int64_t long_size = 16;
  std::string order = "short_first";  // short_first | long_first
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size, "Vocabulary of set elements and markers.");
    v("short_size", short_size, "Elements of the short set.");
    v("long_size", long_size, "Elements of the long set.");
    v("order", order, "short_first or long_first (Just-Read-Twice's two set orders).");
    v("test_examples", test_examples, "Examples in the test set (eval).");
  }
};

struct PasskeySection {
  int64_t vocab_size = 256;
  int64_t num_digits = 5;
  double depth = -1.0;
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("vocab_size", vocab_size, "Vocabulary (digits, markers and filler tokens).");
    v("num_digits", num_digits, "Digits of the passkey to reproduce.");
    v("depth", depth, "Position of the passkey as a fraction of the context; < 0: uniform.");
    v("test_examples", test_examples, "Examples in the test set (eval).");
  }
};

struct ParitySection {
  bool separators = false;
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("separators", separators, "Separator tokens between bits.");
    v("test_examples", test_examples, "Examples in the test set (eval).");
  }
};

struct ModAddSection {
  int64_t modulus = 5;
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("modulus", modulus, "m: the running sum is taken modulo m.");
    v("test_examples", test_examples, "Examples in the test set (eval).");
  }
};

struct S5Section {
  std::string group = "s5";  // s5 | a5
  int64_t test_examples = 1000;
  template <class V>
  void visit(V& v) {
    v("group", group, "s5 (all 120 permutations of 5) or a5 (the 60 even ones).");
    v("test_examples", test_examples, "Examples in the test set (eval).");
  }
};

struct DataSection {
  std::string source =
      "mqar";        // mqar | tokens | sqar | set_disjoint | passkey | parity | modadd | s5
  std::string path;  // prepared dataset directory (tokens)
  int64_t batch_size = 32;
  int64_t seq_len = 256;
  MqarSection mqar;
  SqarSection sqar;
  SetDisjointSection set_disjoint;
  PasskeySection passkey;
  ParitySection parity;
  ModAddSection modadd;
  S5Section s5;
  template <class V>
  void visit(V& v) {
    v("source", source,
      "tokens (a `seqmix prepare` dataset) or a synthetic task generated in-process from "
      "run.seed: mqar, sqar, set_disjoint, passkey, parity, modadd, s5 (docs/evaluation.md).");
    v("path", path,
      "Dataset directory written by `seqmix prepare` (source: tokens); relative to the working "
      "directory.");
    v("batch_size", batch_size, "Sequences per optimizer step per process (before accumulation).");
    v("seq_len", seq_len, "Tokens per sequence T.");
    v("mqar", mqar, "MQAR generator settings (source: mqar).");
    v("sqar", sqar, "Single-query associative recall (source: sqar).");
    v("set_disjoint", set_disjoint, "Set disjointness (source: set_disjoint).");
    v("passkey", passkey, "Passkey retrieval (source: passkey).");
    v("parity", parity, "Running parity (source: parity).");
    v("modadd", modadd, "Running sum modulo m (source: modadd).");
    v("s5", s5, "S5 permutation composition (source: s5).");
  }
};

struct TrainSection {
  int64_t steps = 1000;
  int64_t eval_every = 0;
  int64_t eval_batches = 20;
  int64_t log_every = 10;
  int64_t checkpoint_every = 0;
  int64_t keep_last = 2;
  std::string device = "auto";     // auto | cpu | cuda
  std::string precision = "bf16";  // bf16 | fp32
  int64_t grad_accum = 1;
  double grad_clip = 1.0;
  std::string nan_policy = "skip";  // skip | stop
  double peak_tflops = 0;           // 0: from the device name (MFU)
  double bucket_mib = 25;           // data-parallel gradient bucket size
  double stop_at_accuracy = 0;      // >0: stop once an evaluation reaches it (MQAR sweeps)
  template <class V>
  void visit(V& v) {
    v("steps", steps, "Optimizer steps.");
    v("eval_every", eval_every, "Evaluate every N steps (0: only at the end).");
    v("eval_batches", eval_batches, "Batches per evaluation (0: the whole split / MQAR test set).");
    v("log_every", log_every, "Progress line and metrics.jsonl record every N steps.");
    v("checkpoint_every", checkpoint_every, "Checkpoint every N steps (0: only at the end).");
    v("keep_last", keep_last, "Checkpoints kept in the run directory (older ones are pruned).");
    v("device", device, "auto (CUDA when a GPU is present), cpu or cuda.");
    v("precision", precision,
      "bf16 (bf16 compute, fp32 master weights; on CPU compute stays fp32) or fp32.");
    v("grad_accum", grad_accum, "Micro-batches accumulated per optimizer step.");
    v("grad_clip", grad_clip, "Global gradient-norm clipping threshold (0: off).");
    v("nan_policy", nan_policy,
      "On a non-finite gradient: skip (the update is skipped on the device) or stop.");
    v("peak_tflops", peak_tflops, "Peak TFLOP/s for the MFU column; 0: known GPUs by name.");
    v("stop_at_accuracy", stop_at_accuracy,
      "Stop early once an evaluation's accuracy reaches this (tasks with accuracy, e.g. MQAR); "
      "0: off.");
    v("bucket_mib", bucket_mib,
      "Data-parallel runs: gradient bucket size in MiB (all-reduced as soon as it is ready).");
  }
};

struct OptimSection {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  std::string schedule = "cosine";  // cosine | linear | wsd | constant
  int64_t warmup_steps = 0;
  double min_lr = 0.0;
  double decay_fraction = 0.2;
  template <class V>
  void visit(V& v) {
    v("lr", lr, "Peak learning rate.");
    v("beta1", beta1, "AdamW beta1.");
    v("beta2", beta2, "AdamW beta2.");
    v("eps", eps, "AdamW epsilon.");
    v("weight_decay", weight_decay, "Decoupled weight decay (matrices only).");
    v("schedule", schedule, "cosine, linear, wsd (warmup-stable-decay) or constant.");
    v("warmup_steps", warmup_steps, "Linear warmup steps.");
    v("min_lr", min_lr, "Final learning rate of cosine / linear / wsd.");
    v("decay_fraction", decay_fraction, "wsd: fraction of steps in the final decay.");
  }
};

struct RunConfig {
  RunSection run;
  ModelSection model;
  DataSection data;
  TrainSection train;
  OptimSection optim;
  std::string source;  // the file it was read from ("" for built-in defaults)
  // "file:line" (or "--set") of every key that was given, by dotted path, for error messages.
  std::map<std::string, std::string> locations;
  // "path.to.key: message" located at the key: raises ErrorKind::Config.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;
  template <class V>
  void visit(V& v) {
    v("run", run, "Run identity and seed.");
    v("model", model, "Model architecture.");
    v("data", data, "Training and evaluation data.");
    v("train", train, "Training loop.");
    v("optim", optim, "Optimizer and learning-rate schedule.");
  }
};

// Reads `path`, applies `overrides` ("a.b.c=value"), validates. Raises ErrorKind::Config.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses YAML text (`source_name` is used in error messages).
RunConfig parse_config(const std::string& yaml_text, const std::string& source_name,
                       const std::vector<std::string>& overrides = {});
// The resolved config as YAML (every key, defaults filled in); parse_config(to_yaml(c)) == c.
std::string to_yaml(const RunConfig& c);
// Semantic checks beyond types (ranges, enums, pattern letters naming mixers).
void validate(const RunConfig& c);
// The expanded per-layer list of mixer names.
std::vector<std::string> layer_mixers(const RunConfig& c);
// Markdown reference of every key (type, default, meaning), for docs/config.md.
std::string reference_markdown();
// The nearest of `candidates` to `key` by edit distance, or "" when none is close.
std::string nearest(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace seqmix::config
