#include "core/config_autocomplete.h"

#include <algorithm>

#include "backends/backend.h"
#include "model_config.pb.h"

namespace flowserve {

Result<std::shared_ptr<inference::ModelConfig>> AutoCompleteModelConfig(
    std::shared_ptr<inference::ModelConfig> config, const ModelDirectory& dir,
    const ServerOptions& options) {
  if (options.disable_auto_complete_config || options.strict_model_config ||
      config->platform() == "ensemble") {
    return config;
  }
  auto versions = SelectVersions(*config, ListVersions(dir.path));
  if (!versions.ok() || versions.value().empty()) return config;
  auto backend = FindBackend(config->backend());
  if (!backend.ok()) return config;

  auto completed = std::make_shared<inference::ModelConfig>(*config);
  ModelLoadContext ctx;
  ctx.model_name = dir.name;
  ctx.version = *std::max_element(versions.value().begin(), versions.value().end());
  ctx.model_dir = dir.path;
  ctx.version_dir = dir.path + "/" + std::to_string(ctx.version);
  ctx.config = completed.get();
  int instances = 0;
  for (const auto& g : config->instance_group()) instances += std::max(1, g.count());
  ctx.total_instance_count = std::max(1, instances);
  auto bc = options.backend_config.find(config->backend());
  if (bc != options.backend_config.end()) ctx.backend_config = bc->second;
  FS_RETURN_IF_ERROR(
      (*backend)->AutoCompleteConfig(ctx, *completed).WithContext("model '" + dir.name + "': "));
  if (completed->SerializeAsString() == config->SerializeAsString()) return config;
  FS_RETURN_IF_ERROR(
      NormalizeAndValidate(*completed, dir.name + "/config.pbtxt (auto-completed)", dir.name));
  return completed;
}

}  // namespace flowserve
