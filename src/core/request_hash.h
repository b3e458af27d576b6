#pragma once
// The response cache's key: what makes two requests give the same answer.
#include <cstdint>
#include <string>

#include "core/inference_request.h"
#include "core/response_cache.h"

namespace flowserve {

// Hashes (XXH3, 128 bits) the model, its version and `generation` (one per loaded
// ModelVersion, so a reload never serves the previous files' answers), every input's
// name, type, shape and bytes (in name order: the order they were sent in does not
// change the result), the requested outputs with their classification counts (in
// order: they are answered in that order), and the request parameters passed to the
// backend. Scheduling parameters (priority, timeout, sequence, output formats) are not
// part of the key: the frontends keep them out of `parameters`.
ResponseCacheKey HashRequest(const std::string& model_name, int64_t model_version,
                             uint64_t generation, const InferenceRequest& request);

}  // namespace flowserve
