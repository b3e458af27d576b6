#include "frontends/grpc/shared_memory_rpc.h"

#include "core/shared_memory_registry.h"

namespace flowserve::grpc_frontend {

using namespace inference;  // NOLINT: every message here comes from the service proto

Status SystemSharedMemoryStatus(const SharedMemoryRegistry& registry,
                                const SystemSharedMemoryStatusRequest& req,
                                SystemSharedMemoryStatusResponse* resp) {
  auto regions = registry.List(req.name());
  if (!regions.ok()) return regions.status();
  for (const auto& r : *regions) {
    auto& out = (*resp->mutable_regions())[r.name];
    out.set_name(r.name);
    out.set_key(r.key);
    out.set_offset(r.offset);
    out.set_byte_size(r.byte_size);
  }
  return Status::Ok();
}

Status SystemSharedMemoryRegister(SharedMemoryRegistry& registry,
                                  const SystemSharedMemoryRegisterRequest& req) {
  return registry.Register(req.name(), req.key(), req.offset(), req.byte_size());
}

Status SystemSharedMemoryUnregister(SharedMemoryRegistry& registry,
                                    const SystemSharedMemoryUnregisterRequest& req) {
  if (req.name().empty()) {
    registry.UnregisterAll();
    return Status::Ok();
  }
  return registry.Unregister(req.name());
}

// No GPU here, so no CUDA region can ever be registered: status lists none, and
// unregistering all of none succeeds, as a Triton built without GPU support answers.
Status CudaSharedMemoryStatus(const CudaSharedMemoryStatusRequest& req) {
  if (req.name().empty()) return Status::Ok();
  return NotFound("unable to find cuda shared memory region: '" + req.name() + "'");
}

Status CudaSharedMemoryRegister(const CudaSharedMemoryRegisterRequest& req) {
  return InvalidArgument("failed to register CUDA shared memory region '" + req.name() +
                         "': GPUs not supported by this server");
}

Status CudaSharedMemoryUnregister(const CudaSharedMemoryUnregisterRequest& req) {
  if (req.name().empty()) return Status::Ok();
  return InvalidArgument("failed to unregister CUDA shared memory region '" + req.name() +
                         "': GPUs not supported by this server");
}

}  // namespace flowserve::grpc_frontend
