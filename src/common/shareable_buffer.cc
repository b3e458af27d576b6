#include "common/shareable_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace flowserve {

// Every buffer, in use or idle, by its base address; idle ones are kept for reuse up to
// a bound, so that a stream of large requests does not fault in fresh pages each time
// (on this side and in every process that maps them).
class ShareableBufferPool {
 public:
  static constexpr size_t kMaxIdle = 8;
  static constexpr size_t kMaxIdleBytes = 64u << 20;

  static ShareableBufferPool& Get() {
    static auto* pool = new ShareableBufferPool();  // never destroyed: buffers outlive main
    return *pool;
  }

  Result<std::shared_ptr<ShareableBuffer>> Acquire(size_t size) {
    const size_t need = size + 1;
    ShareableBuffer* buf = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The smallest idle buffer that fits and is not much larger: a small body must not
      // hold a large buffer another request could use.
      auto best = idle_.end();
      for (auto it = idle_.begin(); it != idle_.end(); ++it) {
        const size_t cap = (*it)->capacity();
        if (cap >= need && cap <= 2 * need && (best == idle_.end() || cap < (*best)->capacity()))
          best = it;
      }
      if (best != idle_.end()) {
        buf = *best;
        idle_bytes_ -= buf->capacity();
        idle_.erase(best);
      }
    }
    if (buf == nullptr) {
      auto created = Create(RoundUp(need));
      if (!created.ok()) return created.status();
      buf = created.value();
    }
    std::shared_ptr<ShareableBuffer> handed(buf, [](ShareableBuffer* b) { Get().Release(b); });
    std::lock_guard<std::mutex> lock(mu_);
    live_[reinterpret_cast<uintptr_t>(buf->data())].handed = handed;
    return handed;
  }

  std::optional<ShareableSpan> Find(const void* data, size_t size) {
    const auto p = reinterpret_cast<uintptr_t>(data);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.upper_bound(p);
    if (it == live_.begin()) return std::nullopt;
    --it;
    const uintptr_t base = it->first;
    const size_t cap = it->second.buffer->capacity();
    if (p - base > cap || size > cap - (p - base)) return std::nullopt;
    auto owner = it->second.handed.lock();
    if (!owner) return std::nullopt;  // idle: nothing of it is in use
    return ShareableSpan{std::move(owner), static_cast<size_t>(p - base)};
  }

  uint64_t Freed() const { return freed_.load(std::memory_order_acquire); }

  bool Alive(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [_, e] : live_)
      if (e.buffer->id() == id) return true;
    return false;
  }

 private:
  struct Entry {
    ShareableBuffer* buffer;
    std::weak_ptr<ShareableBuffer> handed;  // expired while idle
  };

  // Up to 1/8 of waste: a 4 MiB tensor and its JSON header fit a 4.5 MiB buffer that a
  // slightly different request reuses.
  static size_t RoundUp(size_t n) {
    size_t step = 64u << 10;
    while (step * 16 < n) step *= 2;
    return (n + step - 1) / step * step;
  }

  Result<ShareableBuffer*> Create(size_t capacity) {
    const int fd = memfd_create("flowserve-body", MFD_CLOEXEC);
    if (fd < 0) return Internal(std::string("memfd_create: ") + std::strerror(errno));
    if (ftruncate(fd, static_cast<off_t>(capacity)) != 0) {
      const int err = errno;
      close(fd);
      return Status(StatusCode::kResourceExhausted,
                    "cannot allocate " + std::to_string(capacity) +
                        " bytes of shared memory: " + std::strerror(err));
    }
    void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      close(fd);
      return Status(StatusCode::kResourceExhausted,
                    "cannot map " + std::to_string(capacity) +
                        " bytes of shared memory: " + std::strerror(err));
    }
    auto* buf = new ShareableBuffer(static_cast<char*>(p), capacity, fd, next_id_++);
    std::lock_guard<std::mutex> lock(mu_);
    live_[reinterpret_cast<uintptr_t>(p)] = Entry{buf, {}};
    return buf;
  }

  // The released buffer stays idle; the least recently used idle ones go if the pool is
  // over its bounds. (Dropping the released one instead would make a stream of bodies of a
  // new size create and map a buffer per request once the pool is full of other sizes.)
  void Release(ShareableBuffer* buf) {
    std::vector<ShareableBuffer*> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(buf);  // the back is the most recently used
      idle_bytes_ += buf->capacity();
      while (idle_.size() > kMaxIdle || (idle_bytes_ > kMaxIdleBytes && idle_.size() > 1)) {
        ShareableBuffer* old = idle_.front();
        idle_.erase(idle_.begin());
        idle_bytes_ -= old->capacity();
        live_.erase(reinterpret_cast<uintptr_t>(old->data()));
        evicted.push_back(old);
      }
      if (idle_bytes_ > kMaxIdleBytes) {  // one buffer over the bound alone
        idle_.clear();
        idle_bytes_ = 0;
        live_.erase(reinterpret_cast<uintptr_t>(buf->data()));
        evicted.push_back(buf);
      }
    }
    freed_.fetch_add(evicted.size(), std::memory_order_release);
    for (ShareableBuffer* b : evicted) delete b;
  }

  std::mutex mu_;
  std::map<uintptr_t, Entry> live_;
  std::vector<ShareableBuffer*> idle_;
  size_t idle_bytes_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<uint64_t> freed_{0};
};

ShareableBuffer::~ShareableBuffer() {
  munmap(base_, capacity_);
  close(fd_);
}

Result<std::shared_ptr<ShareableBuffer>> ShareableBuffer::Acquire(size_t size) {
  return ShareableBufferPool::Get().Acquire(size);
}

std::optional<ShareableSpan> FindShareable(const void* data, size_t size) {
  return ShareableBufferPool::Get().Find(data, size);
}

bool ShareableBufferAlive(uint64_t id) { return ShareableBufferPool::Get().Alive(id); }

uint64_t ShareableBuffersFreed() { return ShareableBufferPool::Get().Freed(); }

}  // namespace flowserve
