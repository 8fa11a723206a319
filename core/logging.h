// Logging through spdlog. In a multi-process run only rank 0 prints unless all ranks are asked
// for (set_log_rank). Host code only.
#pragma once
#include <spdlog/spdlog.h>

namespace seqmix::logs {

// The process-wide logger ("seqmix"), created on first use, writing to stderr.
spdlog::logger& logger();
// Sets this process's rank; ranks other than 0 are silenced unless `all_ranks`.
void set_log_rank(int rank, bool all_ranks = false);
// "trace", "debug", "info", "warn", "error", "off".
void set_level(const std::string& level);

template <typename... Args>
void info(spdlog::format_string_t<Args...> f, Args&&... args) {
  logger().info(f, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(spdlog::format_string_t<Args...> f, Args&&... args) {
  logger().warn(f, std::forward<Args>(args)...);
}
template <typename... Args>
void error(spdlog::format_string_t<Args...> f, Args&&... args) {
  logger().error(f, std::forward<Args>(args)...);
}
template <typename... Args>
void debug(spdlog::format_string_t<Args...> f, Args&&... args) {
  logger().debug(f, std::forward<Args>(args)...);
}

}  // namespace seqmix::logs
