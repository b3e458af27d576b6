#pragma once
// One loaded version of one model: its config, labels, statistics and what runs its
// requests. Held by shared_ptr: a request in flight keeps its model version alive
// through an unload or a reload.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/statistics.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

struct InferenceRequest;
struct EnsembleEnvironment;
class ResponseCache;

// Runs a loaded version's validated requests: a backend's instances behind a
// Scheduler, or an ensemble's step graph. Backends never see the second kind.
class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;
  // Takes the request on success; leaves it with the caller on error.
  virtual Status Enqueue(std::unique_ptr<InferenceRequest>& request) = 0;
  // Stops accepting, returns once every accepted request has been answered.
  virtual void Drain() = 0;
  virtual size_t QueueSize() const = 0;
};

class ModelVersion {
 public:
  ModelVersion(std::string name, int64_t version,
               std::shared_ptr<const inference::ModelConfig> config, std::string model_dir);
  ~ModelVersion();

  const std::string& name() const { return name_; }
  int64_t version() const { return version_; }
  const inference::ModelConfig& config() const { return *config_; }
  std::shared_ptr<const inference::ModelConfig> config_ptr() const { return config_; }
  const std::string& model_dir() const { return model_dir_; }
  ModelStatistics& stats() { return stats_; }
  const ModelStatistics& stats() const { return stats_; }
  bool IsEnsemble() const;
  // model_transaction_policy { decoupled: true }: any number of responses per request.
  // An ensemble is when one of its steps is.
  bool decoupled() const { return decoupled_; }
  // Set by the backend (ModelLoadContext::set_unavailable) when this loaded version can
  // no longer serve; empty while it can.
  void MarkUnavailable(const std::string& reason);
  bool unavailable() const { return unavailable_.load(std::memory_order_acquire); }
  std::string unavailable_reason() const;
  // Some input or output of this (non-ensemble) model has a `reshape`.
  bool has_reshape() const { return has_reshape_; }

  // Labels of an output that has label_filename, else nullptr.
  const std::vector<std::string>* Labels(const std::string& output_name) const;

  // Before Load: answers identical requests from `cache` (may be null: the server has
  // none) when the config enables response_cache and the model can be cached.
  void SetResponseCache(std::shared_ptr<ResponseCache> cache);
  bool response_cache_active() const { return response_cache_ != nullptr; }

  // Loads labels, the backend model and its instances, and starts the scheduler.
  Status Load(const std::map<std::string, std::map<std::string, std::string>>& backend_config,
              std::function<void(std::unique_ptr<InferenceRequest>)> dispatch);
  // Loads labels and builds the ensemble's step graph, validated against the
  // composing models `env` finds.
  Status LoadEnsemble(const EnsembleEnvironment& env);
  // Validates and queues a request; on error the request is returned untouched in
  // the Status path (the caller answers it).
  Status Enqueue(std::unique_ptr<InferenceRequest>& request);
  // Stops accepting, waits until queued and executing requests are answered.
  void Drain();
  // True once Drain() began: an Enqueue refused now means "retry on the successor".
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  size_t QueueSize() const;

 private:
  Status LoadLabels();

  std::string name_;
  int64_t version_;
  std::shared_ptr<const inference::ModelConfig> config_;
  std::string model_dir_;
  ModelStatistics stats_;
  std::map<std::string, std::vector<std::string>> labels_;
  std::unique_ptr<ModelExecutor> executor_;
  std::atomic<bool> draining_{false};
  bool has_reshape_ = false;
  std::shared_ptr<ResponseCache> response_cache_;
  uint64_t cache_generation_ = 0;
  bool decoupled_ = false;
  std::atomic<bool> unavailable_{false};
  mutable std::mutex unavailable_mu_;
  std::string unavailable_reason_;
};

}  // namespace flowserve
