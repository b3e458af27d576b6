#pragma once
// Puts the response cache in front of a model version's executor.
#include <memory>
#include <string>

#include "common/status.h"
#include "core/inference_request.h"

namespace inference {
class ModelConfig;
}

namespace flowserve {

class ModelExecutor;
class ModelVersion;
class ResponseCache;

// Why a model whose config enables response_cache cannot use it ("" when it can), as
// Triton decides: the server must have a cache, and decoupled and sequence models are
// never cached (their answers depend on more than one request).
std::string ResponseCacheRefusal(const inference::ModelConfig& config, bool server_has_cache);

// A hit is answered here, inline, counted as a success with cache_hit (no execution,
// no inference counted), and the request is consumed. A miss goes to `executor` with a
// callback that stores the response when it succeeds, and counts cache_miss (lookup +
// insertion time). Like ModelExecutor::Enqueue, leaves the request with the caller
// (its callback as it was) on error.
Status EnqueueThroughCache(ModelVersion& model, ResponseCache& cache, uint64_t generation,
                           ModelExecutor& executor, std::unique_ptr<InferenceRequest>& request);

}  // namespace flowserve
