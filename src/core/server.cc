#include "core/server.h"

#include <thread>

#include "common/logging.h"
#include "core/model_manager.h"
#include "core/repository_poller.h"
#include "core/request_trace.h"
#include "core/response_cache.h"
#include "core/scheduler.h"
#include "core/shared_memory_registry.h"
#include "core/trace_manager.h"

namespace flowserve {

const std::vector<std::string>& ServerExtensions() {
  // Only what answers over both HTTP and gRPC.
  static const std::vector<std::string> kExtensions = {
      "classification",  "model_repository",    "model_repository(unload_dependents)",
      "schedule_policy", "model_configuration", "binary_tensor_data",
      "parameters",      "statistics",          "trace",
      "logging",         "system_shared_memory"};
  return kExtensions;
}

InferenceServer::InferenceServer(const ServerOptions& options)
    : options_(options),
      manager_(std::make_unique<ModelManager>(options)),
      shared_memory_(std::make_unique<SharedMemoryRegistry>()) {}

InferenceServer::~InferenceServer() {
  stopped_ = true;
  poller_.reset();  // no rescan may start while the models go
  manager_.reset();
}

Result<std::unique_ptr<InferenceServer>> InferenceServer::Create(const ServerOptions& options) {
  if (options.model_repositories.empty()) {
    return InvalidArgument("no model repository given: pass --model-repository=PATH");
  }
  const auto& mode = options.model_control_mode;
  if (mode != "none" && mode != "poll" && mode != "explicit") {
    return InvalidArgument("--model-control-mode must be none, poll or explicit, not '" + mode +
                           "'");
  }
  auto cache = CreateResponseCache(options.cache_config);
  if (!cache.ok()) return cache.status();
  std::unique_ptr<InferenceServer> server(new InferenceServer(options));
  server->manager_->SetResponseCache(std::move(cache).value());
  auto tracer = TraceManager::Create(options.trace_settings);
  if (!tracer.ok()) return tracer.status();
  server->tracer_ = std::move(tracer).value();
  FS_RETURN_IF_ERROR(server->manager_->LoadStartupModels());
  if (mode == "poll") {
    if (options.repository_poll_secs > 0) {
      ModelManager* manager = server->manager_.get();
      server->poller_ = std::make_unique<RepositoryPoller>(options.repository_poll_secs,
                                                           [manager] { manager->Poll(); });
    } else {
      FS_LOG_WARNING("--repository-poll-secs=0: the repository is not polled");
    }
  }
  return server;
}

bool InferenceServer::IsReady() const {
  if (shutting_down_.load() || stopped_.load()) return false;
  return !options_.strict_readiness || manager_->AllReady();
}

const ResponseCache* InferenceServer::response_cache() const {
  return manager_->response_cache().get();
}

bool InferenceServer::AnyModelFailed() const { return manager_->AnyFailed(); }

Result<std::shared_ptr<ModelVersion>> InferenceServer::GetModel(const std::string& name,
                                                                int64_t version) const {
  return manager_->Get(name, version);
}

std::vector<std::shared_ptr<ModelVersion>> InferenceServer::LoadedModels() const {
  return manager_->Loaded();
}

std::vector<ModelIndexEntry> InferenceServer::RepositoryIndex(bool ready_only) const {
  return manager_->Index(ready_only);
}

Status InferenceServer::LoadModel(const std::string& name, const std::string& config_json) {
  if (options_.model_control_mode != "explicit") {
    return Unavailable(
        "explicit model load / unload is not allowed if polling is enabled or "
        "model control mode is none (start with --model-control-mode=explicit)");
  }
  return manager_->Load(name, config_json);
}

Status InferenceServer::UnloadModel(const std::string& name, bool unload_dependents) {
  if (options_.model_control_mode != "explicit") {
    return Unavailable(
        "explicit model load / unload is not allowed if polling is enabled or "
        "model control mode is none (start with --model-control-mode=explicit)");
  }
  return manager_->Unload(name, unload_dependents);
}

void InferenceServer::Infer(std::unique_ptr<InferenceRequest> request) {
  request->arrival_ns = NowNs();
  if (shutting_down_.load(std::memory_order_relaxed)) {
    auto resp = std::make_unique<InferenceResponse>();
    resp->model_name = request->model_name;
    resp->model_version = request->model_version;
    resp->id = request->id;
    resp->status = Unavailable("Server is shutting down: no new inference requests are accepted");
    auto cb = std::move(request->on_complete);
    request.reset();
    cb(std::move(resp));
    return;
  }
  // Count the request in flight until its callback ran; the wrapper is what lets a
  // graceful shutdown wait for every accepted request.
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  request->trace = tracer_->Sample(request->model_name, request->arrival_ns);
  // One wrapper for both (not TraceUntilComplete's as well): a traced request pays no
  // second allocation and call.
  request->on_complete = [this, trace = request->trace, cb = std::move(request->on_complete)](
                             std::unique_ptr<InferenceResponse> resp) mutable {
    const bool final = resp->final;  // a decoupled model's request ends with its last
    cb(std::move(resp));
    if (!final) return;
    if (trace) FinishTrace(std::move(trace));
    in_flight_.fetch_sub(1, std::memory_order_release);
  };
  manager_->Dispatch(std::move(request));
}

void InferenceServer::BeginShutdown() { shutting_down_ = true; }

bool InferenceServer::WaitForIdle(std::chrono::steady_clock::time_point deadline) const {
  auto idle = [this] { return in_flight_.load(std::memory_order_acquire) == 0; };
  while (!idle()) {
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (idle()) return true;
  // Out of time. What is queued is answered now (503 / UNAVAILABLE) while the frontends
  // can still write it. What is executing cannot be interrupted inside a backend, and
  // the process cannot exit before those instance threads return anyway (unloading
  // joins them), so their answers are awaited too: stopping the frontends first would
  // only turn a result that is on its way into a reset connection.
  const size_t cancelled = Scheduler::CancelAllQueued();
  const int64_t executing = in_flight_.load();
  FS_LOG_WARNING(
      "exit timeout: answered {} queued request(s) with an error; waiting for {} "
      "executing request(s) to finish",
      cancelled, executing);
  while (!idle()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return false;
}

Result<int64_t> ParseModelVersion(const std::string& text) {
  if (text.empty()) return int64_t{-1};
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || v > (INT64_MAX - 9) / 10) {
      return InvalidArgument("model version must be a non-negative integer, got '" + text + "'");
    }
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace flowserve
