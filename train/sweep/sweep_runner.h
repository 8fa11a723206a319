// The sweep runner: runs every cell of a sweep as `seqmix train BASE --set ... --run-dir
// SWEEP_DIR/cells/<id> --quiet`, a child process of this binary (its output goes to the cell's
// train.log), one after another or N at a time each pinned to one GPU with CUDA_VISIBLE_DEVICES
// (per_gpu cells per GPU: small models leave most of a GPU idle).
// A cell whose directory holds result.json is finished and skipped; a cell with checkpoints but
// no result.json is continued with --resume; a failed cell is recorded with its exit code and the
// sweep goes on. At the end (also after Ctrl-C) results.csv, results.md and results.svg are
// written to SWEEP_DIR.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

namespace seqmix::sweep {

struct SweepRunOptions {
  std::string dir;                     // "" -> sweeps/<name> (relative to the working directory)
  int gpus = -1;                       // parallel cells, each pinned to one GPU; -1: visible GPUs;
                                       // 0: one at a time without pinning
  int per_gpu = 1;                     // cells sharing each GPU (or, with gpus = 0, run at once)
  std::vector<std::string> filters;    // --filter KEY=VALUE
  bool dry_run = false;                // print the cells and commands, run nothing
  std::string exe = "/proc/self/exe";  // the seqmix binary the cells run
};

// Runs the sweep; returns the exit code: 0 when every selected cell succeeded (or was already
// finished), 1 when a cell failed, 128 + S when interrupted by signal S. Progress goes to `out`.
// Raises ErrorKind::Config for a bad sweep file, Usage for a bad filter.
int run_sweep(const std::string& sweep_path, const SweepRunOptions& opt, std::FILE* out = stdout);

}  // namespace seqmix::sweep
