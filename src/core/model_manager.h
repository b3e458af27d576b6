#pragma once
// Owns every model's lifetime: which versions exist, their state, and the loaded
// ModelVersion objects. Loading happens off the lock; the table swap is atomic, so
// lookups never wait for a load.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/model_version.h"
#include "core/server.h"
#include "core/server_options.h"

namespace flowserve {

struct ModelDirectory;

class ModelManager {
 public:
  explicit ModelManager(ServerOptions options);
  ~ModelManager();

  // Scans the repositories and loads the start-up models (all, or --load-model ones in
  // explicit mode), in parallel. Fails only when a repository cannot be read.
  Status LoadStartupModels();
  Status Load(const std::string& name, const std::string& config_json);
  Status Unload(const std::string& name);
  void UnloadAll();

  Result<std::shared_ptr<ModelVersion>> Get(const std::string& name, int64_t version) const;
  std::vector<std::shared_ptr<ModelVersion>> Loaded() const;
  std::vector<ModelIndexEntry> Index(bool ready_only) const;
  bool AllReady() const;
  bool AnyFailed() const;

 private:
  struct VersionEntry {
    std::string state;  // READY | UNAVAILABLE | LOADING | UNLOADING
    std::string reason;
    std::shared_ptr<ModelVersion> model;
  };
  struct ModelEntry {
    std::string path;
    Status error;  // the model as a whole failed (config, versions, ...)
    std::map<int64_t, VersionEntry> versions;
  };

  ModelEntry LoadModelDirectory(const ModelDirectory& dir, const std::string& config_json);
  void Install(const std::string& name, ModelEntry entry);

  ServerOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, ModelEntry> models_;
};

}  // namespace flowserve
