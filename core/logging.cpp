#include "core/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/check.h"

namespace seqmix::logs {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto lg = spdlog::stderr_color_mt("seqmix");
    lg->set_pattern("[%H:%M:%S] %^%l%$ %v");
    lg->set_level(spdlog::level::info);
    return lg;
  }();
  return *l;
}

void set_log_rank(int rank, bool all_ranks) {
  if (rank != 0 && !all_ranks) {
    logger().set_level(spdlog::level::off);
  } else if (rank != 0) {
    logger().set_pattern(fmt::format("[%H:%M:%S] [rank {}] %^%l%$ %v", rank));
  }
}

void set_level(const std::string& level) {
  const auto l = spdlog::level::from_str(level);
  SEQMIX_CHECK(l != spdlog::level::off || level == "off", "unknown log level '{}'", level);
  logger().set_level(l);
}

}  // namespace seqmix::logs
