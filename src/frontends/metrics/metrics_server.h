#pragma once
// Prometheus text exposition (format 0.0.4) of the core's statistics on --metrics-port
// (GET /metrics), with Triton's metric names and labels.
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve {

class InferenceServer;
class HttpListener;
class ProcessStatsSampler;
struct MetricsSettings;

struct MetricsOptions {
  std::string address = "0.0.0.0";
  int port = 8002;
  int interval_ms = 2000;
  bool allow_cpu_metrics = true;
  std::vector<std::string> config;  // --metrics-config entries
};

class MetricsServer {
 public:
  // Fails on a bad --metrics-config entry (naming it) or when the port is taken. Also
  // turns on the latency histograms the settings ask for.
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

// Renders the exposition text for every loaded model (also used by tests). `sampler`
// may be null: no CPU and memory gauges then.
std::string RenderMetrics(InferenceServer& server, const MetricsSettings& settings,
                          ProcessStatsSampler* sampler);
std::string RenderMetrics(InferenceServer& server, const MetricsOptions& options);

}  // namespace flowserve
