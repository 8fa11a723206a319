// `seqmix train`, `seqmix eval`, `seqmix inspect`: command-line front ends of train/trainer.h.
#pragma once
#include <CLI/CLI.hpp>

namespace seqmix::cli {

// Thrown by a subcommand callback to end the process with a non-zero code after a clean stop
// (CLI11 callbacks cannot return one); main() catches it.
struct ExitCode {
  int code;
};

void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_inspect_command(CLI::App& app);

}  // namespace seqmix::cli
