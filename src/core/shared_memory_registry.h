#pragma once
// Triton's system shared memory extension: named regions of POSIX shared memory objects
// (shm_open(key) + mmap) that clients register once and then name in their requests,
// so tensors travel through the region instead of the socket.
//
// Lifetime: a region is mapped when registered. Unregistering removes its name at once
// (new requests naming it fail with NotFound) but does not wait: every request that
// resolved the region holds a shared_ptr to it, and the mapping is unmapped only when
// the last of them ends. A request in flight therefore never sees a dangling mapping,
// and unregister never blocks on a slow model.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve {

class SharedMemoryRegion {
 public:
  // Opens `key`, checks that [offset, offset + byte_size) lies inside the object and maps
  // that range read-write.
  static Result<std::shared_ptr<SharedMemoryRegion>> Map(const std::string& name,
                                                         const std::string& key, uint64_t offset,
                                                         uint64_t byte_size);
  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  const std::string& name() const { return name_; }
  const std::string& key() const { return key_; }
  uint64_t offset() const { return offset_; }
  uint64_t byte_size() const { return byte_size_; }
  // The region's first byte (the object's byte at `offset`).
  char* data() const { return data_; }

 private:
  SharedMemoryRegion() = default;

  std::string name_, key_;
  uint64_t offset_ = 0, byte_size_ = 0;
  void* mapping_ = nullptr;  // page-aligned start of the mmap
  size_t mapping_length_ = 0;
  char* data_ = nullptr;
};

struct SharedMemoryRegionInfo {
  std::string name, key;
  uint64_t offset = 0, byte_size = 0;
};

class SharedMemoryRegistry {
 public:
  // AlreadyExists for a name in use; InvalidArgument when the key cannot be opened or the
  // range does not fit the object.
  Status Register(const std::string& name, const std::string& key, uint64_t offset,
                  uint64_t byte_size);
  // NotFound for a name that is not registered.
  Status Unregister(const std::string& name);
  void UnregisterAll();
  // Every region (sorted by name) when `name` is empty, else that one (NotFound if absent).
  Result<std::vector<SharedMemoryRegionInfo>> List(const std::string& name) const;
  // NotFound naming the region when it is not registered.
  Result<std::shared_ptr<const SharedMemoryRegion>> Find(const std::string& name) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const SharedMemoryRegion>> regions_;
};

}  // namespace flowserve
