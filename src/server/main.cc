// flowserve: flags -> ServerOptions -> core -> frontends -> wait for a signal -> drain.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "backends/backend.h"
#include "common/logging.h"
#include "core/api_auth.h"
#include "core/server.h"
#include "core/trace_settings.h"
#include "frontends/http/http_server.h"
#include "frontends/metrics/metrics_server.h"
#ifdef FLOWSERVE_WITH_GRPC
#include "frontends/grpc/grpc_server.h"
#endif

using namespace flowserve;

namespace {

struct Flags {
  ServerOptions server;
  LogSettings log;
  HttpOptions http;
  MetricsOptions metrics;
  bool allow_http = true, allow_grpc = true, allow_metrics = true;
#ifdef FLOWSERVE_WITH_GRPC
  GrpcOptions grpc;
#else
  struct {
    std::string address = "0.0.0.0";
    int port = 8001;
  } grpc;
#endif
  std::vector<std::string> backend_config;
  uint64_t response_cache_byte_size = 0;
  std::string backend_directory;
  std::string grpc_server_cert, grpc_server_key, grpc_root_cert;
  bool grpc_use_ssl = false, grpc_use_ssl_mutual = false;
  std::vector<std::string> http_restricted, grpc_restricted;
  std::string auth_token_file;
  std::shared_ptr<TokenFile> tokens;  // re-read on SIGHUP
  TraceFlags trace;
};

// Flags that tritonserver has and that mean nothing without GPUs.
const char* kCpuOnlyFlags[] = {"--pinned-memory-pool-byte-size", "--cuda-memory-pool-byte-size",
                               "--min-supported-compute-capability",
                               "--buffer-manager-thread-count", "--allow-gpu-metrics"};

int ParseFlags(int argc, char** argv, Flags& f, CLI::App& app) {
  app.set_version_flag("--version", std::string(kServerName) + " " + kServerVersion);
  app.option_defaults()->always_capture_default();
  auto& s = f.server;
  app.add_option("--model-repository,--model-store", s.model_repositories,
                 "Model repository path (repeatable)");
  app.add_option("--model-control-mode", s.model_control_mode, "none | poll | explicit")
      ->check(CLI::IsMember({"none", "poll", "explicit"}));
  app.add_option("--load-model", s.startup_models,
                 "Model to load at start in explicit mode; * = all");
  app.add_option("--repository-poll-secs", s.repository_poll_secs)->check(CLI::NonNegativeNumber);
  app.add_option("--repository-cache-dir", s.repository_cache_dir,
                 "Local folder s3:// repositories are fetched into (default: "
                 "$TRITON_AWS_MOUNT_DIRECTORY, else a temporary folder); reused on restart");
  app.add_option("--strict-readiness", s.strict_readiness);
  app.add_option("--exit-on-error", s.exit_on_error);
  app.add_option("--strict-model-config", s.strict_model_config,
                 "Require a complete config.pbtxt; true also turns auto-complete off");
  app.add_flag("--disable-auto-complete-config", s.disable_auto_complete_config,
               "Do not fill a config's missing inputs, outputs and batching from the model");
  app.add_option("--exit-timeout-secs", s.exit_timeout_secs)->check(CLI::NonNegativeNumber);
  app.add_option("--model-load-thread-count", s.model_load_thread_count)
      ->check(CLI::PositiveNumber);
  app.add_option("--id", s.server_id, "Server identifier, reported as the name in server metadata");
  app.add_option("--backend-config", f.backend_config, "<backend>,<key>=<value>");
  app.add_option("--cache-config", s.cache_config,
                 "<cache>,<key>=<value>: the response cache, e.g. local,size=1048576");
  app.add_option("--response-cache-byte-size", f.response_cache_byte_size,
                 "Deprecated form of --cache-config=local,size=<bytes>")
      ->check(CLI::NonNegativeNumber);
  f.backend_directory = DefaultBackendDirectory();
  app.add_option("--backend-directory", f.backend_directory,
                 "Where backend modules are found: <dir>/<backend>/libflowserve_<backend>.so");

  app.add_option("--allow-http", f.allow_http);
  app.add_option("--http-port", f.http.port)->check(CLI::Range(0, 65535));
  app.add_option("--http-address", f.http.address);
  app.add_option("--allow-console", f.http.console, "Serve the web console under /console/");
  app.add_option("--http-thread-count", f.http.thread_count)->check(CLI::PositiveNumber);
  app.add_option("--http-max-input-size", f.http.max_input_size)->check(CLI::PositiveNumber);
  app.add_option("--http-max-header-size", f.http.max_header_size)->check(CLI::PositiveNumber);
  app.add_option("--http-idle-timeout-secs", f.http.idle_timeout_secs,
                 "Close a connection that sends no request for this long; 0 = never")
      ->check(CLI::Range(0, 86400));
  app.add_option("--http-request-timeout-secs", f.http.request_timeout_secs,
                 "A request must arrive whole this long after its first byte (else 408); 0 = "
                 "no limit")
      ->check(CLI::Range(0, 86400));
  app.add_option("--http-max-connections", f.http.max_connections,
                 "Open HTTP connections beyond this are refused with 503; 0 = no limit")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--http-restricted-api", f.http_restricted,
                 "<group>[,<group>...]:<header>=<value> (repeatable). Groups: " + ApiGroupNames());
  app.add_option("--grpc-restricted-protocol,--grpc-restricted-api", f.grpc_restricted,
                 "<group>[,<group>...]:<key>=<value> (repeatable); the metadata key is "
                 "triton-grpc-protocol-<key> (or <key>)");
  app.add_option("--auth-token-file", f.auth_token_file,
                 "File of tokens, one per line, optionally followed by the groups it opens; "
                 "re-read when it changes and on SIGHUP");

  app.add_option("--allow-grpc", f.allow_grpc);
  app.add_option("--grpc-port", f.grpc.port)->check(CLI::Range(0, 65535));
  app.add_option("--grpc-address", f.grpc.address);
#ifdef FLOWSERVE_WITH_GRPC
  app.add_option("--grpc-infer-allocation-pool-size", f.grpc.infer_allocation_pool_size);
  app.add_option("--grpc-engine", f.grpc.engine,
                 "nghttp2 | grpcpp (our extension): who serves the gRPC port; nghttp2 runs "
                 "ModelInfer/ModelStreamInfer on its own I/O threads, grpcpp is grpc++ alone")
      ->check(CLI::IsMember({"grpcpp", "nghttp2"}))
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--grpc-thread-count", f.grpc.thread_count,
                 "I/O threads of the nghttp2 engine; 0 = one per core (our extension)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--grpc-use-ssl", f.grpc_use_ssl);
  app.add_option("--grpc-use-ssl-mutual", f.grpc_use_ssl_mutual);
  app.add_option("--grpc-server-cert", f.grpc_server_cert);
  app.add_option("--grpc-server-key", f.grpc_server_key);
  app.add_option("--grpc-root-cert", f.grpc_root_cert);
  app.add_option("--grpc-keepalive-time", f.grpc.keepalive_time_ms);
  app.add_option("--grpc-keepalive-timeout", f.grpc.keepalive_timeout_ms);
  app.add_option("--grpc-keepalive-permit-without-calls", f.grpc.keepalive_permit_without_calls);
  app.add_option("--grpc-http2-max-pings-without-data", f.grpc.http2_max_pings_without_data);
  app.add_option("--grpc-http2-min-recv-ping-interval-without-data",
                 f.grpc.http2_min_recv_ping_interval_without_data_ms);
  app.add_option("--grpc-http2-max-ping-strikes", f.grpc.http2_max_ping_strikes);
  app.add_option("--grpc-max-connection-age", f.grpc.max_connection_age_ms);
  app.add_option("--grpc-max-connection-age-grace", f.grpc.max_connection_age_grace_ms);
  app.add_option("--grpc-max-concurrent-streams", f.grpc.max_concurrent_streams,
                 "Concurrent calls per connection; 0 = no limit")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--grpc-max-message-size", f.grpc.max_message_bytes,
                 "Largest message received or sent, in bytes")
      ->check(CLI::PositiveNumber);
  app.add_option("--grpc-max-metadata-size", f.grpc.max_metadata_bytes,
                 "Largest request metadata (headers), in bytes; 0 = grpc's default")
      ->check(CLI::NonNegativeNumber);
#endif

  app.add_option("--allow-metrics", f.allow_metrics);
  app.add_option("--metrics-port", f.metrics.port)->check(CLI::Range(0, 65535));
  app.add_option("--metrics-address", f.metrics.address);
  app.add_option("--metrics-interval-ms", f.metrics.interval_ms);
  app.add_option("--metrics-config", f.metrics.config, "<key>=<value>, e.g. histogram_buckets=...");
  app.add_option("--allow-cpu-metrics", f.metrics.allow_cpu_metrics);

  app.add_option("--log-verbose", f.log.verbose)->check(CLI::NonNegativeNumber);
  app.add_option("--log-info", f.log.info);
  app.add_option("--log-warning", f.log.warning);
  app.add_option("--log-error", f.log.error);
  app.add_option("--log-format", f.log.format)->check(CLI::IsMember({"default", "ISO8601"}));
  app.add_option("--log-file", f.log.file);

  app.add_option("--trace-config", f.trace.config,
                 "<setting>=<value> or triton,<setting>=<value> (repeatable): level, rate, "
                 "count, mode, file, log-frequency");
  app.add_option("--trace-file", f.trace.file, "Deprecated: --trace-config triton,file=");
  app.add_option("--trace-level", f.trace.level, "Deprecated: --trace-config level=");
  app.add_option("--trace-rate", f.trace.rate, "Deprecated: --trace-config rate=");
  app.add_option("--trace-count", f.trace.count, "Deprecated: --trace-config count=");
  app.add_option("--trace-log-frequency", f.trace.log_frequency,
                 "Deprecated: --trace-config triton,log-frequency=");

  std::string ignored_str;
  for (const char* name : kCpuOnlyFlags) {
    if (std::string(name) == "--allow-gpu-metrics") {
      app.add_option(name, ignored_str)->expected(0, 1);
    } else {
      app.add_option(name, ignored_str);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return -1;
}

Status ApplyFlags(Flags& f, CLI::App& app) {
  for (const auto& entry : f.backend_config) {
    auto comma = entry.find(',');
    auto eq = entry.find('=', comma == std::string::npos ? 0 : comma);
    if (comma == std::string::npos || eq == std::string::npos) {
      return InvalidArgument("--backend-config=" + entry +
                             ": expected <backend>,<setting>=<value>");
    }
    f.server.backend_config[entry.substr(0, comma)][entry.substr(comma + 1, eq - comma - 1)] =
        entry.substr(eq + 1);
  }
  if (f.response_cache_byte_size > 0) {
    f.server.cache_config.push_back("local,size=" + std::to_string(f.response_cache_byte_size));
  }
  SetBackendDirectory(f.backend_directory);
  auto trace = ParseTraceFlags(f.trace);
  if (!trace.ok()) return trace.status();
  f.server.trace_settings = std::move(trace).value();
  for (const char* name : kCpuOnlyFlags) {
    if (app.count(name) > 0) {
      FS_LOG_INFO("{} has no effect in this CPU-only build", name);
    }
  }
  if (f.server.model_control_mode != "explicit" && !f.server.startup_models.empty()) {
    FS_LOG_WARNING("--load-model has no effect unless --model-control-mode=explicit");
  }
#ifdef FLOWSERVE_WITH_GRPC
  f.grpc.use_ssl = f.grpc_use_ssl || f.grpc_use_ssl_mutual;
  f.grpc.ssl_client_auth = f.grpc_use_ssl_mutual;
  f.grpc.server_cert = f.grpc_server_cert;
  f.grpc.server_key = f.grpc_server_key;
  f.grpc.root_cert = f.grpc_root_cert;
#endif
  if (!f.auth_token_file.empty()) {
    auto tokens = TokenFile::Open(f.auth_token_file);
    if (!tokens.ok()) return tokens.status();
    f.tokens = std::move(tokens).value();
    FS_LOG_INFO("auth: {} token(s) loaded from '{}'; every API group but health needs one",
                f.tokens->size(), f.auth_token_file);
  }
  auto http_auth = ApiAuth::Create(f.http_restricted, "", f.tokens);
  if (!http_auth.ok()) return http_auth.status().WithContext("--http-restricted-api: ");
  f.http.auth = std::move(http_auth).value();
#ifdef FLOWSERVE_WITH_GRPC
  // Triton's gRPC frontend reads restricted keys as triton-grpc-protocol-<key>.
  auto grpc_auth = ApiAuth::Create(f.grpc_restricted, "triton-grpc-protocol-", f.tokens);
  if (!grpc_auth.ok()) return grpc_auth.status().WithContext("--grpc-restricted-protocol: ");
  f.grpc.auth = std::move(grpc_auth).value();
#endif
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"flowserve: an inference server speaking the KServe v2 / Triton protocols"};
  if (int rc = ParseFlags(argc, argv, flags, app); rc >= 0) return rc;
  if (Status st = ConfigureLogging(flags.log); !st.ok()) {
    std::fprintf(stderr, "error: %s\n", st.message().c_str());
    return 2;
  }
  if (Status st = ApplyFlags(flags, app); !st.ok()) {
    FS_LOG_ERROR("{}", st.message());
    return 2;
  }

  // Every thread started from here on inherits the blocked set; main waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // re-read the auth token file
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  RegisterBuiltinBackends();
  auto server = InferenceServer::Create(flags.server);
  if (!server.ok()) {
    FS_LOG_ERROR("error: creating server: {}", server.status().message());
    return 1;
  }
  InferenceServer* core = server.value().get();
  if (core->AnyModelFailed() && flags.server.exit_on_error) {
    FS_LOG_ERROR("exiting: failed to load all models (--exit-on-error=true)");
    return 1;
  }

  // gRPC first: once HTTP answers, every frontend is listening (tests and probes rely on it).
#ifdef FLOWSERVE_WITH_GRPC
  std::unique_ptr<GrpcServer> grpc;
  if (flags.allow_grpc) {
    auto g = GrpcServer::Start(core, flags.grpc);
    if (!g.ok()) {
      FS_LOG_ERROR("failed to start GRPC service: {}", g.status().message());
      return 1;
    }
    grpc = std::move(g.value());
    FS_LOG_INFO("Started GRPCInferenceService at {}:{}", flags.grpc.address, grpc->port());
  }
#else
  if (flags.allow_grpc) FS_LOG_WARNING("this build has no gRPC frontend");
#endif
  std::unique_ptr<MetricsServer> metrics;
  if (flags.allow_metrics) {
    auto m = MetricsServer::Start(core, flags.metrics);
    if (!m.ok()) {
      FS_LOG_ERROR("failed to start metrics service: {}", m.status().message());
      return 1;
    }
    metrics = std::move(m.value());
    FS_LOG_INFO("Started Metrics Service at {}:{}", flags.metrics.address, metrics->port());
  }

  std::unique_ptr<HttpServer> http;
  if (flags.allow_http) {
    auto h = HttpServer::Start(core, flags.http);
    if (!h.ok()) {
      FS_LOG_ERROR("failed to start HTTP service: {}", h.status().message());
      return 1;
    }
    http = std::move(h.value());
    FS_LOG_INFO("Started HTTPService at {}:{}", flags.http.address, http->port());
  }
  int sig = 0;
  for (;;) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    if (!flags.tokens) {
      FS_LOG_INFO("received SIGHUP: no --auth-token-file to re-read");
    } else if (Status st = flags.tokens->Reload(); st.ok()) {
      FS_LOG_INFO("received SIGHUP: {} token(s) loaded from '{}'", flags.tokens->size(),
                  flags.tokens->path());
    } else {
      FS_LOG_WARNING("received SIGHUP: {}; keeping the tokens loaded before", st.message());
    }
  }
  FS_LOG_INFO("received {}: draining (up to {} s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
              flags.server.exit_timeout_secs);
  core->BeginShutdown();
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(flags.server.exit_timeout_secs);
  if (!core->WaitForIdle(deadline)) {
    FS_LOG_WARNING("exit timeout reached with {} request(s) in flight", core->InFlight());
  }
#ifdef FLOWSERVE_WITH_GRPC
  if (grpc) grpc->Stop();
#endif
  if (http) http->Stop();
  if (metrics) metrics->Stop();
    // Frontends go before the core they point to, whatever their declaration order.
#ifdef FLOWSERVE_WITH_GRPC
  grpc.reset();
#endif
  http.reset();
  metrics.reset();
  server.value().reset();
  FS_LOG_INFO("exiting");
  return 0;
}
