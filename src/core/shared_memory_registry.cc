#include "core/shared_memory_registry.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace flowserve {
namespace {

Status RegisterError(const std::string& name, const std::string& why) {
  return InvalidArgument("failed to register system shared memory region '" + name + "': " + why);
}

}  // namespace

Result<std::shared_ptr<SharedMemoryRegion>> SharedMemoryRegion::Map(const std::string& name,
                                                                    const std::string& key,
                                                                    uint64_t offset,
                                                                    uint64_t byte_size) {
  if (key.empty()) return RegisterError(name, "'key' is empty");
  if (byte_size == 0) return RegisterError(name, "'byte_size' must be greater than 0");
  if (offset > UINT64_MAX - byte_size) {
    return RegisterError(name, "offset " + std::to_string(offset) + " + byte_size " +
                                   std::to_string(byte_size) + " overflows");
  }
  int fd = shm_open(key.c_str(), O_RDWR, 0);
  if (fd < 0) {
    const int err = errno;
    return RegisterError(name,
                         "unable to open shared memory key '" + key + "': " + std::strerror(err));
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return RegisterError(name,
                         "unable to stat shared memory key '" + key + "': " + std::strerror(err));
  }
  const uint64_t object_size = st.st_size < 0 ? 0 : static_cast<uint64_t>(st.st_size);
  if (offset + byte_size > object_size) {
    close(fd);
    return RegisterError(name, "offset " + std::to_string(offset) + " + byte_size " +
                                   std::to_string(byte_size) + " is past the end of key '" + key +
                                   "' (" + std::to_string(object_size) + " bytes)");
  }
  // mmap wants a page-aligned file offset: map from the page holding `offset`.
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t aligned = offset - offset % page;
  const size_t length = static_cast<size_t>(offset - aligned + byte_size);
  void* mapping =
      mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(aligned));
  const int map_err = errno;
  close(fd);  // the mapping keeps the object alive
  if (mapping == MAP_FAILED) {
    return RegisterError(
        name, "unable to map shared memory key '" + key + "': " + std::strerror(map_err));
  }
  std::shared_ptr<SharedMemoryRegion> region(new SharedMemoryRegion());
  region->name_ = name;
  region->key_ = key;
  region->offset_ = offset;
  region->byte_size_ = byte_size;
  region->mapping_ = mapping;
  region->mapping_length_ = length;
  region->data_ = static_cast<char*>(mapping) + (offset - aligned);
  return region;
}

SharedMemoryRegion::~SharedMemoryRegion() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_length_);
}

Status SharedMemoryRegistry::Register(const std::string& name, const std::string& key,
                                      uint64_t offset, uint64_t byte_size) {
  if (name.empty()) return InvalidArgument("a system shared memory region needs a name");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.count(name)) {
      return Status(StatusCode::kAlreadyExists,
                    "system shared memory region '" + name + "' is already registered");
    }
  }
  // Mapped outside the lock: opening a key must not hold up requests resolving regions.
  auto region = SharedMemoryRegion::Map(name, key, offset, byte_size);
  if (!region.ok()) return region.status();
  std::lock_guard<std::mutex> lock(mu_);
  if (!regions_.emplace(name, std::move(region).value()).second) {
    return Status(StatusCode::kAlreadyExists,
                  "system shared memory region '" + name + "' is already registered");
  }
  return Status::Ok();
}

Status SharedMemoryRegistry::Unregister(const std::string& name) {
  std::shared_ptr<const SharedMemoryRegion> dropped;  // unmapped outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return NotFound("unable to find system shared memory region: '" + name + "'");
  }
  dropped = std::move(it->second);
  regions_.erase(it);
  return Status::Ok();
}

void SharedMemoryRegistry::UnregisterAll() {
  std::map<std::string, std::shared_ptr<const SharedMemoryRegion>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  dropped.swap(regions_);
}

Result<std::vector<SharedMemoryRegionInfo>> SharedMemoryRegistry::List(
    const std::string& name) const {
  std::vector<SharedMemoryRegionInfo> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [n, r] : regions_) {
    if (!name.empty() && n != name) continue;
    out.push_back({r->name(), r->key(), r->offset(), r->byte_size()});
  }
  if (!name.empty() && out.empty()) {
    return NotFound("unable to find system shared memory region: '" + name + "'");
  }
  return out;
}

Result<std::shared_ptr<const SharedMemoryRegion>> SharedMemoryRegistry::Find(
    const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return NotFound("unable to find system shared memory region: '" + name + "'");
  }
  return it->second;
}

}  // namespace flowserve
