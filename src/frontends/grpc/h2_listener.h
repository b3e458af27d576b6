#pragma once
// The nghttp2 gRPC engine (--grpc-engine=nghttp2): the TCP (and TLS) listener and its
// epoll I/O threads. ModelInfer and ModelStreamInfer are served on those threads; every
// other RPC goes to the grpc++ Service through `forward`, an in-process channel.
#include <memory>

#include "common/status.h"
#include "frontends/grpc/grpc_server.h"

namespace grpc {
class ChannelInterface;
}

namespace flowserve::grpc_frontend {

class H2Listener {
 public:
  static Result<std::unique_ptr<H2Listener>> Start(InferenceServer* server,
                                                   const GrpcOptions& options,
                                                   std::shared_ptr<grpc::ChannelInterface> forward);
  ~H2Listener();
  int port() const;
  // Stops accepting, sends GOAWAY, gives open calls a short grace period, then closes
  // every connection; returns once the core has answered every call it was given.
  void Stop();

 private:
  struct Impl;
  explicit H2Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowserve::grpc_frontend
