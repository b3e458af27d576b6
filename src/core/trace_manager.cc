#include "core/trace_manager.h"

#include <algorithm>

#include "core/request_trace.h"
#include "core/trace_output.h"

namespace flowserve {
namespace {

const std::string& One(const TraceSettingMap& s, const char* name) { return s.at(name).front(); }

}  // namespace

Result<std::unique_ptr<TraceManager>> TraceManager::Create(const TraceSettingMap& startup) {
  std::unique_ptr<TraceManager> m(new TraceManager());
  m->startup_ = DefaultTraceSettings();
  for (const auto& [name, values] : startup) {
    FS_RETURN_IF_ERROR(ValidateTraceSetting(name, values));
    m->startup_[name] = values;
  }
  FS_RETURN_IF_ERROR(ValidateEffectiveTraceSettings(m->startup_));
  m->global_ = m->startup_;
  m->writer_ = std::make_shared<TraceWriter>();
  std::lock_guard<std::mutex> lock(m->mu_);
  m->global_session_ = m->MakeSessionLocked(m->global_);
  m->RefreshAnyOnLocked();
  return m;
}

TraceManager::~TraceManager() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    any_on_ = false;
    global_session_.reset();
    model_sessions_.clear();
  }
  // Sessions still held by a trace in flight flush when it finishes, inline once the
  // writer has stopped.
  writer_->Stop();
  writer_.reset();
}

std::shared_ptr<RequestTrace> TraceManager::Sample(const std::string& model_name, uint64_t ns_now) {
  if (!any_on_.load(std::memory_order_relaxed)) return nullptr;
  std::shared_ptr<TraceSession> session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = model_sessions_.find(model_name);
    TraceSession* s = it != model_sessions_.end() ? it->second.get() : global_session_.get();
    if (s == nullptr || !s->Sample()) return nullptr;
    session = it != model_sessions_.end() ? it->second : global_session_;
  }
  auto trace = std::make_shared<RequestTrace>();
  trace->id = NextTraceId();
  trace->model_name = model_name;
  trace->timestamps = session->timestamps();
  trace->tensors = session->tensors();
  trace->session = std::move(session);
  trace->Stamp(kTraceRequestStart, ns_now);
  return trace;
}

TraceSettingMap TraceManager::EffectiveLocked(const std::string& model) const {
  TraceSettingMap out = global_;
  auto it = overrides_.find(model);
  if (!model.empty() && it != overrides_.end()) {
    for (const auto& [name, values] : it->second) out[name] = values;
  }
  return out;
}

TraceSettingMap TraceManager::Get(const std::string& model) const {
  std::lock_guard<std::mutex> lock(mu_);
  TraceSettingMap out = EffectiveLocked(model);
  auto it = model.empty() ? model_sessions_.end() : model_sessions_.find(model);
  const TraceSession* s = it != model_sessions_.end() ? it->second.get() : global_session_.get();
  if (s != nullptr) out["trace_count"] = {std::to_string(s->remaining())};
  return out;
}

std::shared_ptr<TraceSession> TraceManager::MakeSessionLocked(const TraceSettingMap& effective) {
  const auto& levels = effective.at("trace_level");
  const bool timestamps = std::find(levels.begin(), levels.end(), "TIMESTAMPS") != levels.end();
  const bool tensors = std::find(levels.begin(), levels.end(), "TENSORS") != levels.end();
  std::shared_ptr<TraceFile> file;
  const std::string& path = One(effective, "trace_file");
  if (!path.empty()) {
    file = files_[path].lock();
    if (!file) {
      file = std::make_shared<TraceFile>(path);
      files_[path] = file;
    }
  }
  for (auto it = files_.begin(); it != files_.end();) {
    it = it->second.expired() ? files_.erase(it) : std::next(it);
  }
  return std::make_shared<TraceSession>(
      writer_, std::move(file), timestamps, tensors, std::stoll(One(effective, "trace_rate")),
      std::stoll(One(effective, "trace_count")), std::stoll(One(effective, "log_frequency")));
}

void TraceManager::RefreshAnyOnLocked() {
  bool on = global_session_ && global_session_->tracing();
  for (const auto& [_, s] : model_sessions_) on = on || s->tracing();
  any_on_.store(on, std::memory_order_relaxed);
}

Result<TraceSettingMap> TraceManager::Update(const std::string& model,
                                             const TraceSettingMap& update) {
  for (const auto& [name, values] : update) {
    if (!values.empty()) {
      FS_RETURN_IF_ERROR(ValidateTraceSetting(name, values));
    } else if (!DefaultTraceSettings().count(name)) {
      FS_RETURN_IF_ERROR(ValidateTraceSetting(name, {""}));  // names the unknown setting
    }
    if (name == "trace_mode" && !values.empty() && values[0] != One(startup_, "trace_mode")) {
      return InvalidArgument("trace_mode can only be chosen at startup (--trace-config mode=)");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  // A session that is replaced hands on the count it has left, unless the update sets one.
  const bool sets_count = update.count("trace_count") > 0;
  TraceSettingMap next_global = global_;
  std::map<std::string, TraceSettingMap> next_overrides = overrides_;
  if (model.empty()) {
    if (global_session_ && !sets_count) {
      next_global["trace_count"] = {std::to_string(global_session_->remaining())};
    }
    for (const auto& [name, values] : update) {
      next_global[name] = values.empty() ? startup_.at(name) : values;
    }
  } else {
    TraceSettingMap& o = next_overrides[model];
    auto session = model_sessions_.find(model);
    if (session != model_sessions_.end() && o.count("trace_count") && !sets_count) {
      o["trace_count"] = {std::to_string(session->second->remaining())};
    }
    for (const auto& [name, values] : update) {
      if (values.empty()) {
        o.erase(name);
      } else {
        o[name] = values;
      }
    }
    if (o.empty()) next_overrides.erase(model);
  }
  // Validate every effective set the change touches before replacing anything.
  auto effective = [&](const std::string& m) {
    TraceSettingMap out = next_global;
    auto it = next_overrides.find(m);
    if (!m.empty() && it != next_overrides.end()) {
      for (const auto& [name, values] : it->second) out[name] = values;
    }
    return out;
  };
  if (model.empty()) {
    FS_RETURN_IF_ERROR(ValidateEffectiveTraceSettings(next_global));
    for (const auto& [m, _] : next_overrides) {
      FS_RETURN_IF_ERROR(
          ValidateEffectiveTraceSettings(effective(m)).WithContext("model '" + m + "': "));
    }
  } else {
    FS_RETURN_IF_ERROR(ValidateEffectiveTraceSettings(effective(model)));
  }
  global_ = std::move(next_global);
  overrides_ = std::move(next_overrides);
  if (model.empty()) {
    global_session_ = MakeSessionLocked(global_);
    // Models with overrides inherit the rest: their sessions follow the new globals.
    std::map<std::string, std::shared_ptr<TraceSession>> sessions;
    for (const auto& [m, _] : overrides_) sessions[m] = MakeSessionLocked(EffectiveLocked(m));
    model_sessions_.swap(sessions);
  } else if (overrides_.count(model)) {
    model_sessions_[model] = MakeSessionLocked(EffectiveLocked(model));
  } else {
    model_sessions_.erase(model);
  }
  RefreshAnyOnLocked();
  TraceSettingMap out = EffectiveLocked(model);
  auto it = model.empty() ? model_sessions_.end() : model_sessions_.find(model);
  const TraceSession* s = it != model_sessions_.end() ? it->second.get() : global_session_.get();
  out["trace_count"] = {std::to_string(s->remaining())};
  return out;
}

}  // namespace flowserve
