#pragma once
// ModelInfer and ModelStreamInfer on grpc's callback API. Neither blocks a grpc thread:
// a request is converted and handed to the core, and the core's completion callback
// (on a scheduler thread) serializes the answer and finishes or writes the call.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "grpc_service.grpc.pb.h"

namespace flowserve {
class InferenceServer;
}

namespace flowserve::grpc_frontend {

struct InferMessages;

// Hands grpc request/response pairs for ModelInfer. A pair lives until grpc released
// it and no tensor in the core points into it any more, then returns to a bounded
// free list so steady traffic reuses the messages' buffers.
class InferMessagePool
    : public grpc::MessageAllocator<inference::ModelInferRequest, inference::ModelInferResponse>,
      public std::enable_shared_from_this<InferMessagePool> {
 public:
  explicit InferMessagePool(size_t capacity) : capacity_(capacity) {}
  ~InferMessagePool() override;
  grpc::MessageHolder<inference::ModelInferRequest, inference::ModelInferResponse>*
  AllocateMessages() override;

  // The shared reference that tensors pointing into the pair's request hold.
  static std::shared_ptr<const void> Owner(grpc::RpcAllocatorState* state);

 private:
  void Recycle(InferMessages* m);

  size_t capacity_;
  std::mutex mu_;
  std::vector<InferMessages*> free_;
};

grpc::ServerUnaryReactor* HandleModelInfer(InferenceServer* server,
                                           grpc::CallbackServerContext* context,
                                           const inference::ModelInferRequest* request,
                                           inference::ModelInferResponse* response);

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
NewStreamInferReactor(InferenceServer* server);

grpc::Status ToGrpcStatus(const Status& status);

}  // namespace flowserve::grpc_frontend
