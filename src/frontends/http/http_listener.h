#pragma once
// A small keep-alive HTTP/1.1 server: a pool of I/O threads, each running its own event
// loop, handing every parsed request to one handler that answers whenever it is ready
// (from any thread). Used by the KServe frontend and by the metrics endpoint. No Boost
// types appear here, so users of this header do not compile Asio.
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "frontends/http/io_thread_balancer.h"

namespace flowserve {

class HttpRequest;
// Makes `r` the request in `fields` (the parser's `const boost::beast::http::fields*`,
// opaque here), which must outlive `r`, as must the bytes `method` and `target` view.
// How the listener builds what it hands to the handler; public so that a harness can
// feed a handler without a socket. A null `body` becomes an empty one.
void FillHttpRequest(HttpRequest& r, std::string_view method, std::string_view target,
                     const void* fields, std::shared_ptr<std::string> body);
// The same with a body held elsewhere: `size` bytes at `data`, writable, with room for a
// NUL after them, kept alive by `owner` (a large body read into shareable memory).
void FillHttpRequest(HttpRequest& r, std::string_view method, std::string_view target,
                     const void* fields, char* data, size_t size, std::shared_ptr<void> owner);

// A received request. Valid only during the handler call, except `body`, which the
// handler may keep (and modify: JSON is parsed in place) for as long as it likes.
class HttpRequest {
 public:
  std::string_view method() const { return method_; }
  // The path with the query string removed, still percent-encoded.
  std::string_view path() const { return path_; }
  std::string_view query() const { return query_; }
  // Case-insensitive lookup; empty when absent.
  std::string_view header(std::string_view name) const;
  // The body: writable (JSON is parsed in place), a NUL follows the last byte, and
  // body_owner() keeps it alive.
  char* body_data() const { return data_; }
  size_t body_size() const { return size_; }
  const std::shared_ptr<void>& body_owner() const { return owner_; }
  // The body as a string, never null. A body held elsewhere is copied into one at the
  // first call: for routes that take small bodies.
  const std::shared_ptr<std::string>& body() const;

 private:
  friend void FillHttpRequest(HttpRequest&, std::string_view, std::string_view, const void*,
                              std::shared_ptr<std::string>);
  friend void FillHttpRequest(HttpRequest&, std::string_view, std::string_view, const void*, char*,
                              size_t, std::shared_ptr<void>);
  std::string_view method_, path_, query_;
  const void* fields_ = nullptr;  // the parser's header fields
  char* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<void> owner_;
  mutable std::shared_ptr<std::string> body_;
};

// A piece of response body that lives elsewhere (e.g. an output tensor), written
// without copying; `owner` keeps it alive until the write completes.
struct HttpBodyChunk {
  const char* data = nullptr;
  size_t size = 0;
  std::shared_ptr<const void> owner;
};

struct HttpReply {
  int status = 200;
  // Views of static strings (literals, tables): a reply per request allocates neither.
  std::string_view content_type = "application/json";
  std::string body;                                               // written first
  std::vector<HttpBodyChunk> chunks;                              // then these, in order
  std::vector<std::pair<std::string_view, std::string>> headers;  // names static too
};

// Sends the reply; call exactly once, from any thread.
using HttpRespond = std::function<void(HttpReply)>;
using HttpHandler = std::function<void(const HttpRequest&, HttpRespond)>;
// Looks at a request once its header is in, before the body is read (body() is empty).
// A reply refuses the request without reading its body; nullopt lets it through.
using HttpPrecheck = std::function<std::optional<HttpReply>(const HttpRequest&)>;

struct HttpListenerOptions {
  std::string address = "0.0.0.0";
  int port = 0;  // 0: any free port
  int threads = 1;
  size_t max_body_size = 64 << 20;
  // While a thread waits for answers computed elsewhere it polls for this long before
  // sleeping: a fast model answers sooner than a sleeping thread can be woken. 0 = never.
  int spin_us = 200;
  // How long Stop() lets requests already being answered finish before closing them.
  int stop_grace_ms = 30000;
  size_t max_header_size = 64 << 10;  // beyond: 431
  // A connection waiting for a request's first byte is closed after idle_timeout_ms; once
  // a request has started, its header and body must arrive within request_timeout_ms
  // (else 408 and close). Slow-trickling clients cannot hold connections. 0 = no limit.
  int idle_timeout_ms = 60000;
  int request_timeout_ms = 30000;
  // Connections beyond this are answered 503 and closed at once; 0 = no limit.
  int max_connections = 0;
  HttpPrecheck precheck;  // optional
  // When a second (third...) I/O thread starts taking connections, and when it stops.
  IoThreadBalancer::Policy io_balance;
};

class HttpListener {
 public:
  static Result<std::unique_ptr<HttpListener>> Start(const HttpListenerOptions& options,
                                                     HttpHandler handler);
  static Result<std::unique_ptr<HttpListener>> Start(const std::string& address, int port,
                                                     int threads, HttpHandler handler);
  ~HttpListener();

  int port() const;
  // Stops accepting, closes idle connections, waits (up to stop_grace_ms) for answers
  // in progress to be written, then joins the I/O threads. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit HttpListener(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// The standard reason phrase for a status code ("Not Found").
std::string_view HttpReasonPhrase(int status);

}  // namespace flowserve
