#include "frontends/http/trace_json.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "frontends/http/json_util.h"

namespace flowserve {

Result<TraceSettingMap> ParseTraceSettingRequest(const std::string& body) {
  if (http_detail::JsonNestedDeeperThan(body, 8)) {
    return InvalidArgument("the trace setting request JSON is nested too deeply");
  }
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) {
    return InvalidArgument(std::string("failed to parse the trace setting request JSON: ") +
                           rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
                           std::to_string(doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) {
    return InvalidArgument("the trace setting request JSON must be an object");
  }
  TraceSettingMap out;
  for (const auto& m : doc.GetObject()) {
    std::string key(m.name.GetString(), m.name.GetStringLength());
    auto& values = out[key];
    const auto& v = m.value;
    auto bad = [&] {
      return InvalidArgument("trace setting '" + key +
                             "' must be a string, an array of strings or null (values are "
                             "strings, e.g. \"1\")");
    };
    if (v.IsNull()) continue;
    if (v.IsString()) {
      values.emplace_back(v.GetString(), v.GetStringLength());
    } else if (v.IsArray()) {
      for (const auto& e : v.GetArray()) {
        if (!e.IsString()) return bad();
        values.emplace_back(e.GetString(), e.GetStringLength());
      }
      if (values.empty()) {
        return InvalidArgument("trace setting '" + key + "' has an empty list: use null to clear");
      }
    } else {
      return bad();
    }
  }
  return out;
}

std::string TraceSettingsJson(const TraceSettingMap& settings) {
  std::string out;
  http_detail::StringOut os{&out};
  http_detail::JsonWriter w(os);
  w.StartObject();
  for (const auto& [key, values] : settings) {
    http_detail::WriteKey(w, key);
    if (key == "trace_level") {
      w.StartArray();
      for (const auto& v : values) http_detail::WriteString(w, v);
      w.EndArray();
    } else {
      http_detail::WriteString(w, values.empty() ? std::string() : values[0]);
    }
  }
  w.EndObject();
  return out;
}

}  // namespace flowserve
