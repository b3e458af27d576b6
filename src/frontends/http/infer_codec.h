#pragma once
// KServe v2 inference over HTTP, as pure functions: request body (JSON header plus the
// binary tensor extension's raw bytes) -> InferenceRequest, and InferenceResponse ->
// reply bytes. No sockets here, so every framing rule is unit-testable.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"
#include "core/shared_memory_io.h"
#include "frontends/http/http_listener.h"

namespace flowserve {

// What the response needs to remember from the request.
struct InferReplyFormat {
  std::string model_name;
  std::string id;
  bool binary_data_output = false;  // request parameter: the default for every output
  // Outputs that set parameters.binary_data themselves.
  std::vector<std::pair<std::string, bool>> binary_override;
  // Outputs to write into system shared memory; the reply carries no data for them.
  std::vector<SharedMemoryOutput> shm_outputs;

  bool IsBinary(const std::string& output) const;
};

// Parses the `size` bytes of body at `data` (writable, with a byte after them), whose
// first `header_length_field` bytes (the value of the Inference-Header-Content-Length
// header; empty = the whole body) are JSON. The JSON is parsed in place and binary inputs
// point into the body, which the tensors keep alive through `owner` (aliasing `data`).
// Every malformed request is an InvalidArgument naming the tensor and what was wrong.
// Tensors naming a shared memory region resolve it in `shared_memory` (null: refused).
Result<std::unique_ptr<InferenceRequest>> ParseInferRequest(
    char* data, size_t size, std::shared_ptr<const void> owner,
    std::string_view header_length_field, const std::string& model_name, int64_t model_version,
    InferReplyFormat* format, const SharedMemoryRegistry* shared_memory = nullptr);
inline Result<std::unique_ptr<InferenceRequest>> ParseInferRequest(
    const std::shared_ptr<std::string>& body, std::string_view header_length_field,
    const std::string& model_name, int64_t model_version, InferReplyFormat* format,
    const SharedMemoryRegistry* shared_memory = nullptr) {
  return ParseInferRequest(body->data(), body->size(),
                           std::shared_ptr<const void>(body, body->data()), header_length_field,
                           model_name, model_version, format, shared_memory);
}

// JSON outputs inline; binary ones as chunks referencing the output tensors (no copy),
// announced by the Inference-Header-Content-Length header. Shared memory outputs are
// written into their regions first and reported by name, datatype and shape only.
HttpReply SerializeInferResponse(const InferenceResponse& response, const InferReplyFormat& format);

// {"error": message} with the status' HTTP code.
HttpReply ErrorReply(const Status& status);
HttpReply JsonReply(std::string json, int status = 200);

}  // namespace flowserve
