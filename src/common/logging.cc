#include "common/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <mutex>

namespace flowserve {
namespace {
std::mutex g_mu;
LogSettings g_settings;
std::atomic<int> g_verbose{0};
// FS_LOG_* reach the default logger through spdlog's raw pointer, on any thread, so the
// logger is created once and never replaced: a reconfiguration swaps the sink behind
// this one, under the sink's own mutex, which every message takes.
std::shared_ptr<spdlog::sinks::dist_sink_mt> g_sink;  // guarded by g_mu (the pointer)
}  // namespace

Status ConfigureLogging(const LogSettings& s) {
  std::lock_guard<std::mutex> lock(g_mu);
  std::shared_ptr<spdlog::sinks::sink> sink;
  try {  // spdlog reports a file it cannot open by throwing; keep that inside this layer
    if (!s.file.empty()) {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(s.file);
    } else {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    }
  } catch (const std::exception& e) {
    return InvalidArgument("cannot open log file '" + s.file + "': " + e.what());
  }
  // %L is the level's first letter, as tritonserver prints it (I, W, E, D).
  if (s.format == "ISO8601") {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        "%Y-%m-%dT%H:%M:%SZ %L %t %s:%#] %v", spdlog::pattern_time_type::utc));
  } else {
    sink->set_formatter(
        std::make_unique<spdlog::pattern_formatter>("%L%m%d %H:%M:%S.%f %t %s:%#] %v"));
  }
  spdlog::level::level_enum level = spdlog::level::off;
  if (s.error) level = spdlog::level::err;
  if (s.warning) level = spdlog::level::warn;
  if (s.info) level = spdlog::level::info;
  if (s.verbose > 0) level = spdlog::level::debug;

  if (!g_sink) {
    // The first call comes from main before any other thread exists.
    g_sink = std::make_shared<spdlog::sinks::dist_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("flowserve", g_sink);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
  }
  g_sink->set_sinks({std::move(sink)});
  spdlog::default_logger_raw()->set_level(level);  // an atomic store inside the logger
  g_settings = s;
  g_verbose = s.verbose;
  return Status::Ok();
}

LogSettings CurrentLogSettings() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_settings;
}

int LogVerboseLevel() { return g_verbose.load(std::memory_order_relaxed); }

}  // namespace flowserve
