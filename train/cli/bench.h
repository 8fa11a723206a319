// `seqmix bench`: timings of ops (and, later, kernels and training steps).
#pragma once
#include <string>

namespace CLI {
class App;
}

namespace seqmix::cli {

// Adds the `bench` subcommand and its children to `app`.
void add_bench_command(CLI::App& app);

}  // namespace seqmix::cli
