#pragma once
// Triton's config auto-complete, between parsing config.pbtxt and loading: the model's
// backend fills in what the config leaves out, then the result is validated again.
#include <memory>

#include "common/status.h"
#include "core/server_options.h"
#include "repository/model_repository.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

// Returns `config` itself when there is nothing to do (auto-complete off, an ensemble, a
// backend that cannot be found: its load reports that), else a completed copy.
Result<std::shared_ptr<inference::ModelConfig>> AutoCompleteModelConfig(
    std::shared_ptr<inference::ModelConfig> config, const ModelDirectory& dir,
    const ServerOptions& options);

}  // namespace flowserve
