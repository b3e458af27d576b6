#pragma once
// The KServe v2 HTTP/REST frontend with Triton's extensions (binary tensors,
// classification, model repository, statistics, logging): the routes of kserve_router.h
// behind an HttpListener.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace flowserve {

class InferenceServer;
class HttpListener;
class ApiAuth;

struct HttpOptions {
  std::string address = "0.0.0.0";
  int port = 8000;
  int thread_count = 2;
  size_t max_input_size = 64 << 20;
  size_t max_header_size = 64 << 10;
  int idle_timeout_secs = 60;           // waiting for a request on an open connection
  int request_timeout_secs = 30;        // from a request's first byte to its last
  int max_connections = 0;              // 0 = no limit
  std::shared_ptr<const ApiAuth> auth;  // null: every API open
  bool console = true;                  // the web console under /console/ (--allow-console)
};

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> Start(InferenceServer* server,
                                                   const HttpOptions& options);
  ~HttpServer();

  int port() const;  // the bound port (options.port may be 0 = ephemeral)
  // Stops accepting, closes idle connections, lets answers in progress be written,
  // joins the threads. Idempotent.
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<HttpListener> listener_;
  std::function<void()> stop_routes_;  // ends the routes' model load / unload thread
};

}  // namespace flowserve
