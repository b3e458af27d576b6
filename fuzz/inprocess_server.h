#pragma once
// A flowserve core running in the fuzzer's process: identity models (and an ensemble of
// one) in a temporary repository under explicit model control, and a blocking Infer for
// targets that need a request answered end to end.
#include <memory>
#include <string>

#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/server.h"

namespace flowserve::fuzz {

// Created on first use and kept for the process (libFuzzer never returns from main).
InferenceServer& Server();
// A directory of this process, removed at a normal exit; the repository is its models/.
const std::string& TempDir();
// Reloads, from the repository, every model that an input unloaded or loaded with another
// config, so the next input meets the start-up models again.
void RestoreModels();
// Runs the request through the core and returns its response.
std::unique_ptr<InferenceResponse> InferSync(std::unique_ptr<InferenceRequest> request);
// Silences logging: a fuzzer prints millions of rejected requests otherwise.
void QuietLogs();

}  // namespace flowserve::fuzz
