#include "core/trace_settings.h"

#include <algorithm>
#include <charconv>

namespace flowserve {
namespace {

bool ParseInt(const std::string& s, long long* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

Status IntegerSetting(const std::string& name, const std::string& v, long long min,
                      const char* what) {
  long long n = 0;
  if (!ParseInt(v, &n) || n < min) {
    return InvalidArgument("trace setting '" + name + "' must be " + what + ", got '" + v + "'");
  }
  return Status::Ok();
}

}  // namespace

const TraceSettingMap& DefaultTraceSettings() {
  static const TraceSettingMap kDefaults = {{"trace_file", {""}},     {"trace_level", {"OFF"}},
                                            {"trace_rate", {"1000"}}, {"trace_count", {"-1"}},
                                            {"log_frequency", {"0"}}, {"trace_mode", {"triton"}}};
  return kDefaults;
}

Status ValidateTraceSetting(const std::string& name, const std::vector<std::string>& values) {
  if (!DefaultTraceSettings().count(name)) {
    return InvalidArgument("unknown trace setting '" + name +
                           "': expected trace_file, trace_level, trace_rate, trace_count, "
                           "log_frequency or trace_mode");
  }
  if (values.empty()) return InvalidArgument("trace setting '" + name + "' has no value");
  if (name == "trace_level") {
    for (const auto& v : values) {
      if (v != "OFF" && v != "TIMESTAMPS" && v != "TENSORS") {
        return InvalidArgument("invalid trace_level '" + v +
                               "': expected OFF, TIMESTAMPS or TENSORS");
      }
      if (v == "OFF" && values.size() > 1) {
        return InvalidArgument("trace_level OFF cannot be combined with other levels");
      }
    }
    return Status::Ok();
  }
  if (values.size() != 1) {
    return InvalidArgument("trace setting '" + name + "' takes exactly one value, got " +
                           std::to_string(values.size()));
  }
  const std::string& v = values[0];
  if (name == "trace_rate") return IntegerSetting(name, v, 1, "an integer >= 1");
  if (name == "trace_count") return IntegerSetting(name, v, -1, "an integer >= -1 (-1: no limit)");
  if (name == "log_frequency") return IntegerSetting(name, v, 0, "an integer >= 0");
  if (name == "trace_mode" && v != "triton") {
    if (v == "opentelemetry") {
      return InvalidArgument(
          "trace mode 'opentelemetry' is not supported in this build (no OpenTelemetry "
          "library); use mode=triton");
    }
    return InvalidArgument("invalid trace_mode '" + v + "': expected triton");
  }
  return Status::Ok();
}

Status ValidateEffectiveTraceSettings(const TraceSettingMap& settings) {
  auto level = settings.find("trace_level");
  auto file = settings.find("trace_file");
  const bool on = level != settings.end() && !level->second.empty() && level->second[0] != "OFF";
  if (on && (file == settings.end() || file->second.empty() || file->second[0].empty())) {
    return InvalidArgument(
        "tracing is on (trace_level " + level->second[0] +
        ") but no trace_file is set: set trace_file (--trace-config triton,file=PATH)");
  }
  return Status::Ok();
}

Result<TraceSettingMap> ParseTraceFlags(const TraceFlags& flags) {
  TraceSettingMap out = DefaultTraceSettings();
  std::vector<std::string> levels;
  auto set = [&](const std::string& flag, const std::string& name,
                 const std::string& value) -> Status {
    if (name == "trace_level") {
      levels.push_back(value);
      return ValidateTraceSetting(name, {value}).WithContext(flag + ": ");
    }
    FS_RETURN_IF_ERROR(ValidateTraceSetting(name, {value}).WithContext(flag + ": "));
    out[name] = {value};
    return Status::Ok();
  };
  // The deprecated flags first: --trace-config given too wins, as in Triton.
  if (!flags.file.empty()) FS_RETURN_IF_ERROR(set("--trace-file", "trace_file", flags.file));
  for (const auto& l : flags.level) FS_RETURN_IF_ERROR(set("--trace-level", "trace_level", l));
  if (!flags.rate.empty()) FS_RETURN_IF_ERROR(set("--trace-rate", "trace_rate", flags.rate));
  if (!flags.count.empty()) FS_RETURN_IF_ERROR(set("--trace-count", "trace_count", flags.count));
  if (!flags.log_frequency.empty()) {
    FS_RETURN_IF_ERROR(set("--trace-log-frequency", "log_frequency", flags.log_frequency));
  }
  for (const auto& entry : flags.config) {
    const std::string flag = "--trace-config " + entry;
    std::string mode, rest = entry;
    const size_t comma = entry.find(',');
    const size_t eq = entry.find('=');
    if (comma != std::string::npos && (eq == std::string::npos || comma < eq)) {
      mode = entry.substr(0, comma);
      rest = entry.substr(comma + 1);
    }
    const size_t at = rest.find('=');
    if (at == std::string::npos || at == 0) {
      return InvalidArgument(flag + ": expected <setting>=<value> or <mode>,<setting>=<value>");
    }
    std::string key = rest.substr(0, at);
    const std::string value = rest.substr(at + 1);
    for (char& c : key)
      if (c == '_') c = '-';
    if (mode == "opentelemetry") {
      return InvalidArgument(flag +
                             ": OpenTelemetry tracing is not supported in this build (no "
                             "OpenTelemetry library); use the triton mode");
    }
    if (!mode.empty() && mode != "triton") {
      return InvalidArgument(flag + ": unknown trace mode '" + mode +
                             "': expected triton (or opentelemetry, not in this build)");
    }
    if (key == "level" && mode.empty()) {
      FS_RETURN_IF_ERROR(set(flag, "trace_level", value));
    } else if (key == "rate" && mode.empty()) {
      FS_RETURN_IF_ERROR(set(flag, "trace_rate", value));
    } else if (key == "count" && mode.empty()) {
      FS_RETURN_IF_ERROR(set(flag, "trace_count", value));
    } else if (key == "mode" && mode.empty()) {
      FS_RETURN_IF_ERROR(set(flag, "trace_mode", value));
    } else if (key == "file") {
      FS_RETURN_IF_ERROR(set(flag, "trace_file", value));
    } else if (key == "log-frequency") {
      FS_RETURN_IF_ERROR(set(flag, "log_frequency", value));
    } else {
      return InvalidArgument(flag + ": unknown trace setting '" + rest.substr(0, at) +
                             "': expected level, rate, count, mode, file or log-frequency");
    }
  }
  if (!levels.empty()) {
    // Repeated levels add up (TIMESTAMPS and TENSORS); OFF alone turns tracing off.
    std::vector<std::string> merged;
    for (const auto& l : levels) {
      if (l == "OFF") {
        merged.clear();
        continue;
      }
      if (std::find(merged.begin(), merged.end(), l) == merged.end()) merged.push_back(l);
    }
    out["trace_level"] = merged.empty() ? std::vector<std::string>{"OFF"} : merged;
  }
  FS_RETURN_IF_ERROR(ValidateEffectiveTraceSettings(out).WithContext("--trace-config: "));
  return out;
}

}  // namespace flowserve
