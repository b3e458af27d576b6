#pragma once
// Triton's trace extension in the core: global trace settings and per-model overrides
// (a model without its own value for a setting follows the global one), and the
// sampling decision made for each request. Both frontends' trace setting calls and the
// --trace-config flags end here.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"
#include "core/trace_settings.h"

namespace flowserve {

struct RequestTrace;
class TraceFile;
class TraceSession;
class TraceWriter;

class TraceManager {
 public:
  // `startup`: complete settings, as ParseTraceFlags returns them.
  static Result<std::unique_ptr<TraceManager>> Create(const TraceSettingMap& startup);
  ~TraceManager();  // writes every collected trace

  // Null unless this request is to be traced. One relaxed load when nothing is traced.
  std::shared_ptr<RequestTrace> Sample(const std::string& model_name, uint64_t ns_now);

  // The effective settings for `model` ("" = global); trace_count is what is left.
  TraceSettingMap Get(const std::string& model) const;
  // Applies `update` and returns the new effective settings. An empty value list clears:
  // a model's setting then follows the global one again, a global one returns to its
  // startup value. Nothing changes when any value is invalid.
  Result<TraceSettingMap> Update(const std::string& model, const TraceSettingMap& update);

 private:
  TraceManager() = default;
  TraceSettingMap EffectiveLocked(const std::string& model) const;
  std::shared_ptr<TraceSession> MakeSessionLocked(const TraceSettingMap& effective);
  void RefreshAnyOnLocked();

  std::atomic<bool> any_on_{false};
  mutable std::mutex mu_;
  TraceSettingMap startup_, global_;
  std::map<std::string, TraceSettingMap> overrides_;  // only the settings a model sets
  std::shared_ptr<TraceSession> global_session_;
  std::map<std::string, std::shared_ptr<TraceSession>> model_sessions_;
  std::map<std::string, std::weak_ptr<TraceFile>> files_;  // by path
  std::shared_ptr<TraceWriter> writer_;
};

}  // namespace flowserve
