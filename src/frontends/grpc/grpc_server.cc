#include "frontends/grpc/grpc_server.h"

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "frontends/grpc/h2_listener.h"
#include "frontends/grpc/service.h"

namespace flowserve {

struct GrpcServer::Impl {
  std::unique_ptr<grpc_frontend::Service> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<grpc_frontend::H2Listener> h2;  // the nghttp2 engine; null with grpcpp
  int port = 0;
};

namespace {

Result<std::string> ReadPem(const std::string& path, const char* what) {
  if (path.empty()) return InvalidArgument(std::string("--grpc-use-ssl needs ") + what);
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(std::string("cannot read ") + what + " '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::shared_ptr<grpc::ServerCredentials>> Credentials(const GrpcOptions& o) {
  if (!o.use_ssl) return grpc::InsecureServerCredentials();
  auto cert = ReadPem(o.server_cert, "a server certificate (--grpc-server-cert)");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(o.server_key, "a server key (--grpc-server-key)");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.root_cert.empty()) {
    auto root = ReadPem(o.root_cert, "a root certificate (--grpc-root-cert)");
    if (!root.ok()) return root.status();
    ssl.pem_root_certs = *root;
  } else if (o.ssl_client_auth) {
    return InvalidArgument("--grpc-use-ssl-mutual needs --grpc-root-cert to verify clients");
  }
  ssl.client_certificate_request = o.ssl_client_auth
                                       ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  return grpc::SslServerCredentials(ssl);
}

std::string HostPort(const std::string& address, int port) {
  // A bare IPv6 address needs brackets before the port.
  bool v6 = address.find(':') != std::string::npos && address.front() != '[';
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

}  // namespace

Result<std::unique_ptr<GrpcServer>> GrpcServer::Start(InferenceServer* server,
                                                      const GrpcOptions& options) {
  auto creds = Credentials(options);
  if (!creds.ok()) return creds.status();
  // Debian builds abseil without NDEBUG, which leaves absl::Mutex's deadlock detector
  // on: every lock grpc takes (several per call) then also updates a process-wide lock
  // graph under a global mutex, a few percent of a call's CPU in `perf`. grpc's own
  // release builds run with it off; so do we.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto impl = std::make_unique<Impl>();
  impl->service = std::make_unique<grpc_frontend::Service>(
      server, options.infer_allocation_pool_size, options.auth);

  const bool h2 = options.engine == "nghttp2";
  if (!h2 && options.engine != "grpcpp") {
    return InvalidArgument("--grpc-engine must be grpcpp or nghttp2, not '" + options.engine + "'");
  }
  grpc::ServerBuilder builder;
  const std::string endpoint = HostPort(options.address, options.port);
  // With nghttp2 the grpc++ server keeps no port: it answers the forwarded RPCs in process.
  if (!h2) builder.AddListeningPort(endpoint, *creds, &impl->port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // grpc shares a port between processes by default (SO_REUSEPORT); a second server on
  // a taken port must fail instead of silently splitting traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, options.keepalive_timeout_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             options.keepalive_permit_without_calls ? 1 : 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA,
                             options.http2_max_pings_without_data);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             options.http2_min_recv_ping_interval_without_data_ms);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, options.http2_max_ping_strikes);
  if (options.max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  }
  if (options.max_connection_age_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, options.max_connection_age_ms);
  }
  if (options.max_connection_age_grace_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               options.max_connection_age_grace_ms);
  }
  if (options.max_metadata_bytes > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, options.max_metadata_bytes);
  }
  builder.RegisterService(impl->service.get());
  impl->server = builder.BuildAndStart();
  if (h2 && impl->server) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    auto listener =
        grpc_frontend::H2Listener::Start(server, options, impl->server->InProcessChannel(args));
    if (!listener.ok()) {
      impl->server->Shutdown();
      return listener.status();
    }
    impl->h2 = std::move(listener).value();
    impl->port = impl->h2->port();
  }
  if (!impl->server || impl->port == 0) {
    return Unavailable("failed to start the gRPC service on " + endpoint +
                       " (address in use or not available?)");
  }
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcServer::~GrpcServer() { Stop(); }

int GrpcServer::port() const { return impl_->port; }

void GrpcServer::Stop() {
  if (!impl_->server) return;
  if (impl_->h2) impl_->h2->Stop();
  // Open streams get a moment to end by themselves before they are cancelled.
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  // No new call starts now. A load or unload still running finishes its call into this
  // server and uses the core, so it ends before the server object does.
  impl_->service->WaitForRepositoryCalls();
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace flowserve
