#pragma once
// The shared memory RPCs of GRPCInferenceService as plain functions over the registry;
// Service forwards to them after its auth check. CUDA ones answer that there is no GPU.
#include "common/status.h"
#include "grpc_service.pb.h"

namespace flowserve {
class SharedMemoryRegistry;
}

namespace flowserve::grpc_frontend {

Status SystemSharedMemoryStatus(const SharedMemoryRegistry& registry,
                                const inference::SystemSharedMemoryStatusRequest& req,
                                inference::SystemSharedMemoryStatusResponse* resp);
Status SystemSharedMemoryRegister(SharedMemoryRegistry& registry,
                                  const inference::SystemSharedMemoryRegisterRequest& req);
Status SystemSharedMemoryUnregister(SharedMemoryRegistry& registry,
                                    const inference::SystemSharedMemoryUnregisterRequest& req);

Status CudaSharedMemoryStatus(const inference::CudaSharedMemoryStatusRequest& req);
Status CudaSharedMemoryRegister(const inference::CudaSharedMemoryRegisterRequest& req);
Status CudaSharedMemoryUnregister(const inference::CudaSharedMemoryUnregisterRequest& req);

}  // namespace flowserve::grpc_frontend
