#pragma once
#include "common/status.h"
#include "core/inference_request.h"

namespace flowserve {

class ModelVersion;

// Checks a request against its model's config before it is queued: input names,
// datatypes, shapes (with the batch dim when max_batch_size > 0), byte sizes, BYTES
// framing and requested outputs. Sets request.batch_size. Messages name the model, the
// tensor, and what was expected and received.
Status ValidateRequest(const ModelVersion& model, InferenceRequest& request);

}  // namespace flowserve
