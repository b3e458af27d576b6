#pragma once
// A flowserve core running in the fuzzer's process: identity models in a temporary
// repository, and a blocking Infer for targets that need a request answered end to end.
#include <memory>

#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/server.h"

namespace flowserve::fuzz {

// Created on first use and kept for the process (libFuzzer never returns from main).
InferenceServer& Server();
// Runs the request through the core and returns its response.
std::unique_ptr<InferenceResponse> InferSync(std::unique_ptr<InferenceRequest> request);
// Silences logging: a fuzzer prints millions of rejected requests otherwise.
void QuietLogs();

}  // namespace flowserve::fuzz
