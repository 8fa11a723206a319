// `seqmix train CONFIG [--set k=v]... [--run-dir DIR] [--resume]`, `seqmix eval`, `seqmix inspect`.
// Errors propagate as seqmix::Error to main(), which prints one line and maps the kind to the exit
// code (2 usage/config, 3 data/checkpoint, 1 otherwise).
#include "train/cli/run_cmds.h"

#include <fmt/format.h>

#include <memory>

#include "configs/config.h"
#include "train/trainer.h"

namespace seqmix::cli {

void add_train_command(CLI::App& app) {
  auto opt = std::make_shared<train::TrainOptions>();
  auto reference = std::make_shared<bool>(false);
  CLI::App* c = app.add_subcommand("train", "Train a model from a YAML config");
  c->add_option("config", opt->config_path, "Run config (YAML); see docs/config.md");
  c->add_option("--set", opt->overrides,
                "Override a config key: --set optim.lr=3e-4 (repeatable; checked like file keys)")
      ->type_name("KEY=VALUE");
  c->add_option("--run-dir", opt->run_dir,
                "Run directory (default: run.dir, else runs/<run.name>)");
  c->add_flag("--resume", opt->resume,
              "Continue from the run directory's latest checkpoint (bit-exact)");
  c->add_option("--stop-at-step", opt->stop_at_step,
                "Stop after this step (no extra checkpoint, no final eval; exit 0); for "
                "time-boxed jobs and resume tests");
  c->add_flag("--quiet", opt->quiet,
              "No progress lines (metrics.jsonl and the final result are still written)");
  c->add_flag("--config-reference", *reference,
              "Print the Markdown reference of every config key and exit");
  c->callback([opt, reference] {
    if (*reference) {
      fmt::print("{}", config::reference_markdown());
      return;
    }
    if (opt->config_path.empty())
      throw CLI::RequiredError("config (a YAML file, e.g. configs/quickstart.yaml)");
    const int rc = train::run_train(*opt);
    if (rc != 0) throw ExitCode{rc};
  });
}

void add_eval_command(CLI::App& app) {
  auto opt = std::make_shared<train::EvalOptions>();
  CLI::App* c = app.add_subcommand(
      "eval",
      "Evaluate a run or checkpoint: perplexity on token data, accuracy on synthetic tasks");
  c->add_option("target", opt->target, "Run directory (its latest checkpoint) or checkpoint file")
      ->required();
  c->add_option("--data", opt->data, "Dataset directory (default: the run's data.path)");
  c->add_option("--split", opt->split, "val, test or train (ppl)")->capture_default_str();
  c->add_option(
      "--task", opt->task,
      "ppl (token data) or the run's synthetic task (default: from the run's data.source)");
  c->add_option("--device", opt->device, "auto, cpu or cuda")->capture_default_str();
  c->add_option("--batches", opt->batches, "Batches to evaluate (0: all)")->capture_default_str();
  c->add_option(
       "--mqar-slices", opt->mqar_slices,
       "MQAR slices SEQ_LEN:NUM_KV_PAIRS to evaluate, e.g. 64:4 128:8 (default: the run's)")
      ->type_name("T:KV");
  c->add_option("--seq-len", opt->seq_len,
                "Evaluate at this sequence length (default: the run's; longer tests length "
                "generalisation)");
  c->add_flag("--per-position", opt->per_position,
              "Token data: also write loss vs position (<output>_positions.csv and .svg)");
  c->add_option("--output", opt->output,
                "Result JSON (default: <run dir>/eval_<task>_<split>.json)");
  c->callback([opt] {
    const int rc = train::run_eval(*opt);
    if (rc != 0) throw ExitCode{rc};
  });
}

void add_inspect_command(CLI::App& app) {
  auto target = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand(
      "inspect", "Show a checkpoint's step, config and parameters (names, shapes, norms)");
  c->add_option("checkpoint", *target, "Checkpoint file or run directory")->required();
  c->callback([target] {
    const int rc = train::run_inspect(*target);
    if (rc != 0) throw ExitCode{rc};
  });
}

}  // namespace seqmix::cli
