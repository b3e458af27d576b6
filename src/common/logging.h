#pragma once
// Leveled logging over spdlog. Format follows tritonserver's default
// ("I1123 13:24:47.123456 4242 file.cc:12] message") or ISO8601 with --log-format.
#include <spdlog/spdlog.h>

#include <string>

#include "common/status.h"

namespace flowserve {

struct LogSettings {
  bool info = true;
  bool warning = true;
  bool error = true;
  int verbose = 0;
  std::string format = "default";  // "default" | "ISO8601"
  std::string file;                // empty: stderr
};

// Fails (keeping the previous settings) when the log file cannot be opened.
Status ConfigureLogging(const LogSettings& settings);
LogSettings CurrentLogSettings();
int LogVerboseLevel();

}  // namespace flowserve

#define FS_LOG_INFO(...) SPDLOG_INFO(__VA_ARGS__)
#define FS_LOG_WARNING(...) SPDLOG_WARN(__VA_ARGS__)
#define FS_LOG_ERROR(...) SPDLOG_ERROR(__VA_ARGS__)
#define FS_LOG_VERBOSE(level, ...)                                            \
  do {                                                                        \
    if (::flowserve::LogVerboseLevel() >= (level)) SPDLOG_DEBUG(__VA_ARGS__); \
  } while (0)
