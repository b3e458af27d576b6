#pragma once
// GRPCInferenceService on grpc's callback API. Inference goes through infer_handlers;
// the other RPCs answer from the same core calls the HTTP frontend uses.
#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/blocking_worker.h"
#include "common/status.h"
#include "core/api_auth.h"
#include "frontends/grpc/infer_handlers.h"
#include "grpc_service.grpc.pb.h"

namespace flowserve {
class InferenceServer;
}

namespace flowserve::grpc_frontend {

class Service final : public inference::GRPCInferenceService::CallbackService {
 public:
  Service(InferenceServer* server, int infer_allocation_pool_size,
          std::shared_ptr<const ApiAuth> auth = nullptr);

  // After the grpc server stopped taking calls: lets the load/unload calls already taken
  // finish (they use the core and finish into the grpc server), then ends their thread.
  void WaitForRepositoryCalls() { repository_calls_.Stop(); }

  using Unary = grpc::ServerUnaryReactor;
  using Ctx = grpc::CallbackServerContext;

  Unary* ServerLive(Ctx*, const inference::ServerLiveRequest*,
                    inference::ServerLiveResponse*) override;
  Unary* ServerReady(Ctx*, const inference::ServerReadyRequest*,
                     inference::ServerReadyResponse*) override;
  Unary* ModelReady(Ctx*, const inference::ModelReadyRequest*,
                    inference::ModelReadyResponse*) override;
  Unary* ServerMetadata(Ctx*, const inference::ServerMetadataRequest*,
                        inference::ServerMetadataResponse*) override;
  Unary* ModelMetadata(Ctx*, const inference::ModelMetadataRequest*,
                       inference::ModelMetadataResponse*) override;
  Unary* ModelInfer(Ctx*, const inference::ModelInferRequest*,
                    inference::ModelInferResponse*) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(Ctx*) override;
  Unary* ModelConfig(Ctx*, const inference::ModelConfigRequest*,
                     inference::ModelConfigResponse*) override;
  Unary* ModelStatistics(Ctx*, const inference::ModelStatisticsRequest*,
                         inference::ModelStatisticsResponse*) override;
  Unary* RepositoryIndex(Ctx*, const inference::RepositoryIndexRequest*,
                         inference::RepositoryIndexResponse*) override;
  Unary* RepositoryModelLoad(Ctx*, const inference::RepositoryModelLoadRequest*,
                             inference::RepositoryModelLoadResponse*) override;
  Unary* RepositoryModelUnload(Ctx*, const inference::RepositoryModelUnloadRequest*,
                               inference::RepositoryModelUnloadResponse*) override;
  Unary* SystemSharedMemoryStatus(Ctx*, const inference::SystemSharedMemoryStatusRequest*,
                                  inference::SystemSharedMemoryStatusResponse*) override;
  Unary* SystemSharedMemoryRegister(Ctx*, const inference::SystemSharedMemoryRegisterRequest*,
                                    inference::SystemSharedMemoryRegisterResponse*) override;
  Unary* SystemSharedMemoryUnregister(Ctx*, const inference::SystemSharedMemoryUnregisterRequest*,
                                      inference::SystemSharedMemoryUnregisterResponse*) override;
  Unary* CudaSharedMemoryStatus(Ctx*, const inference::CudaSharedMemoryStatusRequest*,
                                inference::CudaSharedMemoryStatusResponse*) override;
  Unary* CudaSharedMemoryRegister(Ctx*, const inference::CudaSharedMemoryRegisterRequest*,
                                  inference::CudaSharedMemoryRegisterResponse*) override;
  Unary* CudaSharedMemoryUnregister(Ctx*, const inference::CudaSharedMemoryUnregisterRequest*,
                                    inference::CudaSharedMemoryUnregisterResponse*) override;
  Unary* TraceSetting(Ctx*, const inference::TraceSettingRequest*,
                      inference::TraceSettingResponse*) override;
  Unary* LogSettings(Ctx*, const inference::LogSettingsRequest*,
                     inference::LogSettingsResponse*) override;

 private:
  // Ok when the call's metadata opens `group` (always, without access rules).
  Status Authorize(Ctx* ctx, ApiGroup group) const;

  InferenceServer* server_;
  std::shared_ptr<const ApiAuth> auth_;  // null when nothing is restricted
  std::shared_ptr<InferMessagePool> pool_;
  BlockingWorker repository_calls_;  // model load and unload, one at a time
};

// Finishes a unary call at once with `status`.
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const Status& status);

// In a Service method: finishes the call with the refusal when its metadata does not open
// `group`.
#define FS_AUTHORIZE(ctx, group)                                   \
  do {                                                             \
    if (Status auth_st_ = Authorize(ctx, group); !auth_st_.ok()) { \
      return FinishNow(ctx, auth_st_);                             \
    }                                                              \
  } while (0)

}  // namespace flowserve::grpc_frontend
