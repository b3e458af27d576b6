#pragma once
// How a decoupled model (model_transaction_policy { decoupled: true }) answers one
// request: any number of responses, in any order relative to other requests, then the
// final flag (with the last response, or alone). The scheduler makes one per request of
// a decoupled model before Execute (InferenceRequest::response_sender); the backend may
// keep it and send from any thread after Execute returned. The request's callback gets
// every response, InferenceResponse::final set on the last one only.
//
// An interface: backend modules call it through its vtable (they do not link the core).
#include <cstdint>
#include <memory>

#include "common/status.h"
#include "core/inference_request.h"
#include "core/inference_response.h"

namespace flowserve {

class ModelVersion;

class ResponseSender {
 public:
  // Dropped without the final flag (a backend bug, or a process that died), a sender
  // ends its request with an error, so its frontend is never left waiting.
  virtual ~ResponseSender() = default;
  // Sends `response` (null: the final flag alone). Fails without sending once the final
  // flag went out.
  virtual Status Send(std::unique_ptr<InferenceResponse> response, bool final) = 0;
  virtual bool closed() const = 0;
};

// The core's sender for `request`, which gives up its callback (the sender keeps its id,
// requested outputs and times, not its inputs). Statistics count one inference per
// request, ending with the final flag; its infer time runs from this call.
std::shared_ptr<ResponseSender> MakeResponseSender(ModelVersion* model, InferenceRequest& request,
                                                   uint64_t dequeue_ns);

}  // namespace flowserve
