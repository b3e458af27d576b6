#pragma once
// Translation between the protobuf inference messages and the core's request/response.
// Only this file knows how KServe v2 tensors and parameters are laid out in protobuf.
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/shared_memory_io.h"
#include "grpc_service.pb.h"

namespace flowserve::grpc_frontend {

// Fills `out` from `msg`. Input tensors point into `msg` wherever the bytes already have
// the core's layout (raw contents, and typed contents of the same width), so `owner`
// must keep `msg` alive; other typed contents are converted into owned buffers.
// Tensors naming a system shared memory region resolve it in `shared_memory` (null:
// refused); inputs then point into the region, and outputs are added to `shm_outputs`.
Status ToInferenceRequest(const inference::ModelInferRequest& msg,
                          const std::shared_ptr<const void>& owner, InferenceRequest* out,
                          const SharedMemoryRegistry* shared_memory = nullptr,
                          std::vector<SharedMemoryOutput>* shm_outputs = nullptr);

// Writes a successful response; outputs always travel in raw_output_contents.
void ToModelInferResponse(const InferenceResponse& response, inference::ModelInferResponse* out);
// The same after writing `shm_outputs` into their regions; those travel without data (an
// empty raw_output_contents entry keeps the others at their index).
Status ToModelInferResponse(const InferenceResponse& response,
                            const std::vector<SharedMemoryOutput>& shm_outputs,
                            inference::ModelInferResponse* out);

// Request parameters that only the frontend acts on.
inline constexpr const char* kEmptyFinalResponse = "triton_enable_empty_final_response";

// ModelStreamInfer: what one request asked of its stream answers.
struct StreamRequestInfo {
  bool final_flag = false;  // triton_enable_empty_final_response
  std::string id, model, version;
};
StreamRequestInfo StreamInfoOf(const inference::ModelInferRequest& msg);

// The stream message for one core response, as Triton: with the final-flag parameter every
// response says whether it is the final one and a flag sent alone becomes an empty
// response; without it, a flag alone sends nothing (null). A failed response becomes an
// error message naming the request's id.
std::unique_ptr<inference::ModelStreamInferResponse> ToStreamResponse(
    const InferenceResponse& r, const std::vector<SharedMemoryOutput>& shm_outputs,
    const StreamRequestInfo& info);
// A request refused before reaching the core, as a stream message.
std::unique_ptr<inference::ModelStreamInferResponse> StreamError(const StreamRequestInfo& info,
                                                                 const Status& st);

}  // namespace flowserve::grpc_frontend
