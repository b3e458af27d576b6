#pragma once
// Translation between the protobuf inference messages and the core's request/response.
// Only this file knows how KServe v2 tensors and parameters are laid out in protobuf.
#include <memory>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"
#include "grpc_service.pb.h"

namespace flowserve::grpc_frontend {

// Fills `out` from `msg`. Input tensors point into `msg` wherever the bytes already have
// the core's layout (raw contents, and typed contents of the same width), so `owner`
// must keep `msg` alive; other typed contents are converted into owned buffers.
Status ToInferenceRequest(const inference::ModelInferRequest& msg,
                          const std::shared_ptr<const void>& owner, InferenceRequest* out);

// Writes a successful response; outputs always travel in raw_output_contents.
void ToModelInferResponse(const InferenceResponse& response, inference::ModelInferResponse* out);

// Request parameters that only the frontend acts on.
inline constexpr const char* kEmptyFinalResponse = "triton_enable_empty_final_response";

}  // namespace flowserve::grpc_frontend
