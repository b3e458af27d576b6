#include "frontends/metrics/metrics_server.h"

#include "core/server.h"
#include "frontends/http/http_listener.h"

namespace flowserve {

struct MetricsServer::Impl {
  std::unique_ptr<HttpListener> listener;
};

std::string RenderMetrics(InferenceServer& server, const MetricsOptions& /*options*/) {
  std::string out;
  auto counter = [&](const char* name, const char* help, auto get) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n";
    for (const auto& m : server.LoadedModels()) {
      out += std::string(name) + "{model=\"" + m->name() + "\",version=\"" +
             std::to_string(m->version()) + "\"} " + std::to_string(get(*m)) + "\n";
    }
  };
  counter("nv_inference_request_success", "Number of successful inference requests",
          [](ModelVersion& m) { return m.stats().success.count.load(); });
  counter("nv_inference_request_failure", "Number of failed inference requests",
          [](ModelVersion& m) { return m.stats().fail.count.load(); });
  counter("nv_inference_count", "Number of inferences performed",
          [](ModelVersion& m) { return m.stats().inference_count.load(); });
  counter("nv_inference_exec_count", "Number of model executions performed",
          [](ModelVersion& m) { return m.stats().execution_count.load(); });
  return out;
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(InferenceServer* server,
                                                            const MetricsOptions& options) {
  std::unique_ptr<MetricsServer> ms(new MetricsServer());
  ms->impl_ = std::make_unique<Impl>();
  auto listener = HttpListener::Start(
      options.address, options.port, 1,
      [server, options](const HttpRequest& req, HttpRespond respond) {
        HttpReply reply;
        if (req.method() != "GET" || req.path() != "/metrics") {
          reply.status = 404;
          reply.body = "{\"error\":\"not found: only GET /metrics is served here\"}";
        } else {
          reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
          reply.body = RenderMetrics(*server, options);
        }
        respond(std::move(reply));
      });
  if (!listener.ok()) return listener.status();
  ms->impl_->listener = std::move(listener.value());
  return ms;
}

MetricsServer::~MetricsServer() { Stop(); }

int MetricsServer::port() const { return impl_->listener->port(); }

void MetricsServer::Stop() {
  if (impl_ && impl_->listener) impl_->listener->Stop();
}

}  // namespace flowserve
