#pragma once
// The JSON documents of the non-inference endpoints (server and model metadata,
// statistics, repository index, log settings), as pure functions for unit tests.
#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/status.h"
#include "core/model_version.h"
#include "core/server.h"

namespace flowserve {

// `name` is the server's --id, which is what tritonserver reports as its name.
std::string ServerMetadataJson(const std::string& name);
// `versions`: every loaded version of the model, reported as strings as KServe wants.
std::string ModelMetadataJson(const ModelVersion& model, const std::vector<int64_t>& versions);
std::string ModelStatsJson(const std::vector<std::shared_ptr<ModelVersion>>& models);
std::string RepositoryIndexJson(const std::vector<ModelIndexEntry>& index);
std::string LogSettingsJson(const LogSettings& settings);
// Applies the fields present in a POST /v2/logging body onto `settings`.
Status UpdateLogSettings(const std::string& body, LogSettings* settings);

// Small request bodies of the repository extension; an empty body means defaults.
struct LoadRequest {
  std::string config_json;  // parameters.config, "" when absent
};
Result<LoadRequest> ParseLoadRequest(const std::string& body);
Result<bool> ParseUnloadDependents(const std::string& body);
Result<bool> ParseIndexReadyOnly(const std::string& body);

}  // namespace flowserve
