#pragma once
// The gRPC frontend: Triton's GRPCInferenceService on its own threads. Kept free of
// grpc headers so main.cc and other layers do not pay for them.
#include <climits>
#include <memory>
#include <string>

#include "common/status.h"

namespace flowserve {

class InferenceServer;
class ApiAuth;

struct GrpcOptions {
  std::string address = "0.0.0.0";
  int port = 8001;  // 0: pick a free port (see GrpcServer::port())
  // Who speaks HTTP/2 on the port: "nghttp2" (our own I/O threads serve ModelInfer and
  // ModelStreamInfer and forward the other RPCs to the grpc++ service in process) or
  // "grpcpp" (grpc++ does everything).
  std::string engine = "nghttp2";
  int thread_count = 0;  // nghttp2 engine's I/O threads; 0 = one per core
  // Request/response message pairs kept for reuse by ModelInfer.
  int infer_allocation_pool_size = 8;
  int max_message_bytes = INT32_MAX;
  bool use_ssl = false;
  std::string server_cert, server_key, root_cert;  // PEM file paths
  bool ssl_client_auth = false;                    // require and verify client certs
  int keepalive_time_ms = 7200000, keepalive_timeout_ms = 20000;
  bool keepalive_permit_without_calls = false;
  int http2_max_pings_without_data = 2;
  int http2_min_recv_ping_interval_without_data_ms = 300000;
  int http2_max_ping_strikes = 2;
  int max_concurrent_streams = 0;  // per connection; 0 = grpc's default (no limit)
  int max_connection_age_ms = 0, max_connection_age_grace_ms = 0;  // 0 = unset
  int max_metadata_bytes = 0;           // received header size; 0 = grpc's default (8 KiB)
  std::shared_ptr<const ApiAuth> auth;  // null: every API open
};

class GrpcServer {
 public:
  static Result<std::unique_ptr<GrpcServer>> Start(InferenceServer* server,
                                                   const GrpcOptions& options);
  ~GrpcServer();

  int port() const;
  // Stops accepting, gives open calls a short grace period, then cancels them. Every
  // call in the core still gets its answer before this returns. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flowserve
