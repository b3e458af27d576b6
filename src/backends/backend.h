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
  // thread at a time per instance.
  virtual void Execute(std::span<InferenceRequest* const> requests,
                       std::span<InferenceResponse* const> responses) = 0;
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
};

// Backends are found by the config's `backend` (or a `platform` alias resolved by the
// repository layer).
using BackendFactory = std::function<std::unique_ptr<Backend>()>;
void RegisterBackend(const std::string& name, BackendFactory factory);
Result<Backend*> FindBackend(const std::string& name);  // created once, then shared
std::vector<std::string> RegisteredBackends();
// Registers every backend compiled into this binary (identity, pytorch, ...).
void RegisterBuiltinBackends();

}  // namespace flowserve
