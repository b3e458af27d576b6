#include "frontends/http/http_server.h"

#include <utility>

#include "frontends/http/http_listener.h"
#include "frontends/http/kserve_router.h"

namespace flowserve {

Result<std::unique_ptr<HttpServer>> HttpServer::Start(InferenceServer* server,
                                                      const HttpOptions& options) {
  std::unique_ptr<HttpServer> http(new HttpServer());
  KServeHttp kserve = MakeKServeHttp(server, options);
  http->stop_routes_ = std::move(kserve.stop);
  auto listener = HttpListener::Start(kserve.listener, std::move(kserve.handler));
  if (!listener.ok()) return listener.status();
  http->listener_ = std::move(listener).value();
  return http;
}

int HttpServer::port() const { return listener_->port(); }

void HttpServer::Stop() {
  if (listener_) listener_->Stop();  // first: no request reaches the routes after this
  if (stop_routes_) stop_routes_();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace flowserve
