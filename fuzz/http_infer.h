#pragma once
// The HTTP frontend's infer route without the socket: body (+ the
// Inference-Header-Content-Length value) -> InferenceRequest -> in-process core ->
// reply bytes, or the error reply a client would get.
#include <memory>
#include <string>
#include <string_view>

#include "frontends/http/http_listener.h"

namespace flowserve::fuzz {

HttpReply HttpInfer(const std::shared_ptr<std::string>& body, std::string_view header_length,
                    const std::string& model, int64_t version);

// One of the in-process server's model names, by a selector byte.
const std::string& ModelName(unsigned char selector);

}  // namespace flowserve::fuzz
