#pragma once
// One HTTP/2 connection of the nghttp2 gRPC engine, owned by one loop thread: the socket
// (plain or TLS), the nghttp2 server session, gRPC's length-prefixed messages on each
// stream, the trailers, and HTTP/2 keepalive as grpc does it (pings, ping strikes,
// connection age). What a call does with its messages is an H2Call (h2_calls.cc).
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frontends/grpc/grpc_server.h"

namespace grpc {
class ChannelInterface;
}

namespace flowserve::grpc_frontend {

class H2Connection;
class H2Loop;
struct H2Stream;
using H2Clock = std::chrono::steady_clock;

// What every connection of one listener shares.
struct H2Context {
  InferenceServer* server = nullptr;
  GrpcOptions options;
  std::shared_ptr<const ApiAuth> auth;  // null when nothing is restricted
  // The grpc++ service behind an in-process channel: every RPC but the inference ones.
  std::shared_ptr<grpc::ChannelInterface> forward;
  SSL_CTX* ssl = nullptr;  // null: plaintext
  // Requests handed to the core and not answered yet (Stop waits for them).
  std::atomic<int64_t> calls_in_core{0};
};

// What a method does with the messages of its stream. Runs on the loop thread.
class H2Call {
 public:
  virtual ~H2Call() = default;
  virtual void OnMessage(H2Connection& c, H2Stream& s, std::string_view message) = 0;
  // The client half-closed the stream (it sends nothing more).
  virtual void OnHalfClose(H2Connection& c, H2Stream& s) = 0;
};

// The call for a stream whose request headers arrived; null when the stream was already
// answered (an unknown content-type, a refusal).
std::unique_ptr<H2Call> MakeH2Call(H2Connection& c, H2Stream& s);

struct H2Stream {
  int32_t id = 0;
  std::string path, content_type;
  std::vector<std::pair<std::string, std::string>> metadata;  // forwarded as it came
  size_t metadata_bytes = 0;
  int64_t timeout_us = 0;  // grpc-timeout; 0 = none
  std::unique_ptr<H2Call> call;
  std::string partial;  // a message not received whole yet
  bool remote_closed = false;
  // Answer: headers go with the first message (or alone with the status: Trailers-Only).
  bool headers_sent = false, finishing = false, finished = false;
  int status = 0;
  std::string message;
  std::string out;  // framed messages not yet taken by nghttp2
  size_t out_off = 0;
  bool deferred = false;
};

class H2Connection {
 public:
  H2Connection(H2Loop* loop, uint64_t id, int fd, SSL* ssl);
  ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  bool Init();
  // epoll events; false: close the connection now.
  bool OnEvent(uint32_t events);
  // Timers due by `now`; false: close now. next_deadline() says when to call again.
  bool OnTimer(H2Clock::time_point now);
  H2Clock::time_point next_deadline() const { return next_deadline_; }
  // Sends GOAWAY; the connection closes once its streams are done.
  void Drain();
  // Hands nghttp2's output to the socket; false: close now.
  bool Flush();

  // The stream API the calls use (loop thread only).
  H2Stream* stream(int32_t id);
  void SendMessage(H2Stream& s, std::string framed);
  void Finish(H2Stream& s, int grpc_code, std::string_view message);

  uint64_t id() const { return id_; }
  H2Loop* loop() const { return loop_; }
  H2Context& ctx() const;
  size_t active_streams() const { return streams_.size(); }

 private:
  friend struct H2Callbacks;
  bool Handshake();
  bool ReadSome();
  bool WriteOut();
  void StartCall(H2Stream& s);
  void HalfClose(H2Stream& s);
  void Deframe(H2Stream& s, const uint8_t* data, size_t len);
  bool CheckPrefix(H2Stream& s, uint8_t compressed, uint32_t size, size_t max);
  void StartResponse(H2Stream& s);
  void SubmitTrailers(H2Stream& s);
  void Rearm();
  void OnDataSent();
  bool OnPingReceived();

  H2Loop* loop_;
  uint64_t id_;
  int fd_;
  SSL* ssl_;  // null: plaintext
  bool handshaking_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<H2Stream>> streams_;
  std::string wbuf_;  // bytes for the socket
  size_t wbuf_off_ = 0;
  bool want_write_ = false;
  bool draining_ = false, closing_ = false;
  int answered_unflushed_ = 0;  // answers submitted since the last Flush

  // Keepalive (grpc's semantics: see GrpcOptions).
  H2Clock::time_point created_, next_deadline_;
  H2Clock::time_point next_ping_, ping_ack_deadline_, last_ping_recv_;
  bool ping_outstanding_ = false, have_ping_recv_ = false;
  int ping_strikes_ = 0, pings_without_data_ = 0;
  int keepalive_ms_ = 0;
  bool age_goaway_sent_ = false;
  H2Clock::time_point age_close_;
};

// A message with gRPC's 5-byte prefix (uncompressed), `size` bytes of room for the body.
std::string FrameMessage(size_t size);

}  // namespace flowserve::grpc_frontend
