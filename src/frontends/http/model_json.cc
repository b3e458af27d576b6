#include "frontends/http/model_json.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "core/request_limits.h"
#include "core/statistics.h"
#include "frontends/http/json_util.h"
#include "model_config.pb.h"

namespace flowserve {

using http_detail::JsonWriter;
using http_detail::StringOut;
using http_detail::WriteKey;
using http_detail::WriteString;

namespace {

void WriteTensors(JsonWriter& w, const char* key, const inference::ModelConfig& config,
                  bool inputs) {
  WriteKey(w, key);
  w.StartArray();
  auto write = [&](const std::string& name, int dtype, const auto& dims) {
    w.StartObject();
    WriteKey(w, "name");
    WriteString(w, name);
    WriteKey(w, "datatype");
    WriteString(w, DataTypeName(static_cast<DataType>(dtype)));
    WriteKey(w, "shape");
    w.StartArray();
    // A batching model takes a leading batch dimension of any size.
    if (config.max_batch_size() > 0) w.Int64(-1);
    for (int64_t d : dims) w.Int64(d);
    w.EndArray();
    w.EndObject();
  };
  if (inputs) {
    for (const auto& t : config.input()) write(t.name(), t.data_type(), t.dims());
  } else {
    for (const auto& t : config.output()) write(t.name(), t.data_type(), t.dims());
  }
  w.EndArray();
}

void WriteDuration(JsonWriter& w, const char* key, uint64_t count, uint64_t ns) {
  WriteKey(w, key);
  w.StartObject();
  WriteKey(w, "count");
  w.Uint64(count);
  WriteKey(w, "ns");
  w.Uint64(ns);
  w.EndObject();
}

void WriteDuration(JsonWriter& w, const char* key, const DurationStat& d) {
  WriteDuration(w, key, d.count.load(std::memory_order_relaxed),
                d.ns.load(std::memory_order_relaxed));
}

using Document = rapidjson::Document;

Result<Document> ParseObject(const std::string& body, const char* what) {
  if (http_detail::JsonNestedDeeperThan(body, kMaxJsonDepth)) {
    return InvalidArgument(std::string("the ") + what + " request JSON is nested more than " +
                           std::to_string(kMaxJsonDepth) + " levels deep");
  }
  Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
  if (doc.HasParseError()) {
    return InvalidArgument(std::string("failed to parse the ") + what +
                           " request JSON: " + rapidjson::GetParseError_En(doc.GetParseError()) +
                           " at offset " + std::to_string(doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) {
    return InvalidArgument(std::string("the ") + what + " request JSON must be an object");
  }
  return doc;
}

bool IsBlank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

std::string ServerMetadataJson(const std::string& name) {
  std::string s;
  StringOut out{&s};
  JsonWriter w(out);
  w.StartObject();
  WriteKey(w, "name");
  WriteString(w, name);
  WriteKey(w, "version");
  WriteString(w, kServerVersion);
  WriteKey(w, "extensions");
  w.StartArray();
  for (const auto& e : ServerExtensions()) WriteString(w, e);
  w.EndArray();
  w.EndObject();
  return s;
}

std::string ModelMetadataJson(const ModelVersion& model, const std::vector<int64_t>& versions) {
  const auto& config = model.config();
  std::string s;
  StringOut out{&s};
  JsonWriter w(out);
  w.StartObject();
  WriteKey(w, "name");
  WriteString(w, model.name());
  WriteKey(w, "versions");
  w.StartArray();
  for (int64_t v : versions) WriteString(w, std::to_string(v));
  w.EndArray();
  WriteKey(w, "platform");
  WriteString(w, config.platform().empty() ? config.backend() : config.platform());
  WriteTensors(w, "inputs", config, true);
  WriteTensors(w, "outputs", config, false);
  w.EndObject();
  return s;
}

// Not in Triton's statistics: the latency histograms the metrics endpoint exports, so
// that a client of this port alone (the web console) can tell percentiles. Cumulative
// counts per upper bound in ms, the last for +Inf; a histogram turned off is left out.
static void WriteLatencyHistograms(JsonWriter& w, const ModelStatistics& st) {
  WriteKey(w, "latency_histograms");
  w.StartObject();
  const std::pair<const char*, LatencyKind> kinds[] = {{"request", LatencyKind::kRequest},
                                                       {"queue", LatencyKind::kQueue},
                                                       {"compute_infer", LatencyKind::kCompute}};
  const LatencyHistogram* hists[] = {&st.request_histogram, &st.queue_histogram,
                                     &st.compute_histogram};
  for (size_t k = 0; k < 3; ++k) {
    const HistogramBuckets* buckets = LatencyHistogramBuckets(kinds[k].second);
    if (!buckets) continue;
    LatencyHistogram::Snapshot snap = hists[k]->Read(*buckets);
    WriteKey(w, kinds[k].first);
    w.StartObject();
    WriteKey(w, "bounds_ms");
    w.StartArray();
    for (double b : buckets->bounds_ms) w.Double(b);
    w.EndArray();
    WriteKey(w, "cumulative");
    w.StartArray();
    for (uint64_t c : snap.cumulative) w.Uint64(c);
    w.EndArray();
    w.EndObject();
  }
  w.EndObject();
}

std::string ModelStatsJson(const std::vector<std::shared_ptr<ModelVersion>>& models) {
  std::string s;
  StringOut out{&s};
  JsonWriter w(out);
  w.StartObject();
  WriteKey(w, "model_stats");
  w.StartArray();
  for (const auto& m : models) {
    const ModelStatistics& st = m->stats();
    w.StartObject();
    WriteKey(w, "name");
    WriteString(w, m->name());
    WriteKey(w, "version");
    WriteString(w, std::to_string(m->version()));
    WriteKey(w, "last_inference");
    w.Uint64(st.last_inference_ms.load(std::memory_order_relaxed));
    WriteKey(w, "inference_count");
    w.Uint64(st.inference_count.load(std::memory_order_relaxed));
    WriteKey(w, "execution_count");
    w.Uint64(st.execution_count.load(std::memory_order_relaxed));
    WriteKey(w, "inference_stats");
    w.StartObject();
    WriteDuration(w, "success", st.success);
    WriteDuration(w, "fail", st.fail);
    WriteDuration(w, "queue", st.queue);
    WriteDuration(w, "compute_input", st.compute_input);
    WriteDuration(w, "compute_infer", st.compute_infer);
    WriteDuration(w, "compute_output", st.compute_output);
    WriteDuration(w, "cache_hit", st.cache_hit);
    WriteDuration(w, "cache_miss", st.cache_miss);
    w.EndObject();
    WriteLatencyHistograms(w, st);
    WriteKey(w, "response_stats");
    w.StartObject();
    w.EndObject();
    WriteKey(w, "batch_stats");
    w.StartArray();
    for (const auto& b : st.BatchStats()) {
      w.StartObject();
      WriteKey(w, "batch_size");
      w.Uint64(b.batch_size);
      WriteDuration(w, "compute_input", b.count, b.compute_input_ns);
      WriteDuration(w, "compute_infer", b.count, b.compute_infer_ns);
      WriteDuration(w, "compute_output", b.count, b.compute_output_ns);
      w.EndObject();
    }
    w.EndArray();
    WriteKey(w, "memory_usage");
    w.StartArray();
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return s;
}

std::string RepositoryIndexJson(const std::vector<ModelIndexEntry>& index) {
  std::string s;
  StringOut out{&s};
  JsonWriter w(out);
  w.StartArray();
  for (const auto& e : index) {
    w.StartObject();
    WriteKey(w, "name");
    WriteString(w, e.name);
    if (!e.version.empty()) {
      WriteKey(w, "version");
      WriteString(w, e.version);
    }
    if (!e.state.empty()) {  // a model never loaded is listed by name only, as Triton does
      WriteKey(w, "state");
      WriteString(w, e.state);
    }
    if (!e.reason.empty()) {
      WriteKey(w, "reason");
      WriteString(w, e.reason);
    }
    w.EndObject();
  }
  w.EndArray();
  return s;
}

std::string LogSettingsJson(const LogSettings& settings) {
  std::string s;
  StringOut out{&s};
  JsonWriter w(out);
  w.StartObject();
  WriteKey(w, "log_file");
  WriteString(w, settings.file);
  WriteKey(w, "log_info");
  w.Bool(settings.info);
  WriteKey(w, "log_warning");
  w.Bool(settings.warning);
  WriteKey(w, "log_error");
  w.Bool(settings.error);
  WriteKey(w, "log_verbose_level");
  w.Int(settings.verbose);
  WriteKey(w, "log_format");
  WriteString(w, settings.format);
  w.EndObject();
  return s;
}

Status UpdateLogSettings(const std::string& body, LogSettings* settings) {
  auto doc = ParseObject(body, "logging");
  if (!doc.ok()) return doc.status();
  LogSettings next = *settings;
  for (const auto& m : doc->GetObject()) {
    std::string key(m.name.GetString(), m.name.GetStringLength());
    const auto& v = m.value;
    auto need_bool = [&](bool* out) {
      if (!v.IsBool()) return InvalidArgument("logging setting '" + key + "' must be a bool");
      *out = v.GetBool();
      return Status::Ok();
    };
    if (key == "log_info") {
      FS_RETURN_IF_ERROR(need_bool(&next.info));
    } else if (key == "log_warning") {
      FS_RETURN_IF_ERROR(need_bool(&next.warning));
    } else if (key == "log_error") {
      FS_RETURN_IF_ERROR(need_bool(&next.error));
    } else if (key == "log_verbose_level") {
      if (!v.IsInt() || v.GetInt() < 0) {
        return InvalidArgument(
            "logging setting 'log_verbose_level' must be a non-negative integer");
      }
      next.verbose = v.GetInt();
    } else if (key == "log_format") {
      std::string f = v.IsString() ? v.GetString() : "";
      if (f != "default" && f != "ISO8601") {
        return InvalidArgument("logging setting 'log_format' must be \"default\" or \"ISO8601\"");
      }
      next.format = f;
    } else if (key == "log_file") {
      if (!v.IsString()) return InvalidArgument("logging setting 'log_file' must be a string");
      next.file = v.GetString();
    } else {
      return InvalidArgument("unknown logging setting '" + key + "'");
    }
  }
  *settings = next;
  return Status::Ok();
}

Result<LoadRequest> ParseLoadRequest(const std::string& body) {
  LoadRequest req;
  if (IsBlank(body)) return req;
  auto doc = ParseObject(body, "load");
  if (!doc.ok()) return doc.status();
  auto p = doc->FindMember("parameters");
  if (p == doc->MemberEnd()) return req;
  if (!p->value.IsObject()) return InvalidArgument("load 'parameters' must be an object");
  for (const auto& m : p->value.GetObject()) {
    std::string key(m.name.GetString(), m.name.GetStringLength());
    if (key == "config") {
      if (!m.value.IsString()) {
        return InvalidArgument("load parameter 'config' must be a string holding the JSON config");
      }
      req.config_json.assign(m.value.GetString(), m.value.GetStringLength());
    } else if (key.rfind("file:", 0) == 0) {
      return Unimplemented("load parameter '" + key +
                           "': overriding model files through load is not supported");
    }
  }
  return req;
}

Result<bool> ParseUnloadDependents(const std::string& body) {
  if (IsBlank(body)) return false;
  auto doc = ParseObject(body, "unload");
  if (!doc.ok()) return doc.status();
  auto p = doc->FindMember("parameters");
  if (p == doc->MemberEnd()) return false;
  if (!p->value.IsObject()) return InvalidArgument("unload 'parameters' must be an object");
  auto u = p->value.FindMember("unload_dependents");
  if (u == p->value.MemberEnd()) return false;
  if (!u->value.IsBool()) {
    return InvalidArgument("unload parameter 'unload_dependents' must be a bool");
  }
  return u->value.GetBool();
}

Result<bool> ParseIndexReadyOnly(const std::string& body) {
  if (IsBlank(body)) return false;
  auto doc = ParseObject(body, "repository index");
  if (!doc.ok()) return doc.status();
  auto r = doc->FindMember("ready");
  if (r == doc->MemberEnd()) return false;
  if (!r->value.IsBool()) return InvalidArgument("repository index 'ready' must be a bool");
  return r->value.GetBool();
}

}  // namespace flowserve
