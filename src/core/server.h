#pragma once
// The core's face to the frontends: health, model lookup, repository operations and
// asynchronous inference. Frontends include this and nothing below it.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/model_version.h"
#include "core/server_options.h"

namespace flowserve {

class ModelManager;
class RepositoryPoller;
class SharedMemoryRegistry;
class ResponseCache;
class TraceManager;

struct ModelIndexEntry {
  std::string name;
  std::string version;  // "" when the model failed before any version was known
  std::string state;    // READY | LOADING | UNLOADING | UNAVAILABLE; "" = never loaded
  std::string reason;
};

// The program's name (--version); server metadata reports --id instead, as Triton does.
constexpr const char* kServerName = "flowserve";
constexpr const char* kServerVersion = "0.1.0";
// Extensions advertised in server metadata.
const std::vector<std::string>& ServerExtensions();

class InferenceServer {
 public:
  // Loads the startup models. Fails only for server-level problems (no repository,
  // bad option); per-model failures are recorded and reported by the index.
  static Result<std::unique_ptr<InferenceServer>> Create(const ServerOptions& options);
  ~InferenceServer();

  const ServerOptions& options() const { return options_; }
  // Trace settings and sampling (the trace extension).
  TraceManager& tracer() const { return *tracer_; }
  bool IsLive() const { return !stopped_.load(); }
  bool IsReady() const;
  // True when any model failed to load at start-up (for --exit-on-error).
  bool AnyModelFailed() const;

  // version -1: the newest ready version. NotFound / Unavailable with Triton's wording.
  Result<std::shared_ptr<ModelVersion>> GetModel(const std::string& name, int64_t version) const;
  std::vector<std::shared_ptr<ModelVersion>> LoadedModels() const;
  std::vector<ModelIndexEntry> RepositoryIndex(bool ready_only) const;
  // Explicit model control. `config_json` (may be empty) overrides config.pbtxt.
  Status LoadModel(const std::string& name, const std::string& config_json);
  Status UnloadModel(const std::string& name, bool unload_dependents);

  // Asynchronous: request->on_complete runs exactly once, on a scheduler thread, or
  // inline on this thread when the request is refused before queueing.
  void Infer(std::unique_ptr<InferenceRequest> request);

  // Graceful stop: not ready at once, new inferences refused, in-flight ones finish.
  void BeginShutdown();
  // Waits until no request is in flight. At the deadline, answers every request still
  // queued with Unavailable and then waits for the ones executing (a backend call cannot
  // be interrupted). True when everything was answered before the deadline.
  bool WaitForIdle(std::chrono::steady_clock::time_point deadline) const;
  int64_t InFlight() const { return in_flight_.load(); }
  // The --cache-config cache; null when the server has none.
  const ResponseCache* response_cache() const;

  // Registered system shared memory regions (Triton's system_shared_memory extension).
  SharedMemoryRegistry& shared_memory() const { return *shared_memory_; }

 private:
  explicit InferenceServer(const ServerOptions& options);

  ServerOptions options_;
  std::unique_ptr<TraceManager> tracer_;  // outlives the models: traces end before it
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<RepositoryPoller> poller_;  // poll mode only
  std::unique_ptr<SharedMemoryRegistry> shared_memory_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> in_flight_{0};
};

// Parses a version path segment ("" = -1). InvalidArgument for anything else.
Result<int64_t> ParseModelVersion(const std::string& text);

}  // namespace flowserve
