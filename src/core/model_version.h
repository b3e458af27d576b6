#pragma once
// One loaded version of one model: its config, labels, statistics and the scheduler
// that feeds its instances. Held by shared_ptr: a request in flight keeps its model
// version alive through an unload or a reload.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/statistics.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

class BackendModel;
class Scheduler;
struct InferenceRequest;

class ModelVersion {
 public:
  ModelVersion(std::string name, int64_t version, std::shared_ptr<const inference::ModelConfig> config,
               std::string model_dir);
  ~ModelVersion();

  const std::string& name() const { return name_; }
  int64_t version() const { return version_; }
  const inference::ModelConfig& config() const { return *config_; }
  std::shared_ptr<const inference::ModelConfig> config_ptr() const { return config_; }
  const std::string& model_dir() const { return model_dir_; }
  ModelStatistics& stats() { return stats_; }
  const ModelStatistics& stats() const { return stats_; }

  // Labels of an output that has label_filename, else nullptr.
  const std::vector<std::string>* Labels(const std::string& output_name) const;

  // Loads labels, the backend model and its instances, and starts the scheduler.
  Status Load(const std::map<std::string, std::map<std::string, std::string>>& backend_config);
  // Validates and queues a request; on error the request is returned untouched in
  // the Status path (the caller answers it).
  Status Enqueue(std::unique_ptr<InferenceRequest>& request);
  // Stops accepting, waits until queued and executing requests are answered.
  void Drain();
  size_t QueueSize() const;

 private:
  std::string name_;
  int64_t version_;
  std::shared_ptr<const inference::ModelConfig> config_;
  std::string model_dir_;
  ModelStatistics stats_;
  std::map<std::string, std::vector<std::string>> labels_;
  std::unique_ptr<BackendModel> backend_model_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace flowserve
