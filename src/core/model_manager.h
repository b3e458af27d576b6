#pragma once
// Owns every model's lifetime: which versions exist, their state, and the loaded
// ModelVersion objects. Loading happens off the table lock, beside whatever still
// serves; the table swap is atomic and the replaced versions drain afterwards, so
// lookups never wait for a load and no accepted request is dropped. Operations on one
// model are serialized; different models load in parallel.
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/model_version.h"
#include "core/server.h"
#include "core/server_options.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

struct ModelDirectory;
class ResponseCache;
struct RepositoryScan;
namespace storage {
class RepositorySources;
}

class ModelManager {
 public:
  explicit ModelManager(ServerOptions options);
  ~ModelManager();

  // Scans the repositories and loads the start-up models (all, or --load-model ones in
  // explicit mode), in parallel, ensembles after their composing models. Fails only
  // when a repository cannot be read.
  Status LoadStartupModels();
  // Loads or reloads a model (an ensemble's composing models first). Unchanged versions
  // keep serving; a failed reload leaves the previous versions serving.
  Status Load(const std::string& name, const std::string& config_json);
  // Waits for the model's in-flight requests. `unload_dependents` also unloads the
  // models an ensemble is composed of.
  Status Unload(const std::string& name, bool unload_dependents);
  // One rescan in poll mode: loads what was added or changed, unloads what is gone.
  void Poll();
  void UnloadAll();
  // The server's response cache (null: none), given to every version loaded after.
  void SetResponseCache(std::shared_ptr<ResponseCache> cache) {
    response_cache_ = std::move(cache);
  }
  const std::shared_ptr<ResponseCache>& response_cache() const { return response_cache_; }

  // Resolves the request's model and queues it; when the version found began draining
  // in between (a reload or unload won the race) it retries on the successor. Answers
  // through on_complete when the request cannot be queued.
  void Dispatch(std::unique_ptr<InferenceRequest> request);

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
    std::string fingerprint;  // of the version folder's files when loaded
  };
  struct ModelEntry {
    std::string path;
    Status error;  // the model as a whole failed (config, versions, ...)
    std::map<int64_t, VersionEntry> versions;
    std::shared_ptr<const inference::ModelConfig> config;  // of the serving versions
    std::string config_json;                               // the load request's override in effect
    std::string model_fingerprint;
    std::string attempted;  // everything the last attempt saw; poll skips it unchanged
    bool unloaded = false;
  };
  enum class SyncMode {
    kIfChanged,   // poll and start-up: nothing to do when the files did not change
    kAlways,      // an API load: re-read, reload what changed
    kDependency,  // a composing model changed: rebuild; failure replaces the old
  };

  // Loads `name` from `scan`, its composing models first when it is an ensemble.
  Status LoadFromScan(const RepositoryScan& scan, const std::string& name,
                      const std::string& config_json, SyncMode mode, int depth);
  // Syncs one model, then the ensembles that use it when what it serves changed.
  Status SyncAndRefresh(const ModelDirectory& dir, const std::string& config_json, SyncMode mode,
                        int depth);
  // Brings one model's table entry in line with its folder; true in `changed` when the
  // set of serving versions changed.
  Status Sync(const ModelDirectory& dir, const std::string& config_json, SyncMode mode,
              bool& changed);
  void RefreshDependents(const std::string& name, int depth);
  Status UnloadOne(const std::string& name, bool erase, std::set<std::string>* composing);
  // Swaps the entry in and drains the versions it no longer holds.
  void Install(const std::string& name, ModelEntry entry);
  std::shared_ptr<std::mutex> OpLock(const std::string& name);
  bool Serving(const std::string& name) const;
  static bool Serving(const ModelEntry& entry);

  ServerOptions options_;
  // Local folders as they are; s3:// repositories through their local cache.
  std::shared_ptr<storage::RepositorySources> sources_;
  mutable std::mutex mu_;
  std::map<std::string, ModelEntry> models_;
  std::mutex ops_mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> op_locks_;
  std::shared_ptr<ResponseCache> response_cache_;
};

}  // namespace flowserve
