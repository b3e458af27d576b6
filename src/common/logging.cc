#include "common/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <mutex>

namespace flowserve {
namespace {
std::mutex g_mu;
LogSettings g_settings;
std::atomic<int> g_verbose{0};
}  // namespace

Status ConfigureLogging(const LogSettings& s) {
  std::lock_guard<std::mutex> lock(g_mu);
  spdlog::drop("flowserve");
  spdlog::drop("flowserve-file");
  std::shared_ptr<spdlog::logger> logger;
  try {  // spdlog reports a file it cannot open by throwing; keep that inside this layer
    if (!s.file.empty()) {
      logger = spdlog::basic_logger_mt("flowserve-file", s.file);
    } else {
      logger = spdlog::stderr_logger_mt("flowserve");
    }
  } catch (const std::exception& e) {
    return InvalidArgument("cannot open log file '" + s.file + "': " + e.what());
  }
  g_settings = s;
  g_verbose = s.verbose;
  // %L is the level's first letter, as tritonserver prints it (I, W, E, D).
  if (s.format == "ISO8601") {
    logger->set_pattern("%Y-%m-%dT%H:%M:%SZ %L %t %s:%#] %v", spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%L%m%d %H:%M:%S.%f %t %s:%#] %v");
  }
  spdlog::level::level_enum level = spdlog::level::off;
  if (s.error) level = spdlog::level::err;
  if (s.warning) level = spdlog::level::warn;
  if (s.info) level = spdlog::level::info;
  if (s.verbose > 0) level = spdlog::level::debug;
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return Status::Ok();
}

LogSettings CurrentLogSettings() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_settings;
}

int LogVerboseLevel() { return g_verbose.load(std::memory_order_relaxed); }

}  // namespace flowserve
