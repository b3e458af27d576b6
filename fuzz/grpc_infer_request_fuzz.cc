// A serialized ModelInferRequest -> InferenceRequest -> in-process core ->
// ModelInferResponse, as the gRPC frontend does it.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "frontends/grpc/infer_convert.h"
#include "fuzz/inprocess_server.h"
#include "grpc_service.pb.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is an expected parse failure, not news.
  google::protobuf::SetLogHandler(nullptr);
  flowserve::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto msg = std::make_shared<inference::ModelInferRequest>();
  if (!msg->ParseFromArray(data, static_cast<int>(size))) return 0;
  auto request = std::make_unique<flowserve::InferenceRequest>();
  if (!flowserve::grpc_frontend::ToInferenceRequest(*msg, msg, request.get()).ok()) return 0;
  auto response = flowserve::fuzz::InferSync(std::move(request));
  if (!response->status.ok()) return 0;
  inference::ModelInferResponse out;
  flowserve::grpc_frontend::ToModelInferResponse(*response, &out);
  std::string wire;
  out.SerializeToString(&wire);
  return 0;
}
