#include "frontends/grpc/h2_loop.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/logging.h"

namespace flowserve::grpc_frontend {

namespace {
constexpr uint64_t kListenerId = 0, kEventId = 1;
thread_local const H2Loop* tls_loop = nullptr;
}  // namespace

H2Loop::H2Loop(H2Context* ctx, int listen_fd) : ctx_(ctx), listen_fd_(listen_fd) {}

H2Loop::~H2Loop() {
  StopAndJoin();
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (event_fd_ >= 0) close(event_fd_);
}

Status H2Loop::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || event_fd_ < 0) {
    return Internal(std::string("gRPC I/O thread: ") + std::strerror(errno));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kEventId;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev);
  // Every loop waits on the one listening socket; EPOLLEXCLUSIVE wakes one of them.
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  ev.data.u64 = kListenerId;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
    return Internal(std::string("gRPC I/O thread: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

bool H2Loop::OnLoopThread() const { return tls_loop == this; }

void H2Loop::Post(std::function<void()> fn) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load(std::memory_order_relaxed)) return;
    posted_.push_back(std::move(fn));
    if (!wake_pending_) wake = wake_pending_ = true;
  }
  // One write per batch: later posts before the loop drains the queue ride on it.
  if (wake) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof one);
  }
}

void H2Loop::RunOn(uint64_t conn, std::function<void(H2Connection&)> fn) {
  if (OnLoopThread()) {
    // A completion inside this loop's own event handling (a model run inline): the
    // event's handler flushes once it returns.
    auto it = conns_.find(conn);
    if (it != conns_.end()) fn(*it->second);
    return;
  }
  Post([this, conn, fn = std::move(fn)] {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    fn(*it->second);
    FlushOrClose(conn);
  });
}

void H2Loop::BeginDrain() {
  Post([this] {
    if (accepting_) {
      accepting_ = false;
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    }
    std::vector<uint64_t> ids;
    for (auto& [id, c] : conns_) {
      c->Drain();
      ids.push_back(id);
    }
    for (uint64_t id : ids) FlushOrClose(id);
  });
}

void H2Loop::StopAndJoin() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_relaxed);
  }
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof one);
    thread_.join();
  }
}

void H2Loop::WantWrite(uint64_t conn, int fd, bool on) {
  epoll_event ev{};
  ev.events = on ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.u64 = conn;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void H2Loop::ArmTimer(H2Clock::time_point t) {
  if (t < next_timer_) next_timer_ = t;
}

void H2Loop::Run() {
  tls_loop = this;
  epoll_event events[64];
  while (!stop_.load(std::memory_order_relaxed)) {
    int timeout = -1;
    if (next_timer_ != H2Clock::time_point::max()) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next_timer_ - H2Clock::now())
                    .count();
      timeout = ms < 0 ? 0 : static_cast<int>(std::min<int64_t>(ms + 1, 60000));
    }
    int n = epoll_wait(epoll_fd_, events, 64, timeout);
    if (n < 0 && errno != EINTR) {
      FS_LOG_ERROR("gRPC I/O thread: epoll_wait: {}", std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kListenerId) {
        Accept();
      } else if (id == kEventId) {
        RunPosted();
      } else {
        auto it = conns_.find(id);
        if (it == conns_.end()) continue;
        if (!it->second->OnEvent(events[i].events)) Close(id);
      }
    }
    if (next_timer_ <= H2Clock::now()) CheckTimers();
  }
  conns_.clear();
  open_.store(0, std::memory_order_release);
  tls_loop = nullptr;
}

void H2Loop::Accept() {
  for (int i = 0; i < 16 && accepting_; ++i) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        FS_LOG_WARNING("gRPC accept: {}", std::strerror(errno));
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL* ssl = nullptr;
    if (ctx_->ssl != nullptr) {
      ssl = SSL_new(ctx_->ssl);
      SSL_set_fd(ssl, fd);
      SSL_set_accept_state(ssl);
    }
    const uint64_t id = next_id_++;
    auto conn = std::make_unique<H2Connection>(this, id, fd, ssl);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0 || !conn->Init()) continue;
    conns_.emplace(id, std::move(conn));
    open_.fetch_add(1, std::memory_order_release);
    FlushOrClose(id);
  }
}

void H2Loop::RunPosted() {
  uint64_t count;
  [[maybe_unused]] ssize_t r = read(event_fd_, &count, sizeof count);
  std::vector<std::function<void()>> work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work.swap(posted_);
    wake_pending_ = false;
  }
  for (auto& fn : work) fn();
}

void H2Loop::CheckTimers() {
  const auto now = H2Clock::now();
  next_timer_ = H2Clock::time_point::max();
  std::vector<uint64_t> dead;
  for (auto& [id, c] : conns_) {
    if (c->next_deadline() <= now && (!c->OnTimer(now) || !c->Flush())) {
      dead.push_back(id);
      continue;
    }
    ArmTimer(c->next_deadline());
  }
  for (uint64_t id : dead) Close(id);
}

void H2Loop::FlushOrClose(uint64_t id) {
  auto it = conns_.find(id);
  if (it != conns_.end() && !it->second->Flush()) Close(id);
}

void H2Loop::Close(uint64_t id) {
  if (conns_.erase(id) > 0) open_.fetch_sub(1, std::memory_order_release);
}

}  // namespace flowserve::grpc_frontend
