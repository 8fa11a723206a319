// `seqmix sweep SWEEP.yaml`: a grid of training runs (train/sweep/), with results.csv, a
// Markdown table (results.md) and an SVG plot (results.svg) in the sweep directory.
#pragma once

namespace CLI {
class App;
}

namespace seqmix::cli {

// Adds the `sweep` subcommand to `app`:
//   seqmix sweep SWEEP.yaml [--dry-run] [--dir DIR] [--gpus N] [--filter KEY=VALUE]...
// Exit codes: 0 every selected cell finished, 1 a cell failed, 2 a bad sweep file or option,
// 128 + S interrupted by signal S.
void add_sweep_command(CLI::App& app);

}  // namespace seqmix::cli
