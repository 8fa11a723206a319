// The `seqmix` command: one executable with subcommands. Exit codes: 0 success, 2 usage or
// config error, 3 data or checkpoint error, 1 anything else. Errors print one line first
// ("seqmix: <kind>: <message>"), details after.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "train/cli/bench.h"
#include "train/cli/launch_cmd.h"
#include "train/cli/prepare_cmd.h"
#include "train/cli/run_cmds.h"
#include "train/cli/sweep_cmd.h"

namespace {

constexpr const char* kDescription =
    "seqmix: pretrain linear-RNN, state-space and hybrid language models (C++20/CUDA)";

std::string version_text() {
  std::string cuda = seqmix::cuda::built_with_cuda() ? "CUDA" : "CPU-only";
  return fmt::format("seqmix {} ({} build)", SEQMIX_VERSION, cuda);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "seqmix"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);
  app.fallthrough(false);

  // Subcommands of later issues are listed and say when they arrive.
  auto not_built = [&app](const char* name, const char* desc, const char* issue) {
    CLI::App* c = app.add_subcommand(name, std::string(desc) + " (not built yet)");
    c->allow_extras();
    c->callback([name = std::string(name), issue = std::string(issue)] {
      SEQMIX_THROW(Usage, "seqmix {}: not built yet (arrives with issue {})", name, issue);
    });
  };
  seqmix::cli::add_train_command(app);
  seqmix::cli::add_eval_command(app);
  seqmix::cli::add_prepare_command(app);
  not_built("generate", "Sample text from a checkpoint", "F2");
  seqmix::cli::add_bench_command(app);
  seqmix::cli::add_inspect_command(app);
  seqmix::cli::add_launch_command(app);
  seqmix::cli::add_sweep_command(app);

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      const int rc = app.exit(e);  // prints help / version / the parse error
      return rc == 0 ? 0 : 2;
    }
  } catch (const seqmix::cli::ExitCode& e) {
    return e.code;
  } catch (const seqmix::Error& e) {
    std::fprintf(stderr, "seqmix: %s: %s\n", seqmix::error_kind_name(e.kind()),
                 e.message().c_str());
    if (!e.where().empty()) std::fprintf(stderr, "  (raised at %s)\n", e.where().c_str());
    return seqmix::exit_code_for(e.kind());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seqmix: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
