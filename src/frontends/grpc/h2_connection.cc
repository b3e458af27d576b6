#include "frontends/grpc/h2_connection.h"

#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/logging.h"
#include "frontends/grpc/h2_loop.h"

namespace flowserve::grpc_frontend {

namespace {

// nghttp2's output is collected up to this much before the socket write.
constexpr size_t kWriteHighWater = 256 * 1024;
// Received bytes are handed to nghttp2 this many at a time; between slices the answers
// ready so far (messages, or statuses without one) are written once there are
// kEarlyFlushAnswers of them (see ReadSome).
constexpr size_t kFeedSlice = 1024;
constexpr int kEarlyFlushAnswers = 2;
// Flow control: a whole 1 MiB tensor may arrive without waiting for WINDOW_UPDATEs
// (nghttp2's default, 64 KiB, costs round trips that grpc's BDP probing would avoid).
constexpr int32_t kStreamWindow = 1 << 20;
constexpr int32_t kConnectionWindow = 16 << 20;
// grpc's default for GRPC_ARG_MAX_METADATA_SIZE.
constexpr size_t kDefaultMaxMetadata = 8192;
// A server's keepalive pings with no call open are not counted against the client
// unless it permits them; grpc uses two hours as "never" here.
constexpr auto kNoCallsPingInterval = std::chrono::hours(2);

nghttp2_nv Header(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself.
std::string PercentEncode(std::string_view in) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (unsigned char c : in) {
    if (c < 0x20 || c > 0x7E || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// grpc-timeout: up to 8 digits and a unit (H M S m u n).
int64_t ParseTimeoutUs(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return 0;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return 0;
    n = n * 10 + (c - '0');
  }
  switch (v.back()) {
    case 'H':
      return n * 3600 * 1000000;
    case 'M':
      return n * 60 * 1000000;
    case 'S':
      return n * 1000000;
    case 'm':
      return n * 1000;
    case 'u':
      return n;
    case 'n':
      return std::max<int64_t>(1, n / 1000);
    default:
      return 0;
  }
}

uint32_t ReadBE32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

}  // namespace

std::string FrameMessage(size_t size) {
  std::string out(5 + size, '\0');
  out[1] = static_cast<char>((size >> 24) & 0xFF);
  out[2] = static_cast<char>((size >> 16) & 0xFF);
  out[3] = static_cast<char>((size >> 8) & 0xFF);
  out[4] = static_cast<char>(size & 0xFF);
  return out;
}

// nghttp2's callbacks, with access to the connection's internals.
struct H2Callbacks {
  static H2Connection& Conn(void* user) { return *static_cast<H2Connection*>(user); }

  static int OnBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    H2Connection& c = Conn(user);
    auto s = std::make_unique<H2Stream>();
    s->id = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(session, s->id, s.get());
    c.streams_[s->id] = std::move(s);
    return 0;
  }

  static int OnHeader(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* n,
                      size_t nlen, const uint8_t* v, size_t vlen, uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto* s =
        static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (s == nullptr) return 0;
    std::string_view name(reinterpret_cast<const char*>(n), nlen);
    std::string_view value(reinterpret_cast<const char*>(v), vlen);
    s->metadata_bytes += nlen + vlen + 32;  // HPACK's accounting, as grpc's limit uses
    if (name == ":path") {
      s->path = value;
    } else if (name == "content-type") {
      s->content_type = value;
    } else if (name == "grpc-timeout") {
      s->timeout_us = ParseTimeoutUs(value);
    } else if (name.empty() || name[0] == ':' || name == "te" || name == "user-agent" ||
               name == "host" || name.substr(0, 5) == "grpc-" || name == "accept-encoding") {
      // Transport headers: grpc's own, not the application's metadata.
    } else if (s->metadata.size() < 256) {
      s->metadata.emplace_back(name, value);
    }
    return 0;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    H2Connection& c = Conn(user);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA: {
        auto* s = static_cast<H2Stream*>(
            nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
        if (s == nullptr) return 0;
        if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
          c.StartCall(*s);
        }
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) c.HalfClose(*s);
        return 0;
      }
      case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
          c.ping_outstanding_ = false;
        } else if (!c.OnPingReceived()) {
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        return 0;
      default:
        return 0;
    }
  }

  static int OnDataChunk(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                         size_t len, void* user) {
    auto* s = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (s == nullptr) return 0;
    Conn(user).Deframe(*s, data, len);
    return 0;
  }

  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
    Conn(user).streams_.erase(stream_id);
    return 0;
  }

  static int OnFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) {
      Conn(user).OnDataSent();
    }
    return 0;
  }

  static ssize_t ReadOut(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                         uint32_t* flags, nghttp2_data_source*, void* user) {
    auto* s = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const size_t n = std::min(length, s->out.size() - s->out_off);
    std::memcpy(buf, s->out.data() + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out.size()) {
      s->out.clear();
      s->out_off = 0;
      if (s->finishing) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        Conn(user).SubmitTrailers(*s);
      } else if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }

  static nghttp2_session_callbacks* Make() {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, OnFrameSend);
    return cb;
  }
};

H2Connection::H2Connection(H2Loop* loop, uint64_t id, int fd, SSL* ssl)
    : loop_(loop), id_(id), fd_(fd), ssl_(ssl), handshaking_(ssl != nullptr) {}

H2Connection::~H2Connection() {
  // Streams first: their calls may still name the session.
  streams_.clear();
  if (session_ != nullptr) nghttp2_session_del(session_);
  if (ssl_ != nullptr) SSL_free(ssl_);
  close(fd_);
}

H2Context& H2Connection::ctx() const { return loop_->ctx(); }

bool H2Connection::Init() {
  static nghttp2_session_callbacks* callbacks = H2Callbacks::Make();
  if (nghttp2_session_server_new(&session_, callbacks, this) != 0) return false;
  const GrpcOptions& o = ctx().options;
  std::vector<nghttp2_settings_entry> settings = {
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow}};
  if (o.max_concurrent_streams > 0) {
    settings.push_back(
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, static_cast<uint32_t>(o.max_concurrent_streams)});
  }
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size()) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow) !=
          0) {
    return false;
  }
  created_ = H2Clock::now();
  keepalive_ms_ = std::max(1, o.keepalive_time_ms);
  next_ping_ = created_ + std::chrono::milliseconds(keepalive_ms_);
  Rearm();
  return true;
}

// ---- socket -------------------------------------------------------------------------

bool H2Connection::OnEvent(uint32_t events) {
  if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN)) return false;
  if (handshaking_) {
    if (!Handshake()) return false;
    if (handshaking_) return true;
    // Application data may have arrived with the handshake's last flight.
    if (!ReadSome()) return false;
  } else if (events & EPOLLIN) {
    if (!ReadSome()) return false;
  }
  return Flush();
}

bool H2Connection::Handshake() {
  ERR_clear_error();
  int r = SSL_accept(ssl_);
  if (r == 1) {
    handshaking_ = false;
    return true;
  }
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      if (want_write_) loop_->WantWrite(id_, fd_, want_write_ = false);
      return true;
    case SSL_ERROR_WANT_WRITE:
      if (!want_write_) loop_->WantWrite(id_, fd_, want_write_ = true);
      return true;
    default:
      // A client without a valid certificate under mutual TLS, a plaintext client...
      FS_LOG_VERBOSE(1, "gRPC TLS handshake failed: {}",
                     ERR_reason_error_string(ERR_peek_error())
                         ? ERR_reason_error_string(ERR_peek_error())
                         : "connection closed");
      return false;
  }
}

bool H2Connection::ReadSome() {
  thread_local uint8_t buf[64 * 1024];
  for (int round = 0; round < 16; ++round) {
    ssize_t n;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r = SSL_read(ssl_, buf, sizeof buf);
      if (r <= 0) {
        int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
        return false;
      }
      n = r;
    } else {
      n = recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    // As grpc: bytes from the peer prove it alive and push the next keepalive ping back.
    ping_outstanding_ = false;
    next_ping_ = H2Clock::now() + std::chrono::milliseconds(keepalive_ms_);
    // Fed in slices, so that answers go out while the rest of the read is worked on: a
    // client with many calls on one connection sends them in one segment, and answering
    // them all at once would keep it waiting for the whole batch, then the server for the
    // client's next one, each side idle half of the time.
    for (size_t off = 0; off < static_cast<size_t>(n);) {
      const size_t slice = std::min(static_cast<size_t>(n) - off, kFeedSlice);
      if (nghttp2_session_mem_recv(session_, buf + off, slice) < 0) return false;
      off += slice;
      if (closing_) return true;
      if (off < static_cast<size_t>(n) && answered_unflushed_ >= kEarlyFlushAnswers && !Flush())
        return false;
    }
    if (static_cast<size_t>(n) < sizeof buf && (ssl_ == nullptr || SSL_pending(ssl_) == 0)) {
      return true;
    }
  }
  return true;
}

bool H2Connection::WriteOut() {
  while (wbuf_off_ < wbuf_.size()) {
    const char* p = wbuf_.data() + wbuf_off_;
    const size_t len = wbuf_.size() - wbuf_off_;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      int r = SSL_write(ssl_, p, static_cast<int>(std::min<size_t>(len, INT32_MAX)));
      if (r <= 0) {
        int e = SSL_get_error(ssl_, r);
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
      }
      wbuf_off_ += static_cast<size_t>(r);
    } else {
      ssize_t r = send(fd_, p, len, MSG_NOSIGNAL);
      if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      wbuf_off_ += static_cast<size_t>(r);
    }
  }
  wbuf_.clear();
  wbuf_off_ = 0;
  return true;
}

bool H2Connection::Flush() {
  if (handshaking_) return true;
  answered_unflushed_ = 0;
  for (;;) {
    while (wbuf_.size() - wbuf_off_ < kWriteHighWater) {
      const uint8_t* data;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) return false;
      if (n == 0) break;
      wbuf_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    if (wbuf_off_ == wbuf_.size()) break;
    if (!WriteOut()) return false;
    if (wbuf_off_ < wbuf_.size() || !nghttp2_session_want_write(session_)) break;
  }
  const bool pending = wbuf_off_ < wbuf_.size();
  if (pending != want_write_) loop_->WantWrite(id_, fd_, want_write_ = pending);
  if (pending) return true;
  if (closing_) return false;
  if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) return false;
  return !(draining_ && streams_.empty());
}

void H2Connection::Drain() {
  if (draining_ || handshaking_) {
    if (handshaking_) closing_ = true;
    return;
  }
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

// ---- keepalive ----------------------------------------------------------------------

void H2Connection::Rearm() {
  const GrpcOptions& o = ctx().options;
  H2Clock::time_point t = next_ping_;
  if (ping_outstanding_) t = std::min(t, ping_ack_deadline_);
  if (o.max_connection_age_ms > 0) {
    t = std::min(t, age_goaway_sent_
                        ? age_close_
                        : created_ + std::chrono::milliseconds(o.max_connection_age_ms));
  }
  next_deadline_ = t;
  loop_->ArmTimer(t);
}

bool H2Connection::OnTimer(H2Clock::time_point now) {
  const GrpcOptions& o = ctx().options;
  if (ping_outstanding_ && now >= ping_ack_deadline_) {
    FS_LOG_VERBOSE(1, "gRPC connection closed: keepalive ping not answered");
    return false;
  }
  if (now >= next_ping_) {
    const bool calls = !streams_.empty() || o.keepalive_permit_without_calls;
    const bool allowed =
        o.http2_max_pings_without_data == 0 || pings_without_data_ < o.http2_max_pings_without_data;
    if (!handshaking_ && !ping_outstanding_ && calls && allowed) {
      nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
      ping_outstanding_ = true;
      ping_ack_deadline_ = now + std::chrono::milliseconds(o.keepalive_timeout_ms);
      ++pings_without_data_;
    }
    next_ping_ = now + std::chrono::milliseconds(keepalive_ms_);
  }
  if (o.max_connection_age_ms > 0) {
    if (!age_goaway_sent_ && now >= created_ + std::chrono::milliseconds(o.max_connection_age_ms)) {
      age_goaway_sent_ = true;
      Drain();
      age_close_ = o.max_connection_age_grace_ms > 0
                       ? now + std::chrono::milliseconds(o.max_connection_age_grace_ms)
                       : H2Clock::time_point::max();
    } else if (age_goaway_sent_ && now >= age_close_) {
      return false;
    }
  }
  Rearm();
  return true;
}

void H2Connection::OnDataSent() {
  // As grpc: sending data or headers resets the ping budget and the abuse clock.
  pings_without_data_ = 0;
  ping_strikes_ = 0;
  have_ping_recv_ = false;
}

bool H2Connection::OnPingReceived() {
  // grpc's ping abuse policy: pings closer together than the permitted interval are
  // strikes; past the limit the client is told to calm down and the connection closes.
  if (closing_) return true;  // GOAWAY already on its way
  const GrpcOptions& o = ctx().options;
  const auto now = H2Clock::now();
  const bool calls = !streams_.empty() || o.keepalive_permit_without_calls;
  const H2Clock::duration interval = calls ? H2Clock::duration(std::chrono::milliseconds(
                                                 o.http2_min_recv_ping_interval_without_data_ms))
                                           : H2Clock::duration(kNoCallsPingInterval);
  if (have_ping_recv_ && now - last_ping_recv_ < interval) {
    ++ping_strikes_;
    if (o.http2_max_ping_strikes > 0 && ping_strikes_ > o.http2_max_ping_strikes) {
      static const char kWhy[] = "too_many_pings";
      nghttp2_submit_goaway(
          session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
          NGHTTP2_ENHANCE_YOUR_CALM, reinterpret_cast<const uint8_t*>(kWhy), sizeof kWhy - 1);
      closing_ = true;
    }
  }
  last_ping_recv_ = now;
  have_ping_recv_ = true;
  return true;
}

// ---- streams ------------------------------------------------------------------------

H2Stream* H2Connection::stream(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Connection::StartCall(H2Stream& s) {
  const size_t limit = ctx().options.max_metadata_bytes > 0
                           ? static_cast<size_t>(ctx().options.max_metadata_bytes)
                           : kDefaultMaxMetadata;
  if (s.metadata_bytes > limit) {
    Finish(s, 8 /* RESOURCE_EXHAUSTED */,
           "received metadata size exceeds limit (" + std::to_string(s.metadata_bytes) + " vs. " +
               std::to_string(limit) + ")");
    return;
  }
  if (s.content_type.rfind("application/grpc", 0) != 0) {
    // Not a gRPC request: grpc answers HTTP 415 so that plain HTTP clients see an error.
    const std::string message =
        PercentEncode("invalid gRPC request content-type '" + s.content_type + "'");
    nghttp2_nv nva[] = {Header(":status", "415"), Header("content-type", "application/grpc"),
                        Header("grpc-status", "3"), Header("grpc-message", message)};
    nghttp2_submit_response(session_, s.id, nva, 4, nullptr);
    s.headers_sent = s.finished = true;
    return;
  }
  s.call = MakeH2Call(*this, s);
}

void H2Connection::HalfClose(H2Stream& s) {
  s.remote_closed = true;
  if (s.finished || s.finishing || !s.call) return;
  if (!s.partial.empty()) {
    Finish(s, 13 /* INTERNAL */, "the request ended inside a message");
    return;
  }
  s.call->OnHalfClose(*this, s);
}

void H2Connection::Deframe(H2Stream& s, const uint8_t* data, size_t len) {
  const size_t max = static_cast<size_t>(ctx().options.max_message_bytes);
  while (len > 0 && !s.finished && !s.finishing && s.call) {
    // The prefix: a compressed flag and the length, big-endian.
    if (s.partial.size() < 5) {
      if (s.partial.empty() && len >= 5) {
        const uint32_t size = ReadBE32(data + 1);
        if (!CheckPrefix(s, data[0], size, max)) return;
        if (len - 5 >= size) {
          // The whole message is in this chunk: parsed where it lies.
          s.call->OnMessage(*this, s,
                            std::string_view(reinterpret_cast<const char*>(data) + 5, size));
          data += 5 + size;
          len -= 5 + size;
          continue;
        }
      }
      const size_t take = std::min(len, 5 - s.partial.size());
      s.partial.append(reinterpret_cast<const char*>(data), take);
      data += take;
      len -= take;
      if (s.partial.size() < 5) return;
      const uint32_t size = ReadBE32(reinterpret_cast<const uint8_t*>(s.partial.data()) + 1);
      if (!CheckPrefix(s, static_cast<uint8_t>(s.partial[0]), size, max)) return;
      s.partial.reserve(5 + size);
    }
    const size_t want = 5 + ReadBE32(reinterpret_cast<const uint8_t*>(s.partial.data()) + 1);
    const size_t take = std::min(len, want - s.partial.size());
    s.partial.append(reinterpret_cast<const char*>(data), take);
    data += take;
    len -= take;
    if (s.partial.size() == want) {
      std::string whole = std::move(s.partial);
      s.partial.clear();
      s.call->OnMessage(*this, s, std::string_view(whole).substr(5));
    }
  }
}

bool H2Connection::CheckPrefix(H2Stream& s, uint8_t compressed, uint32_t size, size_t max) {
  if (size > max) {
    // grpc's words, so clients and tests see the same error from either engine.
    Finish(s, 8 /* RESOURCE_EXHAUSTED */,
           "Received message larger than max (" + std::to_string(size) + " vs. " +
               std::to_string(max) + ")");
    return false;
  }
  if (compressed != 0) {
    Finish(s, 12 /* UNIMPLEMENTED */, "compressed messages are not supported by this server");
    return false;
  }
  return true;
}

void H2Connection::StartResponse(H2Stream& s) {
  nghttp2_nv nva[] = {Header(":status", "200"), Header("content-type", "application/grpc")};
  nghttp2_data_provider provider{};
  provider.read_callback = H2Callbacks::ReadOut;
  s.headers_sent = true;
  if (nghttp2_submit_response(session_, s.id, nva, 2, &provider) != 0) s.finished = true;
}

void H2Connection::SendMessage(H2Stream& s, std::string framed) {
  if (s.finished || s.finishing) return;
  ++answered_unflushed_;
  const size_t size = framed.size() - 5;
  const size_t max = static_cast<size_t>(ctx().options.max_message_bytes);
  if (size > max) {
    Finish(s, 8 /* RESOURCE_EXHAUSTED */,
           "Sent message larger than max (" + std::to_string(size) + " vs. " + std::to_string(max) +
               ")");
    return;
  }
  if (s.out.empty()) {
    s.out = std::move(framed);
  } else {
    s.out += framed;
  }
  if (!s.headers_sent) {
    StartResponse(s);
  } else if (s.deferred) {
    s.deferred = false;
    nghttp2_session_resume_data(session_, s.id);
  }
}

void H2Connection::Finish(H2Stream& s, int grpc_code, std::string_view message) {
  if (s.finished || s.finishing) return;
  if (!s.headers_sent) ++answered_unflushed_;  // an answer without a message
  s.status = grpc_code;
  s.message = PercentEncode(message);
  if (!s.headers_sent) {
    // Trailers-Only: the status in the one HEADERS frame that ends the stream.
    const std::string code = std::to_string(grpc_code);
    nghttp2_nv nva[] = {Header(":status", "200"), Header("content-type", "application/grpc"),
                        Header("grpc-status", code), Header("grpc-message", s.message)};
    nghttp2_submit_response(session_, s.id, nva, s.message.empty() ? 3 : 4, nullptr);
    s.headers_sent = s.finished = true;
    return;
  }
  s.finishing = true;
  if (s.deferred) {
    s.deferred = false;
    nghttp2_session_resume_data(session_, s.id);
  }
}

void H2Connection::SubmitTrailers(H2Stream& s) {
  const std::string code = std::to_string(s.status);
  nghttp2_nv nva[] = {Header("grpc-status", code), Header("grpc-message", s.message)};
  nghttp2_submit_trailer(session_, s.id, nva, s.message.empty() ? 1 : 2);
  s.finished = true;
}

}  // namespace flowserve::grpc_frontend
