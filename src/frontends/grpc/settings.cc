// The trace and log settings RPCs.
#include <exception>
#include <fstream>

#include "common/logging.h"
#include "core/server.h"
#include "core/trace_manager.h"
#include "frontends/grpc/service.h"

namespace flowserve::grpc_frontend {

using inference::LogSettingsRequest;
using inference::LogSettingsResponse;
using inference::TraceSettingRequest;
using inference::TraceSettingResponse;

namespace {

// LogSettingsResponse and LogSettingsRequest have distinct but identical SettingValue types.
template <typename Value>
Status ApplyLogSetting(const std::string& key, const Value& v, LogSettings& s) {
  auto want = [&](auto kcase, const char* type) -> Status {
    if (v.parameter_choice_case() != kcase) {
      return InvalidArgument("log setting '" + key + "' must be a " + type);
    }
    return Status::Ok();
  };
  if (key == "log_info" || key == "log_warning" || key == "log_error") {
    FS_RETURN_IF_ERROR(want(Value::kBoolParam, "bool"));
    (key == "log_info" ? s.info : key == "log_warning" ? s.warning : s.error) = v.bool_param();
  } else if (key == "log_verbose_level") {
    FS_RETURN_IF_ERROR(want(Value::kUint32Param, "uint32"));
    s.verbose = static_cast<int>(v.uint32_param());
  } else if (key == "log_format") {
    FS_RETURN_IF_ERROR(want(Value::kStringParam, "string"));
    if (v.string_param() != "default" && v.string_param() != "ISO8601") {
      return InvalidArgument("invalid log_format '" + v.string_param() +
                             "': expected default or ISO8601");
    }
    s.format = v.string_param();
  } else if (key == "log_file") {
    FS_RETURN_IF_ERROR(want(Value::kStringParam, "string"));
    s.file = v.string_param();
  } else {
    return InvalidArgument("unknown log setting '" + key + "'");
  }
  return Status::Ok();
}

}  // namespace

grpc::ServerUnaryReactor* Service::TraceSetting(Ctx* ctx, const TraceSettingRequest* req,
                                                TraceSettingResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kTrace);
  if (!req->model_name().empty()) {
    auto model = server_->GetModel(req->model_name(), -1);
    if (!model.ok()) return FinishNow(ctx, model.status());
  }
  // No settings: a read. A setting with no values clears it (back to the global value for
  // a model, to the startup value globally).
  TraceSettingMap update;
  for (const auto& [key, v] : req->settings()) {
    update[key].assign(v.value().begin(), v.value().end());
  }
  TraceManager& tracer = server_->tracer();
  auto effective = update.empty() ? Result<TraceSettingMap>(tracer.Get(req->model_name()))
                                  : tracer.Update(req->model_name(), update);
  if (!effective.ok()) return FinishNow(ctx, effective.status());
  for (const auto& [key, values] : *effective) {
    auto& out = (*resp->mutable_settings())[key];
    for (const auto& v : values) out.add_value(v);
  }
  return FinishNow(ctx, Status::Ok());
}

grpc::ServerUnaryReactor* Service::LogSettings(Ctx* ctx, const LogSettingsRequest* req,
                                               LogSettingsResponse* resp) {
  FS_AUTHORIZE(ctx, ApiGroup::kLogging);
  flowserve::LogSettings s = CurrentLogSettings();
  if (!req->settings().empty()) {
    for (const auto& [key, v] : req->settings()) {
      Status st = ApplyLogSetting(key, v, s);
      if (!st.ok()) return FinishNow(ctx, st);
    }
    if (!s.file.empty() && !std::ofstream(s.file, std::ios::app)) {
      return FinishNow(ctx, InvalidArgument("cannot open log_file '" + s.file + "'"));
    }
    if (Status st = ConfigureLogging(s); !st.ok()) return FinishNow(ctx, st);
  }
  auto& out = *resp->mutable_settings();
  out["log_file"].set_string_param(s.file);
  out["log_info"].set_bool_param(s.info);
  out["log_warning"].set_bool_param(s.warning);
  out["log_error"].set_bool_param(s.error);
  out["log_verbose_level"].set_uint32_param(static_cast<uint32_t>(s.verbose));
  out["log_format"].set_string_param(s.format);
  return FinishNow(ctx, Status::Ok());
}

}  // namespace flowserve::grpc_frontend
