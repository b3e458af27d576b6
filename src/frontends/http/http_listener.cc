#include "frontends/http/http_listener.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/adaptive_spin.h"
#include "common/client_activity.h"
#include "common/logging.h"
#include "common/readiness_watch.h"
#include "common/shareable_buffer.h"
#include "common/wake_batch.h"
#include "frontends/http/beast.h"
#include "frontends/http/quiet_read.h"

namespace flowserve {

using namespace http_detail;  // NOLINT: the Boost aliases of this folder

std::string_view HttpReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 499:
      return "Client Closed Request";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

std::string_view HttpRequest::header(std::string_view name) const {
  const auto* fields = static_cast<const bhttp::fields*>(fields_);
  if (fields == nullptr) return {};
  auto it = fields->find(name);
  return it == fields->end() ? std::string_view() : it->value();
}

namespace {

// Guards posting into the I/O contexts from foreign threads: once the listener is gone,
// a late answer (a model finishing after shutdown) is dropped instead of touching freed
// event loops.
struct Lifeline {
  std::mutex mu;
  bool alive = true;
};

class Session;

// The event loop the current thread runs, if it is one of the listeners' I/O threads.
thread_local const asio::io_context* t_running_context = nullptr;

// Lingering close (as nginx does it) after an answer given before the request was read to
// its end: closing a socket with unread bytes makes the kernel send a reset, which can
// destroy the answer before the client reads it. So the write side is shut (the client
// sees the answer, then end of stream) and what the client still sends is read and
// dropped, for at most this long and this much, before the socket is closed.
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr size_t kLingerMaxBytes = 64 << 20;
constexpr size_t kLingerChunk = 64 << 10;
// Room for a request's first read: a small request (header and a JSON body) arrives whole.
constexpr size_t kFirstReadSize = 8 << 10;
// Bodies from this size on are read into shareable memory (common/shareable_buffer.h):
// a backend in another process then maps the tensors instead of copying them, and the
// bytes go from the socket straight to their place (Beast would copy them once more).
constexpr uint64_t kShareableBodyMin = 64 << 10;

}  // namespace

// Per I/O thread: descriptors a backend waits on without blocking the thread (an
// out-of-process model's reply). A pending wait is work, so the loop outlives it.
class LoopReadinessWatch : public ReadinessWatch {
 public:
  explicit LoopReadinessWatch(asio::io_context& ctx) : ctx_(ctx) {}

  void WhenReadable(int fd, std::function<void()> ready) override {
    auto owned = std::make_unique<Waiting>(ctx_, fd, std::move(ready));
    Waiting* w = owned.get();
    waiting_.emplace(w, std::move(owned));
    w->descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                             [this, w](beast::error_code) { Fire(w); });
  }

  // Once the loop's thread has ended: whatever still waits runs now, on this thread.
  void RunAbandoned() {
    while (!waiting_.empty()) Fire(waiting_.begin()->first);
  }

 private:
  struct Waiting {
    Waiting(asio::io_context& ctx, int fd, std::function<void()> f)
        : descriptor(ctx, fd), ready(std::move(f)) {}
    asio::posix::stream_descriptor descriptor;
    std::function<void()> ready;
  };

  void Fire(Waiting* w) {
    auto node = waiting_.extract(w);
    if (node.empty()) return;             // run already (an abandoned wait's handler, cancelled)
    node.mapped()->descriptor.release();  // the descriptor stays the caller's
    std::function<void()> ready = std::move(node.mapped()->ready);
    node.mapped().reset();
    // Inside the turn's scope: the requests its answers let in (read at once, as the
    // clients send the next) join the turn's batch, instead of each waking an instance
    // thread. What blocks in it pauses the scope itself (a backend's waiting Execute).
    ready();
  }

  asio::io_context& ctx_;
  std::unordered_map<Waiting*, std::unique_ptr<Waiting>> waiting_;
};

struct HttpListener::Impl {
  HttpListenerOptions options;
  HttpHandler handler;
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::optional<tcp::acceptor> acceptor;
  tcp protocol = tcp::v4();
  int port = 0;
  std::atomic<bool> stopping{false};
  bool stopped = false;  // guarded by stop_mu
  std::mutex stop_mu;
  // One per context, so that the two I/O threads never share the reference count or
  // the lock (every answer copies its context's).
  std::vector<std::shared_ptr<Lifeline>> lifelines;
  // Sessions are owned here, one map per context, touched only by that context's thread
  // (and by the destructor once the threads are joined). Answers in flight hold weak
  // references, so nothing outlives the event loops.
  std::vector<std::unordered_map<Session*, std::shared_ptr<Session>>> sessions;
  // Per context: requests handed to the handler and not answered yet (thread-confined).
  struct alignas(64) Awaiting {
    int count = 0;
  };
  std::vector<Awaiting> awaiting;
  std::vector<std::unique_ptr<LoopReadinessWatch>> watches;  // per context
  // At most one I/O thread spins at a time: on a small machine a second spinner would
  // take the core the model's thread needs to produce the answer.
  std::atomic<bool> spinning{false};
  std::mutex count_mu;
  std::condition_variable count_cv;
  int session_count = 0;
  // Accepted and not yet closed, counted from the acceptor so a flood is refused before a
  // session exists.
  std::atomic<int> connections{0};

  // Per context: its connections, and how many of them it should hand to another thread
  // at their next request boundary (set by the balancer's tick, taken by the thread).
  struct alignas(64) Load {
    std::atomic<int> connections{0};
    std::atomic<int> shed{0};
  };
  std::unique_ptr<Load[]> load;
  std::unique_ptr<IoThreadBalancer> balancer;
  std::optional<asio::steady_timer> balance_timer;  // on context 0

  std::atomic<bool> refused_logged{false};
  // The shortest of the idle, request and linger timeouts: how far ahead a session's
  // timer is set at most (see Session::SetDeadline).
  std::chrono::steady_clock::duration shortest_timeout{};

  void Accept();
  void Refuse(tcp::socket s);
  void Run(size_t ctx_index);
  void AddSession(size_t ctx_index, tcp::socket socket);
  void RemoveSession(size_t ctx_index, Session* s);
  size_t LeastLoaded(int active) const;
  void ScheduleBalance();
  void Balance();
  int TakeMoveTarget(size_t from);
  void MoveSession(size_t from, Session* s, size_t to, tcp::socket::native_handle_type fd);
  void AdoptSession(size_t ctx_index, tcp::socket socket);
};

namespace {

using Clock = std::chrono::steady_clock;
constexpr Clock::time_point kNoDeadline = Clock::time_point::max();

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpListener::Impl* impl, size_t ctx_index, tcp::socket socket)
      : impl_(impl),
        ctx_index_(ctx_index),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()) {}

  void Start() { ReadHeader(); }

  // Closes the connection if it is waiting for a request; a connection whose request is
  // being answered closes after writing it (Write checks `stopping`).
  void CloseIfIdle() {
    if (state_ == State::kReading) Close();
  }
  void Close() {
    if (closed_) return;
    closed_ = true;
    SetAwaiting(false);
    deadline_ = kNoDeadline;
    timer_.cancel();
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    impl_->RemoveSession(ctx_index_, this);  // may drop the last owner: touch nothing after
  }

 private:
  enum class State { kReading, kHandling, kWriting, kLingering };

  void ReadHeader() {
    state_ = State::kReading;
    parser_.emplace();
    parser_->body_limit(impl_->options.max_body_size);
    parser_->header_limit(
        static_cast<std::uint32_t>(std::min<size_t>(impl_->options.max_header_size, UINT32_MAX)));
    started_ = false;
    linger_ = false;
    if (buffer_.size() > 0) return StartRequest();  // pipelined: already begun
    // Wait for the first bytes under the idle timeout; the request timeout starts then.
    // A read, not a wait for readability: Asio re-registers the socket with epoll_ctl
    // for every wait, but a read simply queues until epoll reports data.
    ArmTimer(impl_->options.idle_timeout_ms);
    const bool may_have_data = !socket_empty_ && MayHaveData(socket_);
    if (may_have_data && !reading_directly_) {
      // The socket may hold a request (a new connection, news since the last read emptied
      // it, a request read through Beast): look, as Asio's first try would. What is there
      // is answered in this call; recursion is one level deep (see the flag). An answer
      // from another thread or a later turn finds the socket known empty, mostly: its
      // client is only now being answered.
      beast::error_code ec;
      if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
      const size_t n = ec ? 0 : socket_.read_some(buffer_.prepare(kFirstReadSize), ec);
      if (!ec) {
        buffer_.commit(n);
        const auto self = shared_from_this();  // the request may close the session
        reading_directly_ = true;
        OnFirstBytes(n, /*socket_was_emptied=*/n < kFirstReadSize);
        reading_directly_ = false;
        return;
      }
      if (ec != asio::error::would_block) return OnReadError(ec);
      socket_empty_ = true;
    }
    // The socket was found empty in this very call, or is known empty since: the next
    // request's event is still to come, so the read waits for it without a recv that would
    // fail (quiet_read.h). Each keep-alive request then costs one recv, made when its data
    // is there.
    const bool quiet = (socket_empty_ || !may_have_data) && kCanSkipSpeculativeRead;
    socket_empty_ = false;
    if (quiet) SkipNextSpeculativeRead(socket_);
    socket_.async_read_some(buffer_.prepare(kFirstReadSize),
                            [self = shared_from_this(), quiet](beast::error_code ec, size_t n) {
                              self->buffer_.commit(n);
                              if (ec) return self->OnReadError(ec);
                              // A quiet read is made by the reactor when the socket's
                              // event comes, and completes within that call (the session
                              // has no other operation on the socket): as fresh as a
                              // direct read.
                              self->OnFirstBytes(n, quiet && n < kFirstReadSize);
                            });
  }

  // `socket_was_emptied`: the read that brought these bytes took all the socket held,
  // within the current handler call. Until the call returns no epoll event can be taken
  // on this thread, so a reply written within it may wait quietly for the next request.
  void OnFirstBytes(size_t, bool socket_was_emptied) {
    socket_empty_ = socket_was_emptied;
    // Remembered by the reactor until the socket's next event, so that a reply written
    // turns later still knows (MayHaveData).
    if (socket_was_emptied) SkipNextSpeculativeRead(socket_);
    StartRequest();
    socket_empty_ = false;
  }

  void StartRequest() {
    started_ = true;
    ArmTimer(impl_->options.request_timeout_ms);
    // A keep-alive request usually arrives whole in one read: parsed here, it skips Beast's
    // composed read (and the post that completes it without I/O).
    beast::error_code ec = ParseBuffered(/*whole=*/false);
    if (ec != bhttp::error::need_more) return OnHeader(ec);
    bhttp::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  // Feeds the parser what the buffer holds, until the header (or `whole`: the message)
  // is in. need_more when the buffer runs out first.
  beast::error_code ParseBuffered(bool whole) {
    beast::error_code ec;
    while (buffer_.size() > 0) {
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec) return ec;
      if (whole ? parser_->is_done() : parser_->is_header_done()) return ec;
      if (used == 0) break;
    }
    if (whole ? parser_->is_done() : parser_->is_header_done()) return ec;
    return bhttp::error::need_more;
  }

  // A deadline for the read in progress (0: none); a later ArmTimer, Disarm or Close
  // supersedes it.
  void ArmTimer(int ms) {
    SetDeadline(ms <= 0 ? kNoDeadline : Clock::now() + std::chrono::milliseconds(ms));
  }
  void Disarm() { deadline_ = kNoDeadline; }

  // The deadline is a field that moves with every request; the timer is set again only
  // when it must fire earlier than it is set to. A wait that fires before the deadline
  // sleeps again until it, one that finds no deadline ends. So a busy keep-alive
  // connection costs no timer system call per request (a timerfd update plus a cancelled
  // wait per deadline was a visible share of a small request's CPU).
  void SetDeadline(Clock::time_point at) {
    deadline_ = at;
    if (at == kNoDeadline || timer_at_ <= at) return;
    // Waits start at most the shortest timeout ahead, so that the next deadline, set
    // later and at least that far off, finds the wait early enough.
    StartWait(std::min(at, Clock::now() + impl_->shortest_timeout));
  }
  void StartWait(Clock::time_point at) {
    timer_at_ = at;
    const uint64_t generation = ++wait_generation_;
    timer_.expires_at(at);  // a wait set for later ends as aborted, with a stale generation
    timer_.async_wait(
        [self = shared_from_this(), generation](beast::error_code) { self->OnTimer(generation); });
  }
  void OnTimer(uint64_t generation) {
    if (generation != wait_generation_) return;
    timer_at_ = kNoDeadline;
    if (closed_ || deadline_ == kNoDeadline) return;
    if (Clock::now() < deadline_) return StartWait(deadline_);
    deadline_ = kNoDeadline;
    if (state_ == State::kLingering) return Close();
    if (state_ != State::kReading) return;
    // Fails the pending read; OnReadError answers 408 if a request had begun.
    timed_out_ = true;
    beast::error_code ignored;
    socket_.cancel(ignored);
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    if (impl_->options.precheck) {
      auto& head = parser_->get();
      HttpRequest request;
      static const auto kNoBody = std::make_shared<std::string>();
      FillHttpRequest(request, head.method_string(), head.target(),
                      static_cast<const bhttp::fields*>(&head), kNoBody);
      if (std::optional<HttpReply> refusal = impl_->options.precheck(request)) {
        // The unread body would be taken for the next request: close after answering.
        keep_alive_ = parser_->is_done() && head.keep_alive();
        linger_ = !parser_->is_done();
        http10_ = head.version() == 10;
        head_only_ = head.method() == bhttp::verb::head;
        return Write(std::move(*refusal));
      }
    }
    if (parser_->is_done()) return OnRequest();
    auto& msg = parser_->get();
    if (beast::iequals(msg[bhttp::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (const auto length = parser_->content_length();
        length && *length >= kShareableBodyMin && *length <= impl_->options.max_body_size) {
      auto buf = ShareableBuffer::Acquire(*length);
      if (buf.ok()) return ReadShareableBody(std::move(buf).value(), *length);
      // No shared memory to be had: the body goes to the heap as any other.
    }
    if (beast::error_code ec = ParseBuffered(/*whole=*/true); ec != bhttp::error::need_more) {
      if (ec) return OnReadError(ec);
      return OnRequest();
    }
    // Beast reads no more than the buffer's spare capacity (512 bytes at least): a body
    // would cost a recv and an epoll turn per 512 bytes (9 for a 4 KB tensor, 1200 for
    // 600 KB). So the buffer gets room for the body, up to 256 KB at a time; room beyond
    // 16 KB is given back once the body is in, so idle connections stay small.
    const auto length = parser_->content_length();
    const size_t room =
        length ? static_cast<size_t>(std::min<uint64_t>(*length + buffer_.size() + 512, 256 * 1024))
               : 0;
    const bool grown = room > 16 * 1024;
    if (room > buffer_.capacity()) buffer_.reserve(room);
    bhttp::async_read(socket_, buffer_, *parser_,
                      [self = shared_from_this(), grown](beast::error_code ec, size_t) {
                        if (grown) self->buffer_.shrink_to_fit();
                        if (ec) return self->OnReadError(ec);
                        self->OnRequest();
                      });
  }

  // The parser has the header; the body's first bytes may sit in buffer_ (and bytes of a
  // pipelined request after them, which stay there).
  void ReadShareableBody(std::shared_ptr<ShareableBuffer> buf, size_t length) {
    const auto buffered = buffer_.data();
    const size_t have = std::min(length, buffered.size());
    std::memcpy(buf->data(), buffered.data(), have);
    buffer_.consume(have);
    if (have == length) return OnRequest(std::move(buf), length);
    char* rest = buf->data() + have;
    asio::async_read(socket_, asio::buffer(rest, length - have),
                     [self = shared_from_this(), buf = std::move(buf), length](beast::error_code ec,
                                                                               size_t) mutable {
                       if (ec) return self->OnReadError(ec);
                       self->OnRequest(std::move(buf), length);
                     });
  }

  void OnReadError(beast::error_code ec) {
    if (closed_) return;
    if (timed_out_) {
      if (!started_) return Close();  // idle keep-alive connection: nothing to answer
      // No lingering here: a client this slow has had its time (as nginx, which does not
      // even answer), and slow-trickling clients must not hold connections longer.
      return WriteError(408,
                        "the request did not arrive within " +
                            std::to_string(impl_->options.request_timeout_ms) + " ms",
                        /*linger=*/false);
    }
    // A client that sends garbage or too much gets told why before the connection closes.
    if (ec == bhttp::error::body_limit) {
      return WriteError(413, "request body exceeds the limit of " +
                                 std::to_string(impl_->options.max_body_size) + " bytes");
    }
    if (ec == bhttp::error::header_limit) {
      return WriteError(431, "request header exceeds the limit of " +
                                 std::to_string(impl_->options.max_header_size) + " bytes");
    }
    bool protocol_error =
        &ec.category() == &bhttp::make_error_code(bhttp::error::bad_target).category();
    if (protocol_error && ec != bhttp::error::end_of_stream &&
        ec != bhttp::error::partial_message) {
      return WriteError(400, "malformed HTTP request: " + ec.message());
    }
    Close();
  }

  // Only for requests that failed while being read: the rest of them is never read, so
  // the connection closes after the answer, lingeringly unless `linger` is false.
  void WriteError(int status, std::string message, bool linger = true) {
    keep_alive_ = false;
    linger_ = linger;
    HttpReply reply;
    reply.status = status;
    std::string escaped;
    for (char c : message) {
      if (c == '"' || c == '\\') escaped += '\\';
      escaped += c;
    }
    reply.body = "{\"error\":\"" + escaped + "\"}";
    Write(std::move(reply));
  }

  void SetAwaiting(bool on) {
    if (on == awaiting_) return;
    awaiting_ = on;
    impl_->awaiting[ctx_index_].count += on ? 1 : -1;
  }

  // `shareable`: the body, `length` bytes, read there instead of into the parser's.
  void OnRequest(std::shared_ptr<ShareableBuffer> shareable = nullptr, size_t length = 0) {
    NoteRequestFrom(reinterpret_cast<uintptr_t>(this));
    state_ = State::kHandling;
    Disarm();
    SetAwaiting(true);
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    http10_ = msg.version() == 10;
    head_only_ = msg.method() == bhttp::verb::head;

    HttpRequest request;
    if (shareable) {
      char* data = shareable->data();
      data[length] = '\0';
      FillHttpRequest(request, msg.method_string(), msg.target(),
                      static_cast<const bhttp::fields*>(&msg), data, length, std::move(shareable));
    } else {
      FillHttpRequest(request, msg.method_string(), msg.target(),
                      static_cast<const bhttp::fields*>(&msg),
                      std::make_shared<std::string>(std::move(msg.body())));
    }

    in_handler_ = true;
    impl_->handler(request, MakeRespond());
    in_handler_ = false;
    if (stashed_) {
      HttpReply reply = std::move(*stashed_);
      stashed_.reset();
      Write(std::move(reply));
    }
  }

  HttpRespond MakeRespond() {
    return [weak = weak_from_this(), life = impl_->lifelines[ctx_index_],
            ctx = impl_->contexts[ctx_index_].get()](HttpReply reply) {
      std::shared_ptr<Session> self;
      if (t_running_context == ctx) {
        // On the connection's own thread the listener is alive (Stop joins this thread
        // before anything is freed): no lock.
        self = weak.lock();
        if (!self) return;
      } else {
        std::lock_guard<std::mutex> lock(life->mu);
        if (!life->alive) return;
        self = weak.lock();
        if (!self) return;
        // The one hand-off back to the connection's thread.
        asio::post(*ctx,
                   [self, reply = std::move(reply)]() mutable { self->Write(std::move(reply)); });
        return;
      }
      // Answered on the connection's own thread: no hand-off at all. Inside the handler
      // the write waits until the handler returns, so the session is never re-entered.
      if (self->in_handler_) {
        self->stashed_ = std::move(reply);
      } else {
        self->Write(std::move(reply));
      }
    };
  }

  void Write(HttpReply reply) {
    if (closed_) return;
    SetAwaiting(false);
    state_ = State::kWriting;
    Disarm();
    if (impl_->stopping.load(std::memory_order_relaxed)) keep_alive_ = false;
    reply_ = std::move(reply);

    size_t length = reply_.body.size();
    for (const auto& c : reply_.chunks) length += c.size;
    head_.clear();
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(reply_.status);
    head_ += ' ';
    head_ += HttpReasonPhrase(reply_.status);
    head_ += "\r\nServer: flowserve\r\n";
    if (!reply_.content_type.empty()) {
      head_ += "Content-Type: ";
      head_ += reply_.content_type;
      head_ += "\r\n";
    }
    head_ += "Content-Length: ";
    head_ += std::to_string(length);
    head_ += "\r\n";
    for (const auto& [k, v] : reply_.headers) {
      head_ += k;
      head_ += ": ";
      head_ += v;
      head_ += "\r\n";
    }
    if (!keep_alive_) {
      head_ += "Connection: close\r\n";
    } else if (http10_) {
      head_ += "Connection: keep-alive\r\n";
    }
    head_ += "\r\n";

    buffers_.clear();
    // Small bodies ride in the head's buffer: one contiguous write, fewer iovecs.
    if (reply_.body.size() <= 1024 && !head_only_) {
      head_ += reply_.body;
      buffers_.emplace_back(head_.data(), head_.size());
    } else {
      buffers_.emplace_back(head_.data(), head_.size());
      if (!head_only_ && !reply_.body.empty())
        buffers_.emplace_back(reply_.body.data(), reply_.body.size());
    }
    if (!head_only_) {
      for (const auto& c : reply_.chunks)
        if (c.size) buffers_.emplace_back(c.data, c.size);
    }
    // Straight to the socket first: a reply the socket takes whole leaves in one sendmsg
    // and the session reads on without a turn of the event loop. Not with a pipelined
    // request waiting in the buffer, which would be answered inside this call (and the
    // next inside that one): those go through the loop. What the socket does not take
    // now is written asynchronously.
    size_t sent = 0;
    if (buffer_.size() == 0) {
      beast::error_code ec;
      if (!socket_.non_blocking()) socket_.non_blocking(true, ec);
      if (!ec) sent = socket_.write_some(buffers_, ec);
      if (ec && ec != asio::error::would_block) return OnWritten(ec);
      if (!ec && sent == asio::buffer_size(buffers_)) return OnWritten(ec);
      if (ec) sent = 0;
    }
    size_t i = 0;
    while (i < buffers_.size() && sent >= buffers_[i].size()) sent -= buffers_[i++].size();
    buffers_.erase(buffers_.begin(), buffers_.begin() + static_cast<std::ptrdiff_t>(i));
    if (!buffers_.empty()) buffers_.front() += sent;
    asio::async_write(socket_, buffers_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->OnWritten(ec);
    });
  }

  void OnWritten(beast::error_code ec) {
    reply_ = HttpReply();  // release output buffers now, not at the next request
    if (!ec && linger_) return Linger();
    if (ec || !keep_alive_ || impl_->stopping.load(std::memory_order_relaxed)) return Close();
    if (MaybeMove()) return;
    ReadHeader();
  }

  // Between requests, with nothing read ahead, the connection moves to another I/O thread
  // when the balancer asks this one to shed. True: this session is done (and may be gone).
  bool MaybeMove() {
    if (buffer_.size() != 0) return false;
    const int to = impl_->TakeMoveTarget(ctx_index_);
    if (to < 0) return false;
    beast::error_code ec;
    const auto fd = socket_.release(ec);
    if (ec) return false;
    closed_ = true;
    deadline_ = kNoDeadline;
    timer_.cancel();
    impl_->MoveSession(ctx_index_, this, static_cast<size_t>(to), fd);
    return true;
  }

  // See kLingerTime. Bounded in time and bytes, so a client that keeps sending (or never
  // closes) costs at most that; the session still counts against max_connections.
  void Linger() {
    state_ = State::kLingering;
    parser_.reset();  // what was kept of the refused body goes now
    buffer_.consume(buffer_.size());
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Close();
    linger_left_ = kLingerMaxBytes;
    SetDeadline(Clock::now() + kLingerTime);
    Drain();
  }

  void Drain() {
    // Read into the buffer's spare room and never commit it: the bytes are dropped.
    socket_.async_read_some(
        buffer_.prepare(kLingerChunk),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnDrained(ec, n); });
  }

  void OnDrained(beast::error_code ec, size_t n) {
    if (closed_) return;
    // An error here is mostly end of stream: the client has read the answer and closed.
    if (ec || n >= linger_left_) return Close();
    linger_left_ -= n;
    Drain();
  }

  HttpListener::Impl* impl_;
  size_t ctx_index_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  Clock::time_point deadline_ = kNoDeadline;  // of the current read or linger
  Clock::time_point timer_at_ = kNoDeadline;  // when the pending wait fires (none: max)
  uint64_t wait_generation_ = 0;
  bool started_ = false;    // the current request's first byte has arrived
  bool timed_out_ = false;  // the read in progress was cancelled by the timer
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  State state_ = State::kReading;
  bool closed_ = false;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool head_only_ = false;
  bool in_handler_ = false;
  bool awaiting_ = false;
  bool linger_ = false;  // the request is not read to its end: close lingeringly
  // The socket was emptied by a read in the current handler call (see OnFirstBytes).
  bool socket_empty_ = false;
  bool reading_directly_ = false;  // inside ReadHeader's own read: no second one nested
  size_t linger_left_ = 0;
  std::optional<HttpReply> stashed_;
  HttpReply reply_;
  std::string head_;
  std::vector<asio::const_buffer> buffers_;
};

}  // namespace

size_t HttpListener::Impl::LeastLoaded(int active) const {
  size_t best = 0;
  for (size_t i = 1; i < static_cast<size_t>(active) && i < contexts.size(); ++i) {
    if (load[i].connections.load(std::memory_order_relaxed) <
        load[best].connections.load(std::memory_order_relaxed))
      best = i;
  }
  return best;
}

void HttpListener::Impl::Accept() {
  const size_t index = LeastLoaded(balancer->active());
  acceptor->async_accept(*contexts[index], [this, index](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || stopping.load()) return;
    if (ec) {
      // Out of descriptors and the like: keep serving the connections we have.
      FS_LOG_WARNING("HTTP accept failed: {}", ec.message());
    } else if (options.max_connections > 0 &&
               connections.load(std::memory_order_relaxed) >= options.max_connections) {
      Refuse(std::move(s));
    } else {
      connections.fetch_add(1, std::memory_order_relaxed);
      beast::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      asio::post(*contexts[index],
                 [this, index, s = std::move(s)]() mutable { AddSession(index, std::move(s)); });
    }
    Accept();
  });
}

void HttpListener::Impl::Refuse(tcp::socket s) {
  // Best effort and never blocking: a client over the limit is told why if its socket
  // can take the few bytes at once, and is closed either way.
  static const std::string kReply = [] {
    std::string body = "{\"error\":\"too many open connections; retry later\"}";
    return "HTTP/1.1 503 Service Unavailable\r\nServer: flowserve\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
  }();
  beast::error_code ec;
  s.non_blocking(true, ec);
  s.write_some(asio::buffer(kReply), ec);
  s.shutdown(tcp::socket::shutdown_send, ec);
  s.close(ec);
  if (!refused_logged.exchange(true)) {
    FS_LOG_WARNING("HTTP connection limit ({}) reached: refusing new connections",
                   options.max_connections);
  }
}

void HttpListener::Impl::Run(size_t ctx_index) {
  asio::io_context& ctx = *contexts[ctx_index];
  t_running_context = &ctx;
  SetThreadReadinessWatch(watches[ctx_index].get());
  const int& waiting = awaiting[ctx_index].count;
  AdaptiveSpin spin{std::chrono::microseconds(options.spin_us)};
  for (;;) {
    size_t ran = 0;
    {
      // One turn: everything ready now. Requests parsed in it share one wake-up of the
      // thread that executes them.
      WakeBatch batch;
      ran = ctx.poll();
    }
    if (ran > 0) continue;
    if (waiting > 0 && !spinning.exchange(true, std::memory_order_acquire)) {
      // Answers are due from another thread: poll briefly instead of sleeping, since the
      // wake-up of a sleeping (virtual) CPU costs more than a fast model takes to answer.
      WakeBatch batch;
      spin.Spin([&] { return waiting == 0 || (ran = ctx.poll()) > 0; });
      spinning.store(false, std::memory_order_release);
      if (ran > 0) continue;
    }
    WakeBatch batch;
    if (ctx.run_one() == 0) return;  // stopped, or out of work after Stop()
  }
}

void HttpListener::Impl::AddSession(size_t ctx_index, tcp::socket socket) {
  if (stopping.load()) {
    connections.fetch_sub(1, std::memory_order_relaxed);
    return;  // the socket closes as it goes out of scope
  }
  {
    std::lock_guard<std::mutex> lock(count_mu);
    ++session_count;
  }
  load[ctx_index].connections.fetch_add(1, std::memory_order_relaxed);
  AdoptSession(ctx_index, std::move(socket));
}

// A session for a counted connection: a new one, or one moved from another thread.
void HttpListener::Impl::AdoptSession(size_t ctx_index, tcp::socket socket) {
  auto s = std::make_shared<Session>(this, ctx_index, std::move(socket));
  sessions[ctx_index].emplace(s.get(), s);
  if (stopping.load()) return s->Close();  // a move that crossed Stop()
  s->Start();
}

void HttpListener::Impl::RemoveSession(size_t ctx_index, Session* s) {
  if (sessions[ctx_index].erase(s) == 0) return;
  load[ctx_index].connections.fetch_sub(1, std::memory_order_relaxed);
  connections.fetch_sub(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(count_mu);
  if (--session_count == 0) count_cv.notify_all();
}

// Every kBalanceTick the balancer looks at the load, and each thread is told how many of
// its connections to hand over: all of them from a thread that left, the excess over an
// even share from the others (one of slack, so that connections do not shuttle).
constexpr std::chrono::milliseconds kBalanceTick{100};

void HttpListener::Impl::ScheduleBalance() {
  balance_timer->expires_after(kBalanceTick);
  balance_timer->async_wait([this](beast::error_code ec) {
    if (ec || stopping.load()) return;
    Balance();
    ScheduleBalance();
  });
}

void HttpListener::Impl::Balance() {
  const int before = balancer->active();
  const int active = balancer->Tick();
  if (active != before) {
    FS_LOG_VERBOSE(1, "HTTP I/O threads taking connections: {} of {}", active, contexts.size());
  }
  int total = 0;
  for (size_t i = 0; i < contexts.size(); ++i)
    total += load[i].connections.load(std::memory_order_relaxed);
  const int share = (total + active - 1) / active;
  for (size_t i = 0; i < contexts.size(); ++i) {
    const int has = load[i].connections.load(std::memory_order_relaxed);
    const int excess = static_cast<int>(i) < active ? has - share : has;
    load[i].shed.store(std::max(excess, 0), std::memory_order_relaxed);
  }
}

int HttpListener::Impl::TakeMoveTarget(size_t from) {
  // The common case, once per request: one relaxed load.
  const int left = load[from].shed.load(std::memory_order_relaxed);
  if (left <= 0) return -1;
  // Only this thread takes from its count; a tick that overwrites it meanwhile is newer.
  load[from].shed.store(left - 1, std::memory_order_relaxed);
  const size_t to = LeastLoaded(balancer->active());
  if (to == from) return -1;
  return static_cast<int>(to);
}

void HttpListener::Impl::MoveSession(size_t from, Session* s, size_t to,
                                     tcp::socket::native_handle_type fd) {
  load[from].connections.fetch_sub(1, std::memory_order_relaxed);
  load[to].connections.fetch_add(1, std::memory_order_relaxed);
  // Registered with the new thread's reactor here; only that thread uses it from now on.
  tcp::socket moved(*contexts[to]);
  beast::error_code ec;
  moved.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    load[to].connections.fetch_sub(1, std::memory_order_relaxed);
    load[from].connections.fetch_add(1, std::memory_order_relaxed);
    RemoveSession(from, s);
    return;
  }
  asio::post(*contexts[to], [this, to, moved = std::move(moved)]() mutable {
    AdoptSession(to, std::move(moved));
  });
  sessions[from].erase(s);  // may drop the last owner
}

HttpListener::HttpListener(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpListener>> HttpListener::Start(const std::string& address, int port,
                                                          int threads, HttpHandler handler) {
  HttpListenerOptions options;
  options.address = address;
  options.port = port;
  options.threads = threads;
  return Start(options, std::move(handler));
}

Result<std::unique_ptr<HttpListener>> HttpListener::Start(const HttpListenerOptions& options,
                                                          HttpHandler handler) {
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  int n = options.threads < 1 ? 1 : options.threads;
  for (int i = 0; i < n; ++i) {
    // One event loop per thread: a connection lives on one thread, so its handlers never
    // need a strand, and posting an answer wakes exactly the thread that owns it.
    impl->contexts.push_back(std::make_unique<asio::io_context>(1));
    impl->guards.push_back(asio::make_work_guard(*impl->contexts.back()));
    impl->watches.push_back(std::make_unique<LoopReadinessWatch>(*impl->contexts.back()));
  }
  impl->sessions.resize(n);
  impl->load = std::make_unique<Impl::Load[]>(static_cast<size_t>(n));
  impl->balancer = std::make_unique<IoThreadBalancer>(n, options.io_balance);
  for (int i = 0; i < n; ++i) impl->lifelines.push_back(std::make_shared<Lifeline>());
  impl->awaiting.resize(n);
  impl->shortest_timeout = kLingerTime;
  for (int ms : {options.idle_timeout_ms, options.request_timeout_ms}) {
    if (ms > 0)
      impl->shortest_timeout = std::min<std::chrono::steady_clock::duration>(
          impl->shortest_timeout, std::chrono::milliseconds(ms));
  }

  beast::error_code ec;
  auto addr = asio::ip::make_address(options.address, ec);
  if (ec) {
    return InvalidArgument("invalid HTTP address '" + options.address + "': " + ec.message());
  }
  if (options.port < 0 || options.port > 65535) {
    return InvalidArgument("invalid HTTP port " + std::to_string(options.port));
  }
  tcp::endpoint endpoint(addr, static_cast<unsigned short>(options.port));
  impl->acceptor.emplace(*impl->contexts[0]);
  auto fail = [&](const char* what) {
    return Status(StatusCode::kUnavailable, std::string("cannot ") + what + " HTTP endpoint " +
                                                options.address + ":" +
                                                std::to_string(options.port) + ": " + ec.message());
  };
  impl->acceptor->open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  impl->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  impl->acceptor->bind(endpoint, ec);
  if (ec) return fail("bind");
  impl->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on");
  impl->port = impl->acceptor->local_endpoint().port();
  impl->protocol = endpoint.protocol();

  impl->Accept();
  for (int i = 0; i < n; ++i) {
    Impl* raw = impl.get();
    impl->threads.emplace_back([raw, i] { raw->Run(i); });
  }
  if (n > 1) {
    std::vector<clockid_t> clocks;
    for (auto& t : impl->threads) {
      clockid_t clock{};
      // Without a thread's CPU clock it reads as always busy: the threads then join
      // whenever the machine has an idle core, close to an even split.
      if (pthread_getcpuclockid(t.native_handle(), &clock) != 0) clock = CLOCK_MONOTONIC;
      clocks.push_back(clock);
    }
    impl->balancer->SetThreadClocks(std::move(clocks));
    impl->balance_timer.emplace(*impl->contexts[0]);
    asio::post(*impl->contexts[0], [raw = impl.get()] { raw->ScheduleBalance(); });
  }
  return std::unique_ptr<HttpListener>(new HttpListener(std::move(impl)));
}

int HttpListener::port() const { return impl_->port; }

void HttpListener::Stop() {
  Impl* impl = impl_.get();
  {
    std::lock_guard<std::mutex> lock(impl->stop_mu);
    if (impl->stopped) return;
    impl->stopped = true;
  }
  impl->stopping.store(true);
  asio::post(*impl->contexts[0], [impl] {
    beast::error_code ec;
    impl->acceptor->close(ec);
    if (impl->balance_timer) impl->balance_timer->cancel();
  });
  auto close_sessions = [impl](bool all) {
    for (size_t i = 0; i < impl->contexts.size(); ++i) {
      asio::post(*impl->contexts[i], [impl, i, all] {
        std::vector<std::shared_ptr<Session>> list;
        for (auto& [p, s] : impl->sessions[i]) list.push_back(s);
        for (auto& s : list) all ? s->Close() : s->CloseIfIdle();
      });
    }
  };
  close_sessions(false);
  {
    std::unique_lock<std::mutex> lock(impl->count_mu);
    impl->count_cv.wait_for(lock, std::chrono::milliseconds(impl->options.stop_grace_ms),
                            [impl] { return impl->session_count == 0; });
  }
  close_sessions(true);
  // With every socket closed and the guards gone, each loop runs out of work and returns.
  for (auto& g : impl->guards) g.reset();
  for (auto& t : impl->threads) t.join();
  impl->threads.clear();
  {
    for (auto& life : impl->lifelines) {
      std::lock_guard<std::mutex> lock(life->mu);
      life->alive = false;
    }
  }
}

HttpListener::~HttpListener() {
  Stop();
  // Threads are joined: the session maps may be cleared from here.
  for (auto& w : impl_->watches) w->RunAbandoned();
  for (auto& m : impl_->sessions) m.clear();
  impl_->acceptor.reset();
}

}  // namespace flowserve
