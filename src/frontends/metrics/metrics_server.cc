#include "frontends/metrics/metrics_server.h"

#include <charconv>
#include <functional>

#include "common/custom_metrics.h"
#include "core/response_cache.h"
#include "core/server.h"
#include "frontends/http/http_listener.h"
#include "frontends/metrics/metrics_settings.h"
#include "frontends/metrics/process_stats.h"

namespace flowserve {
namespace {

using Models = std::vector<std::shared_ptr<ModelVersion>>;

// Shortest text that reads back as the same double ("0.5", "1", "2500").
std::string Number(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// Label values may hold any UTF-8; the format escapes backslash, quote and newline.
std::string Escape(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Exposition {
 public:
  explicit Exposition(const Models& models) : models_(models) {}

  void Family(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }

  // One sample per model version: name{model="m",version="v"<extra>} value
  void PerModel(const char* name, const std::function<std::string(const ModelVersion&)>& value,
                const std::string& extra_labels = "", const char* suffix = "") {
    for (const auto& m : models_) {
      out_ += std::string(name) + suffix + Labels(*m) + extra_labels + "} " + value(*m) + "\n";
    }
  }

  void Counter(const char* name, const char* help,
               const std::function<uint64_t(const ModelVersion&)>& get) {
    Family(name, "counter", help);
    PerModel(name, [&](const ModelVersion& m) { return std::to_string(get(m)); });
  }

  // A counter only for the model versions `where` selects.
  void CounterWhere(const char* name, const char* help,
                    const std::function<bool(const ModelVersion&)>& where,
                    const std::function<uint64_t(const ModelVersion&)>& get) {
    Family(name, "counter", help);
    for (const auto& m : models_) {
      if (where(*m)) out_ += std::string(name) + Labels(*m) + "} " + std::to_string(get(*m)) + "\n";
    }
  }

  void Histogram(const char* name, const char* help, LatencyKind kind,
                 const LatencyHistogram ModelStatistics::*member) {
    const HistogramBuckets* b = LatencyHistogramBuckets(kind);
    if (!b) return;
    Family(name, "histogram", help);
    for (const auto& m : models_) {
      auto snap = (m->stats().*member).Read(*b);
      const std::string labels = Labels(*m);
      for (size_t i = 0; i < snap.cumulative.size(); ++i) {
        std::string le = i < b->bounds_ms.size() ? Number(b->bounds_ms[i]) : "+Inf";
        out_ += std::string(name) + "_bucket" + labels + ",le=\"" + le + "\"} " +
                std::to_string(snap.cumulative[i]) + "\n";
      }
      out_ += std::string(name) + "_sum" + labels + "} " + Number(snap.sum_ns / 1e6) + "\n";
      out_ += std::string(name) + "_count" + labels + "} " +
              std::to_string(snap.cumulative.back()) + "\n";
    }
  }

  // A process-wide sample, without model labels.
  void Single(const char* name, const char* type, const char* help, const std::string& value) {
    Family(name, type, help);
    out_ += std::string(name) + " " + value + "\n";
  }

  std::string Take() { return std::move(out_); }

 private:
  static std::string Labels(const ModelVersion& m) {
    return "{model=\"" + Escape(m.name()) + "\",version=\"" + std::to_string(m.version()) + "\"";
  }

  const Models& models_;
  std::string out_;
};

uint64_t Us(const DurationStat& d) { return d.ns.load(std::memory_order_relaxed) / 1000; }

// Triton's response cache families: the cache's own gauges, and per model (only those
// that use the cache) hit and miss counts and times in microseconds.
void RenderCacheMetrics(Exposition& x, const ResponseCache& cache) {
  const ResponseCache::Counters c = cache.Read();
  x.Single("nv_cache_num_entries", "gauge", "Number of responses stored in response cache",
           std::to_string(c.entries));
  x.Single("nv_cache_num_lookups", "gauge", "Number of cache lookups in response cache",
           std::to_string(c.lookups));
  x.Single("nv_cache_num_hits", "gauge", "Number of cache hits in response cache",
           std::to_string(c.hits));
  x.Single("nv_cache_num_misses", "gauge", "Number of cache misses in response cache",
           std::to_string(c.misses));
  x.Single("nv_cache_num_evictions", "gauge", "Number of cache evictions in response cache",
           std::to_string(c.evictions));
  x.Single("nv_cache_lookup_duration", "gauge",
           "Total cache lookup duration (hit and miss), in microseconds",
           std::to_string(c.lookup_ns / 1000));
  x.Single("nv_cache_insertion_duration", "gauge",
           "Total cache insertion duration, in microseconds", std::to_string(c.insert_ns / 1000));
  x.Single("nv_cache_util", "gauge", "Cache utilization [0.0 - 1.0]",
           Number(c.capacity_bytes ? static_cast<double>(c.used_bytes) / c.capacity_bytes : 0.0));
  auto uses_cache = [](const ModelVersion& m) { return m.response_cache_active(); };
  x.CounterWhere("nv_cache_num_hits_per_model", "Number of cache hits per model", uses_cache,
                 [](const ModelVersion& m) { return m.stats().cache_hit.count.load(); });
  x.CounterWhere("nv_cache_num_misses_per_model", "Number of cache misses per model", uses_cache,
                 [](const ModelVersion& m) { return m.stats().cache_miss.count.load(); });
  x.CounterWhere("nv_cache_hit_duration_per_model",
                 "Total cache hit duration per model, in microseconds", uses_cache,
                 [](const ModelVersion& m) { return Us(m.stats().cache_hit); });
  x.CounterWhere("nv_cache_miss_duration_per_model",
                 "Total cache miss (insert + lookup) duration per model, in microseconds",
                 uses_cache, [](const ModelVersion& m) { return Us(m.stats().cache_miss); });
}

}  // namespace

std::string RenderMetrics(InferenceServer& server, const MetricsSettings& settings,
                          ProcessStatsSampler* sampler) {
  const Models models = server.LoadedModels();
  Exposition x(models);
  x.Counter("nv_inference_request_success",
            "Number of successful inference requests, all batch sizes",
            [](const ModelVersion& m) { return m.stats().success.count.load(); });
  x.Family("nv_inference_request_failure", "counter",
           "Number of failed inference requests, all batch sizes, by reason");
  for (size_t r = 0; r < static_cast<size_t>(FailureReason::kCount); ++r) {
    auto reason = static_cast<FailureReason>(r);
    x.PerModel(
        "nv_inference_request_failure",
        [reason](const ModelVersion& m) { return std::to_string(m.stats().fail.Count(reason)); },
        std::string(",reason=\"") + FailureReasonName(reason) + "\"");
  }
  x.Counter("nv_inference_count",
            "Number of inferences performed (a request of batch size n counts n)",
            [](const ModelVersion& m) { return m.stats().inference_count.load(); });
  x.Counter("nv_inference_exec_count", "Number of model executions performed (batches)",
            [](const ModelVersion& m) { return m.stats().execution_count.load(); });
  x.Family("nv_inference_pending_request_count", "gauge",
           "Number of inference requests awaiting execution per model");
  x.PerModel("nv_inference_pending_request_count", [](const ModelVersion& m) {
    return std::to_string(std::max<int64_t>(0, m.stats().pending_requests.load()));
  });
  if (settings.counter_latencies) {
    x.Counter("nv_inference_request_duration_us",
              "Cumulative end-to-end duration of successful inference requests in microseconds",
              [](const ModelVersion& m) { return Us(m.stats().success); });
    x.Counter("nv_inference_queue_duration_us",
              "Cumulative time requests spent waiting in the scheduling queue in microseconds",
              [](const ModelVersion& m) { return Us(m.stats().queue); });
    x.Counter("nv_inference_compute_input_duration_us",
              "Cumulative time requests spent preparing inputs in microseconds",
              [](const ModelVersion& m) { return Us(m.stats().compute_input); });
    x.Counter("nv_inference_compute_infer_duration_us",
              "Cumulative time requests spent executing the model in microseconds",
              [](const ModelVersion& m) { return Us(m.stats().compute_infer); });
    x.Counter("nv_inference_compute_output_duration_us",
              "Cumulative time requests spent processing outputs in microseconds",
              [](const ModelVersion& m) { return Us(m.stats().compute_output); });
  }
  // Triton's histogram family for request latency; for a model that is not decoupled
  // the first response is the whole response, so it is the end-to-end duration.
  x.Histogram("nv_inference_first_response_histogram_ms",
              "Duration from request arrival to its response in milliseconds (successful "
              "requests)",
              LatencyKind::kRequest, &ModelStatistics::request_histogram);
  x.Histogram("nv_inference_queue_histogram_ms",
              "Time successful requests spent waiting in the scheduling queue in milliseconds",
              LatencyKind::kQueue, &ModelStatistics::queue_histogram);
  x.Histogram("nv_inference_compute_infer_histogram_ms",
              "Time successful requests spent executing the model in milliseconds",
              LatencyKind::kCompute, &ModelStatistics::compute_histogram);
  if (const ResponseCache* cache = server.response_cache()) {
    RenderCacheMetrics(x, *cache);
  }
  if (sampler && settings.cpu_metrics) {
    ProcessStats p = sampler->Sample();
    x.Single("nv_cpu_utilization", "gauge", "CPU utilization rate of the machine [0.0 - 1.0]",
             Number(p.cpu_utilization));
    x.Single("nv_cpu_memory_total_bytes", "gauge", "CPU total memory (RAM), in bytes",
             std::to_string(p.memory_total_bytes));
    x.Single("nv_cpu_memory_used_bytes", "gauge", "CPU used memory (RAM), in bytes",
             std::to_string(p.memory_used_bytes));
    x.Single("process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent by this process in seconds",
             Number(p.process_cpu_seconds));
    x.Single("process_resident_memory_bytes", "gauge",
             "Resident memory size of this process in bytes",
             std::to_string(p.process_resident_bytes));
    x.Single("process_virtual_memory_bytes", "gauge",
             "Virtual memory size of this process in bytes",
             std::to_string(p.process_virtual_bytes));
  }
  return x.Take() + custom_metrics::Render();  // what model code defined
}

std::string RenderMetrics(InferenceServer& server, const MetricsOptions& options) {
  auto settings = ParseMetricsSettings(options);
  return RenderMetrics(server, settings.ok() ? settings.value() : MetricsSettings{}, nullptr);
}

struct MetricsServer::Impl {
  MetricsSettings settings;
  std::unique_ptr<ProcessStatsSampler> sampler;
  std::unique_ptr<HttpListener> listener;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(InferenceServer* server,
                                                            const MetricsOptions& options) {
  auto settings = ParseMetricsSettings(options);
  if (!settings.ok()) return settings.status();
  std::unique_ptr<MetricsServer> ms(new MetricsServer());
  ms->impl_ = std::make_unique<Impl>();
  Impl* impl = ms->impl_.get();
  impl->settings = std::move(settings.value());
  impl->sampler = std::make_unique<ProcessStatsSampler>(impl->settings.interval_ms);
  auto listener = HttpListener::Start(
      options.address, options.port, 1,
      [server, impl](const HttpRequest& req, HttpRespond respond) {
        HttpReply reply;
        if (req.path() != "/metrics") {
          reply.status = 404;
          reply.body = "{\"error\":\"not found: only GET /metrics is served here\"}";
        } else if (req.method() != "GET") {
          reply.status = 405;
          reply.body = "{\"error\":\"/metrics answers GET only\"}";
          reply.headers.emplace_back("Allow", "GET");
        } else {
          reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
          reply.body = RenderMetrics(*server, impl->settings, impl->sampler.get());
        }
        respond(std::move(reply));
      });
  if (!listener.ok()) return listener.status();
  impl->listener = std::move(listener.value());
  // Only now: a server that failed to start should not pay for histograms.
  SetLatencyHistogramBuckets(LatencyKind::kRequest, impl->settings.request_buckets);
  SetLatencyHistogramBuckets(LatencyKind::kQueue, impl->settings.queue_buckets);
  SetLatencyHistogramBuckets(LatencyKind::kCompute, impl->settings.compute_buckets);
  return ms;
}

MetricsServer::~MetricsServer() { Stop(); }

int MetricsServer::port() const { return impl_->listener->port(); }

void MetricsServer::Stop() {
  if (impl_ && impl_->listener) impl_->listener->Stop();
}

}  // namespace flowserve
