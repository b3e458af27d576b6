#pragma once
// Triton's trace settings as the trace extension carries them: name -> list of strings
// ("trace_level" may hold several levels; the others hold one value). Shared by the
// HTTP and gRPC frontends and the --trace-config flags.
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve {

using TraceSettingMap = std::map<std::string, std::vector<std::string>>;

// trace_file "", trace_level OFF, trace_rate 1000, trace_count -1, log_frequency 0,
// trace_mode triton: Triton's defaults.
const TraceSettingMap& DefaultTraceSettings();

// Checks one setting's values (non-empty); names the setting and the bad value.
Status ValidateTraceSetting(const std::string& name, const std::vector<std::string>& values);

// Checks a complete set: tracing on needs a file to write to.
Status ValidateEffectiveTraceSettings(const TraceSettingMap& settings);

// The startup flags, Triton's syntax: each --trace-config entry is `<setting>=<value>` or
// `<mode>,<setting>=<value>` (mode triton; level/rate/count/mode global, file and
// log-frequency triton's), and the older --trace-file/--trace-level/--trace-rate/
// --trace-count/--trace-log-frequency. Returns the startup settings, or the flag that is
// wrong and why. mode=opentelemetry is refused: this build has no OpenTelemetry exporter.
struct TraceFlags {
  std::vector<std::string> config;  // --trace-config, in order
  std::string file;
  std::vector<std::string> level;
  std::string rate, count, log_frequency;
};
Result<TraceSettingMap> ParseTraceFlags(const TraceFlags& flags);

}  // namespace flowserve
