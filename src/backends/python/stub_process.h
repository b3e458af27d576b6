#pragma once
// The server's side of one Python stub process: spawning it, the framed control socket
// and the shared memory segments tensors travel through. See stub.py for the frame
// layout; both files must agree.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace flowserve {
namespace python {

// A shared memory segment (a memfd) mapped read-write into this process. Tensors that
// point into it hold a shared_ptr to it, so it stays mapped until the last response
// referencing it is written out.
class Mapping {
 public:
  Mapping(char* base, size_t size) : base_(base), size_(size) {}
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  char* data() const { return base_; }
  size_t size() const { return size_; }

 private:
  char* base_;
  size_t size_;
};

// A new anonymous segment of `size` bytes; `fd` receives its descriptor (to send).
Result<std::shared_ptr<Mapping>> CreateSegment(size_t size, int* fd);
// Maps a received segment (its whole length).
Result<std::shared_ptr<Mapping>> MapSegment(int fd);

// A file descriptor closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// One received frame: the JSON text and the raw tail after it (shared, so tensors can
// point into it without a copy), plus any descriptors that came with it.
struct Frame {
  std::shared_ptr<char[]> payload;
  size_t json_len = 0;
  size_t tail_len = 0;
  std::vector<UniqueFd> fds;
  std::string_view json() const { return {payload.get(), json_len}; }
  const char* tail() const { return payload.get() + json_len; }
};

// A piece of a frame's tail to send without copying it first.
struct Chunk {
  const void* data;
  size_t size;
};

// The control socket. Send is safe from any thread (BLS responses arrive on core
// threads); Receive is called by one thread at a time.
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  Status Send(std::string_view json, std::span<const Chunk> tail = {},
              std::span<const int> fds = {});
  // Waits for the next frame. Unavailable when the peer closed the socket or when
  // `pidfd` (the peer process) becomes readable, i.e. the process exited, with no frame
  // pending; DeadlineExceeded when `deadline` passes first.
  // With `none_yet`: returns Ok at once, *none_yet set, when no frame has begun to arrive.
  Status Receive(Frame& frame, int pidfd,
                 std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt,
                 bool* none_yet = nullptr);
  void Shutdown();
  // Whether a frame (or the peer's close) is waiting; never blocks.
  bool Readable() const;
  int fd() const { return fd_.get(); }  // to wait for readability elsewhere

 private:
  Status WaitReadable(int pidfd,
                      std::optional<std::chrono::steady_clock::time_point> deadline) const;

  UniqueFd fd_;
  std::mutex send_mu_;
};

// A running stub. Destroying it kills and reaps the process if that has not happened.
class StubProcess {
 public:
  // Forks and execs `python -u stub_path 3` with the socket on fd 3. Call it from a thread
  // that outlives the process: PR_SET_PDEATHSIG fires when the forking *thread* exits.
  static Result<std::unique_ptr<StubProcess>> Spawn(const std::string& python,
                                                    const std::string& stub_path);
  ~StubProcess();

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  const std::shared_ptr<Channel>& channel() const { return channel_; }
  // Whether the process has exited (without reaping it).
  bool Exited() const;
  void Kill();  // SIGKILL; reaped later
  // "exited with status 1", "killed by signal 9 (Killed)"; reaps when `reap`. Blocks
  // until the process exits.
  std::string WaitAndDescribe(bool reap);
  // Waits up to `timeout` for the process to exit by itself, then SIGKILLs it; reaps.
  // Returns true when it exited in time.
  bool StopWithin(std::chrono::milliseconds timeout);

 private:
  StubProcess(pid_t pid, int pidfd, int sock)
      : pid_(pid), pidfd_(pidfd), channel_(std::make_shared<Channel>(sock)) {}
  pid_t pid_;
  UniqueFd pidfd_;
  std::shared_ptr<Channel> channel_;
  bool reaped_ = false;
};

// The folder libflowserve_python.so was loaded from (where stub.py sits).
std::string ModuleDirectory();

}  // namespace python
}  // namespace flowserve
