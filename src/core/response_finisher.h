#pragma once
// The last step before a response goes back to its frontend: keep only the requested
// outputs and turn classification requests into top-k BYTES. Statistics are the
// scheduler's: it knows the request's queue and compute times.
#include <cstdint>
#include <vector>

#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/statistics.h"

namespace flowserve {

class ModelVersion;

// When the response ends up failed, returns whose fault it was (the backend's, or OTHER
// for a request the outputs cannot satisfy); otherwise the value is meaningless.
FailureReason FinishResponse(const ModelVersion& model, const InferenceRequest& request,
                             InferenceResponse& response);

// Top-k of each batch row of `tensor` as "score:index[:label]" BYTES, highest first.
// `batched` says the first dim is the batch. k above the class count is clamped.
Result<Tensor> Classify(const Tensor& tensor, uint32_t k, bool batched,
                        const std::vector<std::string>* labels);

}  // namespace flowserve
