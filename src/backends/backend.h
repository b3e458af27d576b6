#pragma once
// The one interface every framework implements. A backend turns a model version folder
// into a BackendModel; a BackendModel makes instances; an instance executes batches.
// Nothing here knows about protocols or queues: the core owns those.
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

struct ModelLoadContext {
  std::string model_name;
  int64_t version = 0;
  std::string model_dir;                           // <repository>/<model>
  std::string version_dir;                         // <repository>/<model>/<version>
  const inference::ModelConfig* config = nullptr;  // outlives the BackendModel
  // --backend-config=<backend>,<key>=<value> entries for this backend.
  std::map<std::string, std::string> backend_config;
  // Total instances of this model version; backends may share cores among them.
  int total_instance_count = 1;
  // Sends a request to any model of this server (BLS: a model calling others, ensembles
  // included); the response arrives through request->on_complete, on another thread.
  std::function<void(std::unique_ptr<InferenceRequest>)> dispatch;
  // For a loaded model that can no longer serve (its process keeps dying): the version
  // turns UNAVAILABLE with `reason` in the repository index and readiness, and requests
  // get the reason, until it is unloaded or reloaded. Callable from any thread while the
  // BackendModel lives.
  std::function<void(const std::string& reason)> set_unavailable;
};

struct InstanceSpec {
  std::string name;  // "<group name>_<index>"
  int index = 0;     // 0..total-1 across the model version
  int kind = 0;      // inference::ModelInstanceGroup::Kind value
};

class BackendInstance {
 public:
  virtual ~BackendInstance() = default;
  // Executes `requests` (already validated against the config, same model version) as
  // one batch. Must set responses[i] (outputs or an error status) for every i; the core
  // has already filled the response's model name, version and id. Called from one
  // thread at a time per instance, unless ConcurrentExecute() says it may be more.
  virtual void Execute(std::span<InferenceRequest* const> requests,
                       std::span<InferenceResponse* const> responses) = 0;
  // Execute without waiting, for a caller on an event loop's thread (see
  // common/readiness_watch.h): starts the batch and returns true, and `done` runs once
  // every response is set, on a loop's thread, never inside this call. Returns
  // false, having started nothing, when it cannot; the caller then calls Execute. Until
  // `done` runs, the instance is busy for Execute, but StartExecute may be called again
  // up to PipelineDepth() batches at once; while any runs it must not return false.
  virtual bool StartExecute(std::span<InferenceRequest* const> /*requests*/,
                            std::span<InferenceResponse* const> /*responses*/,
                            std::function<void()> /*done*/) {
    return false;
  }
  // True when StartExecute takes batches (from a loop's thread): the scheduler then sends
  // such a batch from an I/O thread even when executions take long.
  virtual bool StartsWithoutWaiting() const { return false; }
  // How many batches StartExecute may have running at once (they end in order): a second
  // one waits in the instance (the Python process's socket) while the first executes, so
  // the process never sleeps between them.
  virtual size_t PipelineDepth() const { return 1; }
  // True when Execute mostly waits for another process (the Python backend's stub).
  // Running it on a frontend's I/O thread then saves wake-ups only for a lone client:
  // with several, that thread would sleep while its other connections wait, and every
  // request would go to the process alone instead of in a batch.
  virtual bool WaitsOnAnotherProcess() const { return false; }
  // True when Execute may run on several threads at once (it changes no state of the
  // instance). A cheap model's requests then run on their callers' threads even while
  // the instance is executing, so that callers never wait for one another.
  virtual bool ConcurrentExecute() const { return false; }
};

class BackendModel {
 public:
  virtual ~BackendModel() = default;
  virtual Result<std::unique_ptr<BackendInstance>> CreateInstance(const InstanceSpec& spec) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Result<std::unique_ptr<BackendModel>> LoadModel(const ModelLoadContext& ctx) = 0;
  // Triton's config auto-complete: fills in what `config` leaves out (inputs, outputs,
  // max_batch_size, a default dynamic batcher) from the model file in ctx.version_dir,
  // and fails, naming the tensor, both values and the file, where the config contradicts
  // the model. ctx.config points at `config` (read it there or here; write only here).
  // ctx.version is the newest version the policy selects. The core validates afterwards.
  virtual Status AutoCompleteConfig(const ModelLoadContext& /*ctx*/,
                                    inference::ModelConfig& /*config*/) {
    return Status::Ok();
  }
};

// Backends are found by the config's `backend` (or a `platform` alias resolved by the
// repository layer): first among those registered in-process (identity), then as a
// module <backend directory>/<name>/libflowserve_<name>.so, loaded on first use.
using BackendFactory = std::function<std::unique_ptr<Backend>()>;
void RegisterBackend(const std::string& name, BackendFactory factory);
// Where modules are looked up (--backend-directory). Set once, before the first load.
void SetBackendDirectory(const std::string& dir);
// The folder modules are found in when no flag says: <exe dir>/backends in a build tree,
// <exe dir>/../lib/flowserve/backends in an install prefix.
std::string DefaultBackendDirectory();
Result<Backend*> FindBackend(const std::string& name);  // created once, then shared
std::vector<std::string> RegisteredBackends();          // built-in and loaded modules
// Registers the backends built into this binary (identity and the oneflow stub).
void RegisterBuiltinBackends();

}  // namespace flowserve
