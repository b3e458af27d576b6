#pragma once
// The trace extension's JSON: {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", ...}.
#include <string>

#include "common/status.h"
#include "core/trace_settings.h"

namespace flowserve {

// A POST body: each value a string or an array of strings; null clears the setting
// (an empty list).
Result<TraceSettingMap> ParseTraceSettingRequest(const std::string& body);
std::string TraceSettingsJson(const TraceSettingMap& settings);

}  // namespace flowserve
