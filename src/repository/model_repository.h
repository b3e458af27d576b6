#pragma once
// The repository layer: finds models on disk and turns config.pbtxt into a validated
// inference::ModelConfig. It loads nothing; the core decides what to load and when.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

struct ModelDirectory {
  std::string name;  // folder name == model name
  std::string path;  // <repository>/<name>
};

// Every sub-folder of each repository that holds a config.pbtxt (or, with
// strict_model_config=false, any sub-folder). A name found in two repositories is an
// error for that name, reported in `errors` (and the name is left out of `models`).
struct RepositoryScan {
  std::vector<ModelDirectory> models;
  std::map<std::string, Status> errors;  // model name -> why it cannot be used
  Status error;  // a repository path that is missing or unreadable: the server cannot start
};
RepositoryScan ScanRepositories(const std::vector<std::string>& repositories,
                                bool strict_model_config);

// Parses <model_dir>/config.pbtxt with protobuf TextFormat; errors name the file, line
// and column. Then fills defaults (name, backend from platform, instance_group,
// version_policy) and validates (name == folder, tensors, dims, batching fields...).
Result<std::shared_ptr<inference::ModelConfig>> LoadModelConfig(const ModelDirectory& dir,
                                                                bool strict_model_config);
// Parses config text (the same rules), for tests and for load-with-override.
Result<std::shared_ptr<inference::ModelConfig>> ParseModelConfig(const std::string& text,
                                                                 const std::string& source_name,
                                                                 const std::string& folder_name);
// Parses the JSON form of a config (a load request's `config` override). One that names
// neither backend nor platform gets `fallback_backend` (the one the model files suggest).
Result<std::shared_ptr<inference::ModelConfig>> ParseModelConfigJson(
    const std::string& json, const std::string& folder_name,
    const std::string& fallback_backend = "");
// The backend a model's files suggest (1/model.onnx: onnxruntime, ...), or "".
std::string GuessBackendFromFiles(const std::string& model_dir);
// Fills defaults and validates an already-parsed config.
Status NormalizeAndValidate(inference::ModelConfig& config, const std::string& source_name,
                            const std::string& folder_name);

// Numeric sub-folders of a model directory, ascending.
std::vector<int64_t> ListVersions(const std::string& model_dir);
// Applies version_policy to the available versions; an error when the policy names
// versions that do not exist or selects none.
Result<std::vector<int64_t>> SelectVersions(const inference::ModelConfig& config,
                                            const std::vector<int64_t>& available);

// Reads a label file (one label per line) from the model directory.
Result<std::vector<std::string>> LoadLabels(const std::string& model_dir,
                                            const std::string& filename);

// The config as JSON in the shape Triton returns from GET .../config: proto field
// names, every field printed, int64 values as JSON numbers.
std::string ModelConfigToJson(const inference::ModelConfig& config);

}  // namespace flowserve
