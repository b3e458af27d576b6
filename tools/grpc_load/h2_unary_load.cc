#include "h2_unary_load.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>

namespace grpc_load {
namespace {

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

nghttp2_nv Header(const char* name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name)),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), std::strlen(name),
          value.size(), NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
}

}  // namespace

struct H2UnaryLoad::Impl {
  struct Call {
    uint64_t start_ns = 0;
    size_t sent = 0;          // bytes of the framed request given to nghttp2
    size_t received = 0;      // bytes of the answer's DATA
    std::string grpc_status;  // from the trailers
    std::string grpc_message;
  };

  std::string host;
  int port = 0;
  std::string framed;  // the 5-byte gRPC prefix and the message
  std::string authority;
  int concurrency = 1;
  int fd = -1;
  nghttp2_session* session = nullptr;
  std::vector<Call> calls;  // one per slot; a slot's stream carries its index
  std::thread thread;
  std::atomic<bool> measuring{false};
  std::atomic<bool> stopping{false};
  int in_flight = 0;  // driver thread only
  std::vector<std::vector<uint32_t>> latencies;
  std::atomic<uint64_t> errors{0};
  mutable std::mutex mu;  // first_error, and the results once the thread has ended
  std::string first_error;
  bool broken = false;  // the connection failed: the driver stops
  std::string out;      // frames not yet written to the socket

  // Writes what the socket takes of `out`; false when the connection failed.
  bool Flush() {
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        Fail("cannot write to the server: " + std::string(std::strerror(errno)));
        return false;
      }
    }
    out.erase(0, done);
    return true;
  }

  void Fail(const std::string& why) {
    if (errors.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lock(mu);
      first_error = why;
    }
  }

  bool Submit(size_t slot) {
    Call& c = calls[slot];
    c = Call{};
    c.start_ns = NowNs();
    static const std::string kPost = "POST", kHttp = "http",
                             kPath = "/inference.GRPCInferenceService/ModelInfer",
                             kGrpc = "application/grpc", kTrailers = "trailers";
    const nghttp2_nv headers[] = {Header(":method", kPost),      Header(":scheme", kHttp),
                                  Header(":path", kPath),        Header(":authority", authority),
                                  Header("content-type", kGrpc), Header("te", kTrailers)};
    nghttp2_data_provider body{};
    body.read_callback = [](nghttp2_session* s, int32_t stream, uint8_t* buf, size_t length,
                            uint32_t* flags, nghttp2_data_source*, void* user) -> ssize_t {
      auto* self = static_cast<Impl*>(user);
      auto slot = reinterpret_cast<uintptr_t>(nghttp2_session_get_stream_user_data(s, stream));
      Call& call = self->calls[slot];
      const size_t n = std::min(length, self->framed.size() - call.sent);
      std::memcpy(buf, self->framed.data() + call.sent, n);
      call.sent += n;
      if (call.sent == self->framed.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    const int32_t id =
        nghttp2_submit_request(session, nullptr, headers, sizeof(headers) / sizeof(headers[0]),
                               &body, reinterpret_cast<void*>(static_cast<uintptr_t>(slot)));
    if (id < 0) {
      Fail(std::string("submit: ") + nghttp2_strerror(id));
      return false;
    }
    ++in_flight;
    return true;
  }

  void Closed(size_t slot, uint32_t error_code) {
    --in_flight;
    Call& c = calls[slot];
    if (error_code != 0) {
      Fail("stream reset: " + std::string(nghttp2_http2_strerror(error_code)));
    } else if (c.grpc_status != "0") {
      Fail("grpc-status " + c.grpc_status + ": " + c.grpc_message);
    } else if (c.received <= 5) {
      Fail("an answer without a message");
    } else if (measuring.load(std::memory_order_relaxed)) {
      latencies[slot].push_back(static_cast<uint32_t>((NowNs() - c.start_ns) / 1000));
    }
    if (!stopping.load(std::memory_order_relaxed)) Submit(slot);
  }

  void Drive() {
    for (size_t i = 0; i < calls.size(); ++i) Submit(i);
    uint8_t buf[64 << 10];
    uint64_t stop_by = 0;  // once stopping: how long the calls in flight may take
    while (!broken && (in_flight > 0 || !stopping.load())) {
      if (stopping.load()) {
        if (stop_by == 0) stop_by = NowNs() + 10'000'000'000ULL;
        if (NowNs() > stop_by) {
          Fail("calls still unanswered 10 s after the end");
          break;
        }
      }
      if (nghttp2_session_send(session) != 0 || !Flush()) break;
      pollfd p{fd, POLLIN, 0};
      if (!out.empty()) p.events |= POLLOUT;
      if (poll(&p, 1, 100) < 0 && errno != EINTR) break;
      if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
          if (nghttp2_session_mem_recv(session, buf, static_cast<size_t>(n)) < 0) {
            Fail("bad HTTP/2 from the server");
            broken = true;
            break;
          }
          // A short read took all there was: poll says when more comes, without a recv
          // that would only fail with EAGAIN.
          if (static_cast<size_t>(n) < sizeof(buf)) break;
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == EINTR) continue;
        Fail("connection closed by the server");
        broken = true;
        break;
      }
    }
  }
};

H2UnaryLoad::H2UnaryLoad(std::string host, int port, std::string message, int concurrency)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->authority = impl_->host + ":" + std::to_string(port);
  const uint32_t length = htonl(static_cast<uint32_t>(message.size()));
  impl_->framed.assign(1, '\0');
  impl_->framed.append(reinterpret_cast<const char*>(&length), 4);
  impl_->framed += message;
  impl_->concurrency = concurrency;
  impl_->calls.resize(static_cast<size_t>(concurrency));
  impl_->latencies.resize(static_cast<size_t>(concurrency));
  for (auto& l : impl_->latencies) l.reserve(1 << 16);
}

H2UnaryLoad::~H2UnaryLoad() {
  Stop();
  if (impl_->session) nghttp2_session_del(impl_->session);
  if (impl_->fd >= 0) ::close(impl_->fd);
}

bool H2UnaryLoad::Start(std::string* error) {
  Impl& m = *impl_;
  addrinfo hints{}, *found = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(m.host.c_str(), std::to_string(m.port).c_str(), &hints, &found) != 0 || !found) {
    *error = "cannot resolve " + m.host;
    return false;
  }
  m.fd = ::socket(found->ai_family, SOCK_STREAM, 0);
  const bool connected = m.fd >= 0 && ::connect(m.fd, found->ai_addr, found->ai_addrlen) == 0;
  freeaddrinfo(found);
  if (!connected) {
    *error = "cannot connect to " + m.authority + ": " + std::strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(m.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fcntl(m.fd, F_SETFL, fcntl(m.fd, F_GETFL) | O_NONBLOCK);

  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_send_callback(
      cb, [](nghttp2_session*, const uint8_t* data, size_t length, int, void* user) -> ssize_t {
        // Gathered, and written with one send per turn (Flush): nghttp2 hands over each
        // frame on its own, and a send per frame is a TCP segment per frame on both sides.
        auto* self = static_cast<Impl*>(user);
        if (self->out.size() > (1 << 20)) return NGHTTP2_ERR_WOULDBLOCK;
        self->out.append(reinterpret_cast<const char*>(data), length);
        return static_cast<ssize_t>(length);
      });
  nghttp2_session_callbacks_set_on_header_callback(
      cb,
      [](nghttp2_session* s, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
         const uint8_t* value, size_t valuelen, uint8_t, void* user) -> int {
        auto* self = static_cast<Impl*>(user);
        auto slot = reinterpret_cast<uintptr_t>(
            nghttp2_session_get_stream_user_data(s, frame->hd.stream_id));
        const std::string_view n(reinterpret_cast<const char*>(name), namelen);
        const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
        if (n == "grpc-status") self->calls[slot].grpc_status = v;
        if (n == "grpc-message") self->calls[slot].grpc_message = v;
        return 0;
      });
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cb,
      [](nghttp2_session* s, uint8_t, int32_t stream, const uint8_t*, size_t length,
         void* user) -> int {
        auto slot = reinterpret_cast<uintptr_t>(nghttp2_session_get_stream_user_data(s, stream));
        static_cast<Impl*>(user)->calls[slot].received += length;
        return 0;
      });
  nghttp2_session_callbacks_set_on_stream_close_callback(
      cb, [](nghttp2_session* s, int32_t stream, uint32_t error_code, void* user) -> int {
        auto slot = reinterpret_cast<uintptr_t>(nghttp2_session_get_stream_user_data(s, stream));
        static_cast<Impl*>(user)->Closed(slot, error_code);
        return 0;
      });
  nghttp2_session_client_new(&m.session, cb, &m);
  nghttp2_session_callbacks_del(cb);
  // Windows wide enough that flow control never paces the calls.
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24},
                                             {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_submit_settings(m.session, NGHTTP2_FLAG_NONE, settings, 2);
  nghttp2_session_set_local_window_size(m.session, NGHTTP2_FLAG_NONE, 0, 1 << 30);
  m.thread = std::thread([&m] { m.Drive(); });
  return true;
}

void H2UnaryLoad::SetMeasuring(bool on) { impl_->measuring.store(on); }

void H2UnaryLoad::Stop() {
  impl_->stopping.store(true);
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::vector<uint32_t> H2UnaryLoad::Latencies() const {
  std::vector<uint32_t> all;
  for (const auto& l : impl_->latencies) all.insert(all.end(), l.begin(), l.end());
  return all;
}

uint64_t H2UnaryLoad::errors() const { return impl_->errors.load(); }

std::string H2UnaryLoad::first_error() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->first_error;
}

}  // namespace grpc_load
