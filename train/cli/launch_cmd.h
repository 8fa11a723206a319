// `seqmix launch`: start one process per GPU on this machine (data-parallel training).
//
//   seqmix launch [--nproc N] [--master-addr A] [--master-port P] -- <subcommand> [args...]
//
// Re-executes this binary (/proc/self/exe) N times with RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT set (CUDA_VISIBLE_DEVICES untouched: rank r uses GPU
// LOCAL_RANK). Every output line of rank r is prefixed "[r] " (stdout to stdout, stderr to
// stderr). SIGINT / SIGTERM are forwarded to every rank. When a rank exits non-zero or by a
// signal, the others get SIGTERM, then SIGKILL after a grace period (10 s), and the launcher
// exits non-zero after printing "seqmix: launch: rank R failed (exit code C)" (or "(killed by
// signal S)"). Exit 0 when every rank succeeds; usage errors exit 2.
#pragma once
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace seqmix::cli {

struct LaunchOptions {
  int nproc = 1;  // 0: one per visible GPU (1 without CUDA)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string exe = "/proc/self/exe";  // the program each rank runs (tests use /bin/sh)
  std::vector<std::string> args;       // its arguments (argv[1..])
  double grace_s = 10.0;               // SIGTERM -> SIGKILL delay after a rank failed
  int out_fd = 1, err_fd = 2;          // where the prefixed lines go
};

// Runs the ranks and returns the launcher's exit code: 0 when all succeed; else the first failed
// rank's exit code (128 + S for a signal S), after writing the failure line to err_fd. Blocks
// SIGINT, SIGTERM and SIGCHLD on the calling thread while it runs (restored on return), so call it
// from the main thread of a process without other threads that expect those signals.
int run_launch(const LaunchOptions& opts);

// Adds the `launch` subcommand to `app`.
void add_launch_command(CLI::App& app);

}  // namespace seqmix::cli
