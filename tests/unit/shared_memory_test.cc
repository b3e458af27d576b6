#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "core/shared_memory_io.h"
#include "core/shared_memory_registry.h"

namespace flowserve {
namespace {

// A POSIX shared memory object of `size` bytes, written through its own mapping.
class ShmObject {
 public:
  explicit ShmObject(size_t size)
      : key_("/flowserve-unit-" + std::to_string(getpid()) + "-" + std::to_string(next_++)),
        size_(size) {
    int fd = shm_open(key_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    base_ = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    close(fd);
  }
  ~ShmObject() {
    munmap(base_, size_);
    shm_unlink(key_.c_str());
  }
  const std::string& key() const { return key_; }
  char* base() { return base_; }

 private:
  static inline int next_ = 0;
  std::string key_;
  size_t size_;
  char* base_ = nullptr;
};

Tensor Fp32(const std::string& name, std::vector<int64_t> shape) {
  Tensor t;
  t.name = name;
  t.dtype = DataType::kFp32;
  t.shape = std::move(shape);
  return t;
}

TEST(SharedMemoryRegistry, MapsAnUnalignedOffsetAndReadsInPlace) {
  ShmObject obj(3 * 4096);
  std::strcpy(obj.base() + 5000 + 12, "hello");
  SharedMemoryRegistry reg;
  ASSERT_TRUE(reg.Register("r", obj.key(), 5000, 4096).ok());
  auto region = reg.Find("r");
  ASSERT_TRUE(region.ok());
  EXPECT_STREQ((*region)->data() + 12, "hello");
  // Writes through the server's mapping are seen by the client's.
  (*region)->data()[0] = 'x';
  EXPECT_EQ(obj.base()[5000], 'x');
}

TEST(SharedMemoryRegistry, RefusesBadRegistrations) {
  ShmObject obj(64);
  SharedMemoryRegistry reg;
  EXPECT_EQ(reg.Register("r", "/flowserve-unit-missing", 0, 8).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(reg.Register("r", obj.key(), 60, 8).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reg.Register("r", obj.key(), 0, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reg.Register("", obj.key(), 0, 8).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(reg.Register("r", obj.key(), 0, 64).ok());
  EXPECT_EQ(reg.Register("r", obj.key(), 0, 8).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(reg.Unregister("ghost").code(), StatusCode::kNotFound);
  EXPECT_EQ(reg.List("ghost").status().code(), StatusCode::kNotFound);
}

TEST(SharedMemoryRegistry, UnregisterLeavesTheMappingToItsLastHolder) {
  ShmObject obj(64);
  SharedMemoryRegistry reg;
  ASSERT_TRUE(reg.Register("r", obj.key(), 0, 64).ok());
  Tensor in = Fp32("IN", {4});
  ASSERT_TRUE(BindSharedMemoryInput(reg, {"r", 16, 16}, in).ok());
  ASSERT_TRUE(reg.Unregister("r").ok());
  EXPECT_EQ(reg.Find("r").status().code(), StatusCode::kNotFound);
  // The tensor still reads valid, live memory.
  float v = 2.5f;
  std::memcpy(obj.base() + 16, &v, 4);
  float got;
  std::memcpy(&got, in.data, 4);
  EXPECT_EQ(got, 2.5f);
}

TEST(SharedMemoryIo, ChecksBoundsSizesAndRoomForOutputs) {
  ShmObject obj(64);
  SharedMemoryRegistry reg;
  ASSERT_TRUE(reg.Register("r", obj.key(), 0, 32).ok());
  Tensor t = Fp32("IN", {4});
  EXPECT_EQ(BindSharedMemoryInput(reg, {"ghost", 0, 16}, t).code(), StatusCode::kNotFound);
  EXPECT_EQ(BindSharedMemoryInput(reg, {"r", 32, 16}, t).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BindSharedMemoryInput(reg, {"r", 24, 16}, t).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BindSharedMemoryInput(reg, {"r", 0, 12}, t).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BindSharedMemoryInput(reg, {"r", 0, UINT64_MAX}, t).code(),
            StatusCode::kInvalidArgument);

  auto out = ReserveSharedMemoryOutput(reg, "OUT", {"r", 8, 8});
  ASSERT_TRUE(out.ok());
  InferenceResponse response;
  Tensor result = Fp32("OUT", {2});
  const float values[2] = {1.0f, -3.0f};
  result.data = reinterpret_cast<const char*>(values);
  result.byte_size = 8;
  response.outputs.push_back(result);
  ASSERT_TRUE(WriteSharedMemoryOutputs({*out}, response).ok());
  EXPECT_EQ(std::memcmp(obj.base() + 8, values, 8), 0);
  response.outputs[0].shape = {3};
  response.outputs[0].byte_size = 12;
  EXPECT_EQ(WriteSharedMemoryOutputs({*out}, response).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowserve
