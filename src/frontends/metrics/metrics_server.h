#pragma once
// Prometheus text exposition of the core's statistics on --metrics-port (GET /metrics).
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve {

class InferenceServer;
class HttpListener;

struct MetricsOptions {
  std::string address = "0.0.0.0";
  int port = 8002;
  int interval_ms = 2000;
  bool allow_cpu_metrics = true;
  std::vector<std::string> config;  // --metrics-config entries
};

class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> Start(InferenceServer* server,
                                                      const MetricsOptions& options);
  ~MetricsServer();
  int port() const;
  void Stop();

 private:
  MetricsServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Renders the exposition text for every loaded model (also used by tests).
std::string RenderMetrics(InferenceServer& server, const MetricsOptions& options);

}  // namespace flowserve
