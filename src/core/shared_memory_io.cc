#include "core/shared_memory_io.h"

#include <cstring>

#include "core/shared_memory_registry.h"

namespace flowserve {
namespace {

// The referenced slice of a registered region, bounds-checked.
Result<std::shared_ptr<const SharedMemoryRegion>> Resolve(const SharedMemoryRegistry& registry,
                                                          const std::string& what,
                                                          const SharedMemoryRef& ref) {
  auto region = registry.Find(ref.region);
  if (!region.ok()) return region.status().WithContext(what + ": ");
  const uint64_t size = (*region)->byte_size();
  if (ref.offset >= size) {
    return InvalidArgument(what + ": shared_memory_offset " + std::to_string(ref.offset) +
                           " is outside system shared memory region '" + ref.region + "' (" +
                           std::to_string(size) + " bytes)");
  }
  if (ref.byte_size > size - ref.offset) {
    return InvalidArgument(what + ": shared_memory_offset " + std::to_string(ref.offset) +
                           " + shared_memory_byte_size " + std::to_string(ref.byte_size) +
                           " is past the end of system shared memory region '" + ref.region +
                           "' (" + std::to_string(size) + " bytes)");
  }
  return region;
}

}  // namespace

Status BindSharedMemoryInput(const SharedMemoryRegistry& registry, const SharedMemoryRef& ref,
                             Tensor& tensor) {
  const std::string what = "input '" + tensor.name + "'";
  auto region = Resolve(registry, what, ref);
  if (!region.ok()) return region.status();
  const char* data = (*region)->data() + ref.offset;
  const int64_t count = ElementCount(tensor.shape);
  if (tensor.dtype == DataType::kBytes) {
    if (count < 0 || !ValidateBytesBuffer(data, ref.byte_size, count)) {
      return InvalidArgument(what + ": shared_memory_byte_size " + std::to_string(ref.byte_size) +
                             " does not hold exactly " + std::to_string(count) +
                             " length-prefixed BYTES elements for shape " +
                             ShapeString(tensor.shape));
    }
  } else {
    const uint64_t elem = DataTypeSize(tensor.dtype);
    const bool addressable =
        count >= 0 && (elem == 0 || static_cast<uint64_t>(count) <= UINT64_MAX / elem);
    const uint64_t expected = addressable ? static_cast<uint64_t>(count) * elem : 0;
    if (!addressable || ref.byte_size != expected) {
      return InvalidArgument(what + ": shared_memory_byte_size " + std::to_string(ref.byte_size) +
                             " does not match shape " + ShapeString(tensor.shape) + " of " +
                             std::string(DataTypeName(tensor.dtype)) + ", expected " +
                             std::to_string(expected) + " bytes");
    }
  }
  tensor.data = data;
  tensor.byte_size = ref.byte_size;
  tensor.owner = std::move(region).value();
  return Status::Ok();
}

Result<SharedMemoryOutput> ReserveSharedMemoryOutput(const SharedMemoryRegistry& registry,
                                                     const std::string& output,
                                                     const SharedMemoryRef& ref) {
  auto region = Resolve(registry, "output '" + output + "'", ref);
  if (!region.ok()) return region.status();
  return SharedMemoryOutput{output, std::move(region).value(), ref.offset, ref.byte_size};
}

Status WriteSharedMemoryOutputs(const std::vector<SharedMemoryOutput>& outputs,
                                const InferenceResponse& response) {
  for (const SharedMemoryOutput& o : outputs) {
    const Tensor* t = nullptr;
    for (const auto& candidate : response.outputs)
      if (candidate.name == o.name) t = &candidate;
    if (t == nullptr) continue;
    if (t->byte_size > o.byte_size) {
      return InvalidArgument("output '" + o.name + "': shared_memory_byte_size " +
                             std::to_string(o.byte_size) + " in region '" + o.region->name() +
                             "' is too small for the result, which needs " +
                             std::to_string(t->byte_size) + " bytes");
    }
    char* dst = o.region->data() + o.offset;
    // The output may already be the region's bytes (an identity model reading and
    // writing the same slice), or overlap them.
    if (t->byte_size > 0 && dst != t->data) std::memmove(dst, t->data, t->byte_size);
  }
  return Status::Ok();
}

const SharedMemoryOutput* FindSharedMemoryOutput(const std::vector<SharedMemoryOutput>& outputs,
                                                 const std::string& name) {
  for (const auto& o : outputs)
    if (o.name == name) return &o;
  return nullptr;
}

}  // namespace flowserve
