#pragma once
// Memory another process can map: a buffer backed by a memfd. Large request bodies are
// read into one, so that a backend running models in a process of its own (Python) hands
// that process the descriptor instead of copying the tensors' bytes. Buffers are pooled:
// a fresh one costs a page fault per 4 KiB on both sides, a reused one none.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "common/status.h"

namespace flowserve {

class ShareableBuffer {
 public:
  // A buffer of at least `size` bytes plus one (a NUL may follow the last byte), from the
  // pool when an idle one fits. The last owner's release hands it back.
  static Result<std::shared_ptr<ShareableBuffer>> Acquire(size_t size);

  ShareableBuffer(const ShareableBuffer&) = delete;
  ShareableBuffer& operator=(const ShareableBuffer&) = delete;
  ~ShareableBuffer();

  char* data() const { return base_; }
  size_t capacity() const { return capacity_; }  // the memfd's (and mapping's) length
  int fd() const { return fd_; }
  // Names the memfd for this process's lifetime: a peer that mapped it once may keep the
  // mapping while the id stays in use, across reuses of the buffer.
  uint64_t id() const { return id_; }

 private:
  friend class ShareableBufferPool;
  ShareableBuffer(char* base, size_t capacity, int fd, uint64_t id)
      : base_(base), capacity_(capacity), fd_(fd), id_(id) {}
  char* base_;
  size_t capacity_;
  int fd_;
  uint64_t id_;
};

// The buffer in use that holds [data, data + size), and where in it: how a backend finds
// out that a tensor can travel as a descriptor. nullopt for any other memory.
struct ShareableSpan {
  std::shared_ptr<ShareableBuffer> buffer;
  size_t offset = 0;
};
std::optional<ShareableSpan> FindShareable(const void* data, size_t size);

// Whether a buffer with this id still exists (in use or idle in the pool): a peer that
// mapped it may drop its mapping once it does not.
bool ShareableBufferAlive(uint64_t id);
// How many buffers the pool has freed so far: a peer that mapped some need only look
// them up again (ShareableBufferAlive) when this moved.
uint64_t ShareableBuffersFreed();

}  // namespace flowserve
