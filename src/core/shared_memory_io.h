#pragma once
// Tensors that live in registered system shared memory: an input points straight at the
// region's bytes (no copy; the tensor's owner keeps the mapping alive), an output is
// written into its region when the response is ready and travels without data.
// Protocol-free: each frontend reads the three parameters (shared_memory_region,
// shared_memory_offset, shared_memory_byte_size) from its own wire form into a
// SharedMemoryRef.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "core/inference_response.h"

namespace flowserve {

class SharedMemoryRegion;
class SharedMemoryRegistry;

struct SharedMemoryRef {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// An output the client asked to receive in shared memory; holds its region mapped.
struct SharedMemoryOutput {
  std::string name;
  std::shared_ptr<const SharedMemoryRegion> region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// Points `tensor` (name, dtype and shape already set) at the referenced bytes. Errors
// name the tensor: unknown region, offset or size outside it, or a byte size that does
// not match the tensor's shape.
Status BindSharedMemoryInput(const SharedMemoryRegistry& registry, const SharedMemoryRef& ref,
                             Tensor& tensor);

// Resolves and bounds-checks the region an output is to be written to.
Result<SharedMemoryOutput> ReserveSharedMemoryOutput(const SharedMemoryRegistry& registry,
                                                     const std::string& output,
                                                     const SharedMemoryRef& ref);

// Copies every listed output of `response` into its region. InvalidArgument when an
// output is larger than the room the request gave it.
Status WriteSharedMemoryOutputs(const std::vector<SharedMemoryOutput>& outputs,
                                const InferenceResponse& response);

const SharedMemoryOutput* FindSharedMemoryOutput(const std::vector<SharedMemoryOutput>& outputs,
                                                 const std::string& name);

}  // namespace flowserve
