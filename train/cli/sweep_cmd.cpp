// `seqmix sweep` (see sweep_cmd.h): the command-line front end of train/sweep/sweep_runner.h.
#include "train/cli/sweep_cmd.h"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "train/cli/run_cmds.h"
#include "train/sweep/sweep_runner.h"

namespace seqmix::cli {

void add_sweep_command(CLI::App& app) {
  auto opt = std::make_shared<sweep::SweepRunOptions>();
  auto path = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand(
      "sweep", "Run a grid of training runs (SWEEP.yaml) and write results.csv/.md/.svg");
  c->add_option("sweep", *path, "Sweep file (YAML); see train/sweep/README.md")->required();
  c->add_flag("--dry-run", opt->dry_run, "Print the cells and their commands; run nothing");
  c->add_option("--dir", opt->dir, "Sweep directory (default: sweeps/<name>)");
  c->add_option("--gpus", opt->gpus,
                "Cells run in parallel, each pinned to one GPU (default: the visible GPUs; 0: one "
                "at a time, no pinning)");
  c->add_option("--per-gpu", opt->per_gpu,
                "Cells sharing each GPU at a time (small models leave most of a GPU idle; with "
                "--gpus 0: cells run at once)")
      ->check(CLI::PositiveNumber);
  c->add_option("--filter", opt->filters,
                "Run only cells with KEY=VALUE (KEY a grid key or axis; repeatable: different "
                "keys must all match, one key's values are alternatives)")
      ->type_name("KEY=VALUE");
  c->callback([opt, path] {
    const int rc = sweep::run_sweep(*path, *opt);
    if (rc != 0) throw ExitCode{rc};
  });
}

}  // namespace seqmix::cli
