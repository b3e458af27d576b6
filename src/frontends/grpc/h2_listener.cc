#include "frontends/grpc/h2_listener.h"

#include <netdb.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/api_auth.h"
#include "frontends/grpc/h2_connection.h"
#include "frontends/grpc/h2_loop.h"

namespace flowserve::grpc_frontend {

struct H2Listener::Impl {
  H2Context ctx;
  int listen_fd = -1;
  int port = 0;
  std::vector<std::shared_ptr<H2Loop>> loops;
  bool stopped = false;

  ~Impl() {
    if (listen_fd >= 0) close(listen_fd);
    if (ctx.ssl != nullptr) SSL_CTX_free(ctx.ssl);
  }
};

namespace {

std::string TlsError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  return what + ": " + buf;
}

// gRPC over TLS is HTTP/2 negotiated by ALPN.
int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
             unsigned int inlen, void*) {
  static const unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof kH2, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

Result<SSL_CTX*> MakeTls(const GrpcOptions& o) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return Internal(TlsError("cannot create a TLS context"));
  auto fail = [ctx](const std::string& what) {
    SSL_CTX_free(ctx);
    return InvalidArgument(TlsError(what));
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, o.server_cert.c_str()) != 1) {
    return fail("cannot use --grpc-server-cert '" + o.server_cert + "'");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, o.server_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return fail("cannot use --grpc-server-key '" + o.server_key + "'");
  }
  if (!o.root_cert.empty() &&
      SSL_CTX_load_verify_locations(ctx, o.root_cert.c_str(), nullptr) != 1) {
    return fail("cannot use --grpc-root-cert '" + o.root_cert + "'");
  }
  if (o.ssl_client_auth) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectH2, nullptr);
  return ctx;
}

Result<int> Listen(const GrpcOptions& o, int* port) {
  const std::string where = o.address + ":" + std::to_string(o.port);
  const std::string failed = "failed to start the gRPC service on " + where;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  std::string host = o.address;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo* found = nullptr;
  if (int e = getaddrinfo(host.c_str(), std::to_string(o.port).c_str(), &hints, &found); e != 0) {
    return Unavailable(failed + " (" + gai_strerror(e) + ")");
  }
  int err = 0;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      *port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      freeaddrinfo(found);
      return fd;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(found);
  return Unavailable(failed + " (address in use or not available?" +
                     (err ? std::string(": ") + std::strerror(err) : "") + ")");
}

}  // namespace

Result<std::unique_ptr<H2Listener>> H2Listener::Start(
    InferenceServer* server, const GrpcOptions& options,
    std::shared_ptr<grpc::ChannelInterface> forward) {
  auto impl = std::make_unique<Impl>();
  impl->ctx.server = server;
  impl->ctx.options = options;
  impl->ctx.auth = options.auth && options.auth->active() ? options.auth : nullptr;
  impl->ctx.forward = std::move(forward);
  if (options.use_ssl) {
    auto tls = MakeTls(options);
    if (!tls.ok()) return tls.status();
    impl->ctx.ssl = *tls;
  }
  auto fd = Listen(options, &impl->port);
  if (!fd.ok()) return fd.status();
  impl->listen_fd = *fd;
  int threads = options.thread_count > 0
                    ? options.thread_count
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  for (int i = 0; i < threads; ++i) {
    auto loop = std::make_shared<H2Loop>(&impl->ctx, impl->listen_fd);
    if (Status st = loop->Start(); !st.ok()) return st;
    impl->loops.push_back(std::move(loop));
  }
  return std::unique_ptr<H2Listener>(new H2Listener(std::move(impl)));
}

H2Listener::H2Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

H2Listener::~H2Listener() { Stop(); }

int H2Listener::port() const { return impl_->port; }

void H2Listener::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  for (auto& loop : impl_->loops) loop->BeginDrain();
  // Open calls get the same grace grpc++'s Shutdown gives them.
  const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  auto open = [this] {
    size_t n = 0;
    for (auto& loop : impl_->loops) n += loop->open_connections();
    return n;
  };
  while (open() > 0 && std::chrono::steady_clock::now() < grace) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& loop : impl_->loops) loop->StopAndJoin();
  // Completions still running in the core name this listener's context.
  while (impl_->ctx.calls_in_core.load(std::memory_order_acquire) > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  impl_->loops.clear();
}

}  // namespace flowserve::grpc_frontend
