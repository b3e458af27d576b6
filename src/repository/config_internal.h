#pragma once
// Shared by the parser and the validator (private to src/repository): the positions
// TextFormat recorded for each field, so a validation error points at a line the same
// way a syntax error does.
#include <google/protobuf/text_format.h>

#include <string>

#include <memory>

#include "common/status.h"

namespace inference {
class ModelConfig;
}

namespace flowserve::config_internal {

using ParseInfoTree = google::protobuf::TextFormat::ParseInfoTree;

// NormalizeAndValidate with the field positions of the parsed text; `locations` is null
// when the config did not come from text (JSON override, built in code).
Status NormalizeAndValidateAt(inference::ModelConfig& config, const std::string& source_name,
                              const std::string& folder_name, const ParseInfoTree* locations);

// ParseModelConfig, except that a config naming neither backend nor platform gets
// `fallback_backend` first (auto-completion when strict_model_config is off).
Result<std::shared_ptr<inference::ModelConfig>> ParseModelConfigText(
    const std::string& text, const std::string& source_name, const std::string& folder_name,
    const std::string& fallback_backend);

}  // namespace flowserve::config_internal
