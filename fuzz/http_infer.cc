#include "fuzz/http_infer.h"

#include "frontends/http/infer_codec.h"
#include "fuzz/inprocess_server.h"

namespace flowserve::fuzz {

const std::string& ModelName(unsigned char selector) {
  static const std::string kNames[] = {"simple", "bytes", "multi", "batched", "missing"};
  return kNames[selector % (sizeof(kNames) / sizeof(kNames[0]))];
}

HttpReply HttpInfer(const std::shared_ptr<std::string>& body, std::string_view header_length,
                    const std::string& model, int64_t version) {
  InferReplyFormat format;
  auto request = ParseInferRequest(body, header_length, model, version, &format);
  if (!request.ok()) return ErrorReply(request.status());
  auto response = InferSync(std::move(request.value()));
  if (!response->status.ok()) return ErrorReply(response->status);
  HttpReply reply = SerializeInferResponse(*response, format);
  // Touch every chunk: a chunk pointing at freed or short memory shows up here.
  size_t sum = 0;
  for (const auto& c : reply.chunks) {
    for (size_t i = 0; i < c.size; ++i) sum += static_cast<unsigned char>(c.data[i]);
  }
  if (sum == 1) reply.status = reply.status;  // keeps the loop from being optimized away
  return reply;
}

}  // namespace flowserve::fuzz
