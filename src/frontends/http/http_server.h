#pragma once
// The KServe v2 HTTP/REST frontend with Triton's extensions (binary tensors,
// classification, model repository, statistics, logging).
#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"

namespace flowserve {

class InferenceServer;
class HttpListener;
class BlockingWorker;

struct HttpOptions {
  std::string address = "0.0.0.0";
  int port = 8000;
  int thread_count = 2;
  size_t max_input_size = 64 << 20;
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
  std::unique_ptr<BlockingWorker> worker_;  // model load / unload off the I/O threads
  std::unique_ptr<HttpListener> listener_;
};

}  // namespace flowserve
