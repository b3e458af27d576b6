// Shareable buffers (large request bodies a backend's process maps): another mapping of
// the descriptor sees the same bytes, lookups find only buffers in use, and released ones
// are reused under the same id.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "common/shareable_buffer.h"

namespace flowserve {
namespace {

TEST(ShareableBuffer, AnotherMappingOfTheDescriptorSeesTheBytes) {
  auto buf = ShareableBuffer::Acquire(100'000);
  ASSERT_TRUE(buf.ok()) << buf.status().message();
  auto& b = *buf.value();
  ASSERT_GE(b.capacity(), 100'001u);  // room for a NUL after the body
  std::memset(b.data(), 0x5a, 100'000);
  void* other = mmap(nullptr, b.capacity(), PROT_READ, MAP_SHARED, b.fd(), 0);
  ASSERT_NE(other, MAP_FAILED);
  EXPECT_EQ(static_cast<const unsigned char*>(other)[99'999], 0x5a);
  munmap(other, b.capacity());
}

TEST(ShareableBuffer, FindsOnlySpansInsideBuffersInUse) {
  auto held = ShareableBuffer::Acquire(200'000);
  ASSERT_TRUE(held.ok());
  const auto& b = held.value();
  auto span = FindShareable(b->data() + 1000, 5000);
  ASSERT_TRUE(span.has_value());
  EXPECT_EQ(span->buffer.get(), b.get());
  EXPECT_EQ(span->offset, 1000u);
  EXPECT_FALSE(FindShareable(b->data() + b->capacity() - 10, 11).has_value());  // runs past
  std::vector<char> heap(5000);
  EXPECT_FALSE(FindShareable(heap.data(), heap.size()).has_value());

  const uint64_t id = b->id();
  char* data = b->data();
  span.reset();
  held = ShareableBuffer::Acquire(1);  // drops the last owner: the buffer goes idle
  EXPECT_TRUE(ShareableBufferAlive(id));
  EXPECT_FALSE(FindShareable(data, 10).has_value()) << "an idle buffer is nobody's tensor";
}

TEST(ShareableBuffer, ReleasedBuffersAreReusedAndTheRestFreed) {
  // More buffers at once than the pool keeps idle: the extra ones are freed on release.
  std::vector<std::shared_ptr<ShareableBuffer>> held;
  for (int i = 0; i < 12; ++i) {
    auto b = ShareableBuffer::Acquire(3 << 20);
    ASSERT_TRUE(b.ok());
    held.push_back(b.value());
  }
  std::vector<uint64_t> ids;
  for (const auto& b : held) ids.push_back(b->id());
  held.clear();
  int alive = 0;
  for (uint64_t id : ids) alive += ShareableBufferAlive(id) ? 1 : 0;
  EXPECT_GE(alive, 1);
  EXPECT_LE(alive, 8);
  // A body of about the same size gets one of them back, with its id (a process that
  // mapped it keeps its mapping); a much smaller one does not hold a large buffer.
  auto again = ShareableBuffer::Acquire((3 << 20) - 1000);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(std::find(ids.begin(), ids.end(), again.value()->id()), ids.end());
  auto small = ShareableBuffer::Acquire(70'000);
  ASSERT_TRUE(small.ok());
  EXPECT_LT(small.value()->capacity(), 1u << 20);
}

// A pool full of idle buffers of one size still keeps a buffer of a new size for the
// next body of that size (the least recently used idle one goes instead): a process that
// mapped it keeps using its mapping, instead of mapping a new buffer per request.
TEST(ShareableBuffer, ANewSizeIsKeptWhenThePoolIsFull) {
  std::vector<std::shared_ptr<ShareableBuffer>> held;
  for (int i = 0; i < 10; ++i) held.push_back(ShareableBuffer::Acquire(70'000).value());
  held.clear();  // the pool is full of 70 KB buffers now
  uint64_t first = 0;
  for (int i = 0; i < 5; ++i) {
    auto b = ShareableBuffer::Acquire(900'000);
    ASSERT_TRUE(b.ok());
    if (i == 0) first = b.value()->id();
    EXPECT_EQ(b.value()->id(), first) << "request " << i;
  }
}

}  // namespace
}  // namespace flowserve
