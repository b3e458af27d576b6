#pragma once
// One I/O thread of the nghttp2 gRPC engine: an epoll loop that accepts from the shared
// listening socket and owns the connections it accepted. Work from other threads (core
// completions, forwarded calls' answers) arrives through Post and one eventfd wake-up
// per batch; work already on this thread runs at once.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "frontends/grpc/h2_connection.h"

namespace flowserve::grpc_frontend {

class H2Loop : public std::enable_shared_from_this<H2Loop> {
 public:
  H2Loop(H2Context* ctx, int listen_fd);
  ~H2Loop();

  Status Start();
  // Runs `fn` on the loop thread with connection `conn` if it is still open; dropped
  // when the connection or the loop is gone.
  void RunOn(uint64_t conn, std::function<void(H2Connection&)> fn);
  // Stops accepting and sends GOAWAY on every connection; they close when done.
  void BeginDrain();
  size_t open_connections() const { return open_.load(std::memory_order_acquire); }
  void StopAndJoin();

  H2Context& ctx() const { return *ctx_; }
  void WantWrite(uint64_t conn, int fd, bool on);
  void ArmTimer(H2Clock::time_point t);

 private:
  void Run();
  void Accept();
  void RunPosted();
  void CheckTimers();
  void Close(uint64_t id);
  void FlushOrClose(uint64_t id);
  void Post(std::function<void()> fn);
  bool OnLoopThread() const;

  H2Context* ctx_;
  int listen_fd_;
  int epoll_fd_ = -1, event_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool accepting_ = true;
  uint64_t next_id_ = 2;  // 0: the listener, 1: the eventfd
  std::unordered_map<uint64_t, std::unique_ptr<H2Connection>> conns_;
  std::atomic<size_t> open_{0};
  H2Clock::time_point next_timer_ = H2Clock::time_point::max();

  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
  bool wake_pending_ = false;
};

}  // namespace flowserve::grpc_frontend
