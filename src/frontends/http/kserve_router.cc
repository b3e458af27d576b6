#include "frontends/http/kserve_router.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/blocking_worker.h"
#include "common/logging.h"
#include "core/server.h"
#include "core/trace_manager.h"
#include "frontends/http/console_assets.h"
#include "frontends/http/infer_codec.h"
#include "frontends/http/model_json.h"
#include "frontends/http/shared_memory_routes.h"
#include "frontends/http/trace_json.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

HttpReply EmptyReply(int status) {
  HttpReply r;
  r.status = status;
  r.content_type = {};
  return r;
}

HttpReply NotFoundReply() { return ErrorReply(NotFound("Not Found")); }

HttpReply MethodNotAllowed(std::string_view method, std::string_view path) {
  HttpReply r = ErrorReply(
      InvalidArgument("method " + std::string(method) + " is not allowed on " + std::string(path)));
  r.status = 405;
  return r;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits the path into percent-decoded segments; false on a bad escape.
bool SplitPath(std::string_view path, std::vector<std::string>* out) {
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    std::string seg;
    while (i < path.size() && path[i] != '/') {
      if (path[i] == '%') {
        if (i + 2 >= path.size()) return false;
        int hi = HexValue(path[i + 1]), lo = HexValue(path[i + 2]);
        if (hi < 0 || lo < 0) return false;
        seg += static_cast<char>(hi * 16 + lo);
        i += 3;
      } else {
        seg += path[i++];
      }
    }
    out->push_back(std::move(seg));
  }
  return true;
}

// The API group a path belongs to, as Triton files its endpoints; nullopt for paths that
// are not an API at all (they get 404 whoever asks).
std::optional<ApiGroup> GroupOf(const std::vector<std::string>& seg) {
  if (seg.empty() || seg[0] != "v2") return std::nullopt;
  if (seg.size() == 1) return ApiGroup::kMetadata;
  const std::string& area = seg[1];
  if (area == "health") return ApiGroup::kHealth;
  if (area == "repository") return ApiGroup::kModelRepository;
  if (area == "logging") return ApiGroup::kLogging;
  if (area == "trace") return ApiGroup::kTrace;
  if (area == "systemsharedmemory" || area == "cudasharedmemory") return ApiGroup::kSharedMemory;
  if (area != "models") return std::nullopt;
  if (seg.size() == 3 && seg[2] == "stats") return ApiGroup::kStatistics;
  size_t i = seg.size() >= 5 && seg[3] == "versions" ? 5 : 3;
  if (i >= seg.size()) return ApiGroup::kMetadata;
  const std::string& action = seg[i];
  if (action == "ready") return ApiGroup::kHealth;
  if (action == "infer" || action == "generate" || action == "generate_stream") {
    return ApiGroup::kInference;
  }
  if (action == "config") return ApiGroup::kModelConfig;
  if (action == "stats") return ApiGroup::kStatistics;
  if (action == "trace") return ApiGroup::kTrace;
  return std::nullopt;
}

class RequestHeaders final : public HeaderSource {
 public:
  explicit RequestHeaders(const HttpRequest& req) : req_(req) {}
  std::string_view Get(std::string_view name) const override { return req_.header(name); }

 private:
  const HttpRequest& req_;
};

// Runs on the header alone, so a caller without access cannot make the server read (or
// buffer) a body it will refuse anyway.
std::optional<HttpReply> CheckAccess(const ApiAuth& auth, const HttpRequest& req) {
  std::vector<std::string> seg;
  if (!SplitPath(req.path(), &seg)) return std::nullopt;  // the router answers 400
  auto group = GroupOf(seg);
  if (!group) return std::nullopt;
  Status st = auth.Check(*group, RequestHeaders(req));
  if (st.ok()) return std::nullopt;
  HttpReply reply = ErrorReply(st);
  if (st.code() == StatusCode::kUnauthenticated) {
    reply.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"flowserve\"");
  }
  return reply;
}

class Router {
 public:
  Router(InferenceServer* server, bool console) : server_(server) {
    if (console) console_ = ConsoleFacts{server->options().model_control_mode, Clock::now()};
  }
  void Stop() { worker_.Stop(); }

  void Handle(const HttpRequest& req, HttpRespond respond) {
    if (console_ && IsConsolePath(req.path())) return respond(ConsoleReply(req, *console_));
    std::vector<std::string> seg;
    seg.reserve(8);
    if (!SplitPath(req.path(), &seg)) {
      return respond(ErrorReply(InvalidArgument("malformed percent-encoding in the URL path")));
    }
    if (seg.empty() || seg[0] != "v2") return respond(NotFoundReply());
    const bool get = req.method() == "GET" || req.method() == "HEAD";
    const bool post = req.method() == "POST";

    if (seg.size() == 1) {
      if (!get) return respond(MethodNotAllowed(req.method(), req.path()));
      return respond(JsonReply(ServerMetadataJson(server_->options().server_id)));
    }
    const std::string& area = seg[1];
    if (area == "health" && seg.size() == 3) {
      if (!get) return respond(MethodNotAllowed(req.method(), req.path()));
      if (seg[2] == "live") return respond(EmptyReply(server_->IsLive() ? 200 : 503));
      if (seg[2] == "ready") return respond(EmptyReply(server_->IsReady() ? 200 : 503));
      return respond(NotFoundReply());
    }
    if (area == "models") return Models(req, seg, get, post, std::move(respond));
    if (area == "repository") return Repository(req, seg, post, std::move(respond));
    if (area == "logging" && seg.size() == 2) return Logging(req, get, post, std::move(respond));
    if (area == "systemsharedmemory" || area == "cudasharedmemory") {
      return respond(HandleSharedMemoryRoute(server_->shared_memory(), req, seg));
    }
    if (area == "trace" && seg.size() == 3 && seg[2] == "setting") {
      return TraceSetting(req, "", get, post, std::move(respond));
    }
    respond(NotFoundReply());
  }

 private:
  void Models(const HttpRequest& req, const std::vector<std::string>& seg, bool get, bool post,
              HttpRespond respond) {
    // /v2/models/stats
    if (seg.size() == 3 && seg[2] == "stats") {
      if (!get) return respond(MethodNotAllowed(req.method(), req.path()));
      return respond(JsonReply(ModelStatsJson(server_->LoadedModels())));
    }
    if (seg.size() < 3) return respond(NotFoundReply());
    const std::string& name = seg[2];
    size_t i = 3;
    std::string version_text;
    if (seg.size() >= 5 && seg[3] == "versions") {
      version_text = seg[4];
      i = 5;
    }
    auto version = ParseModelVersion(version_text);
    if (!version.ok()) return respond(ErrorReply(version.status()));
    std::string_view action = i < seg.size() ? std::string_view(seg[i]) : std::string_view();
    if (action == "trace" && i == 3 && seg.size() == 5 && seg[4] == "setting") {
      return TraceSetting(req, name, get, post, std::move(respond));
    }
    if (i + 1 < seg.size()) return respond(NotFoundReply());

    if (action == "infer") {
      if (!post) return respond(MethodNotAllowed(req.method(), req.path()));
      return Infer(req, name, *version, std::move(respond));
    }
    if (!get) return respond(MethodNotAllowed(req.method(), req.path()));
    if (action == "stats") {
      std::vector<std::shared_ptr<ModelVersion>> selected;
      for (auto& m : server_->LoadedModels()) {
        if (m->name() == name && (*version < 0 || m->version() == *version)) {
          selected.push_back(std::move(m));
        }
      }
      if (selected.empty()) {
        auto model = server_->GetModel(name, *version);
        return respond(ErrorReply(model.ok() ? NotFound("no statistics for model '" + name + "'")
                                             : model.status()));
      }
      return respond(JsonReply(ModelStatsJson(selected)));
    }
    auto model = server_->GetModel(name, *version);
    if (action == "ready") {
      if (!model.ok()) return respond(ErrorReply(model.status()));
      return respond(EmptyReply(200));
    }
    if (!model.ok()) return respond(ErrorReply(model.status()));
    if (action == "config") return respond(JsonReply(ModelConfigToJson((*model)->config())));
    if (action.empty()) {
      std::vector<int64_t> versions;
      if (*version >= 0) {
        versions.push_back(*version);
      } else {
        for (const auto& m : server_->LoadedModels())
          if (m->name() == name) versions.push_back(m->version());
        std::sort(versions.begin(), versions.end());
      }
      return respond(JsonReply(ModelMetadataJson(**model, versions)));
    }
    respond(NotFoundReply());
  }

  void Infer(const HttpRequest& req, const std::string& name, int64_t version,
             HttpRespond respond) {
    std::string_view encoding = req.header("Content-Encoding");
    if (!encoding.empty() && encoding != "identity") {
      return respond(ErrorReply(Unimplemented("Content-Encoding '" + std::string(encoding) +
                                              "' is not supported; send the body uncompressed")));
    }
    InferReplyFormat format;
    auto parsed = ParseInferRequest(req.body_data(), req.body_size(),
                                    std::shared_ptr<const void>(req.body_owner(), req.body_data()),
                                    req.header("Inference-Header-Content-Length"), name, version,
                                    &format, &server_->shared_memory());
    if (!parsed.ok()) {
      return respond(ErrorReply(parsed.status().WithContext("model '" + name + "': ")));
    }
    std::unique_ptr<InferenceRequest> request = std::move(parsed).value();
    request->endpoint = "HTTP end point";
    // This is the connection's I/O thread: a cheap model may run right here and the
    // reply is written without crossing threads (the scheduler decides).
    request->may_run_inline = true;
    // Serialized on the thread that finished the request; when that is not this one,
    // the listener makes the single hand-off back to the connection's I/O thread.
    request->on_complete = [respond = std::move(respond), format = std::move(format)](
                               std::unique_ptr<InferenceResponse> response) {
      respond(SerializeInferResponse(*response, format));
    };
    server_->Infer(std::move(request));
  }

  void Repository(const HttpRequest& req, const std::vector<std::string>& seg, bool post,
                  HttpRespond respond) {
    if (seg.size() == 3 && seg[2] == "index") {
      if (!post) return respond(MethodNotAllowed(req.method(), req.path()));
      auto ready_only = ParseIndexReadyOnly(*req.body());
      if (!ready_only.ok()) return respond(ErrorReply(ready_only.status()));
      return respond(JsonReply(RepositoryIndexJson(server_->RepositoryIndex(*ready_only))));
    }
    if (seg.size() == 5 && seg[2] == "models" && (seg[4] == "load" || seg[4] == "unload")) {
      if (!post) return respond(MethodNotAllowed(req.method(), req.path()));
      const std::string name = seg[3];
      InferenceServer* server = server_;
      if (seg[4] == "load") {
        auto load = ParseLoadRequest(*req.body());
        if (!load.ok()) return respond(ErrorReply(load.status()));
        PostOrRefuse(
            [server, name, config = load->config_json, respond] {
              Status st = server->LoadModel(name, config);
              respond(st.ok() ? EmptyReply(200) : ErrorReply(st));
            },
            respond);
      } else {
        auto dependents = ParseUnloadDependents(*req.body());
        if (!dependents.ok()) return respond(ErrorReply(dependents.status()));
        PostOrRefuse(
            [server, name, dependents = *dependents, respond] {
              Status st = server->UnloadModel(name, dependents);
              respond(st.ok() ? EmptyReply(200) : ErrorReply(st));
            },
            respond);
      }
      return;
    }
    respond(NotFoundReply());
  }

  void Logging(const HttpRequest& req, bool get, bool post, HttpRespond respond) {
    if (get) return respond(JsonReply(LogSettingsJson(CurrentLogSettings())));
    if (!post) return respond(MethodNotAllowed(req.method(), req.path()));
    LogSettings settings = CurrentLogSettings();
    Status st = UpdateLogSettings(*req.body(), &settings);
    if (!st.ok()) return respond(ErrorReply(st));
    st = ConfigureLogging(settings);
    if (!st.ok()) return respond(ErrorReply(st));
    respond(JsonReply(LogSettingsJson(CurrentLogSettings())));
  }

  // Triton's trace extension; `model` "" for the global settings.
  void TraceSetting(const HttpRequest& req, const std::string& model, bool get, bool post,
                    HttpRespond respond) {
    if (!get && !post) return respond(MethodNotAllowed(req.method(), req.path()));
    if (!model.empty()) {
      auto found = server_->GetModel(model, -1);
      if (!found.ok()) return respond(ErrorReply(found.status()));
    }
    if (get) return respond(JsonReply(TraceSettingsJson(server_->tracer().Get(model))));
    auto update = ParseTraceSettingRequest(*req.body());
    if (!update.ok()) return respond(ErrorReply(update.status()));
    auto settings = server_->tracer().Update(model, *update);
    if (!settings.ok()) return respond(ErrorReply(settings.status()));
    respond(JsonReply(TraceSettingsJson(*settings)));
  }

  void PostOrRefuse(std::function<void()> job, const HttpRespond& respond) {
    if (!worker_.Post(std::move(job))) {
      respond(ErrorReply(Unavailable("the server is shutting down")));
    }
  }

  using Clock = std::chrono::steady_clock;
  InferenceServer* server_;
  std::optional<ConsoleFacts> console_;  // unset: --allow-console=false
  BlockingWorker worker_;
};

}  // namespace

std::optional<ApiGroup> KServeApiGroup(std::string_view path) {
  std::vector<std::string> seg;
  if (!SplitPath(path, &seg)) return std::nullopt;
  return GroupOf(seg);
}

KServeHttp MakeKServeHttp(InferenceServer* server, const HttpOptions& options) {
  KServeHttp out;
  HttpListenerOptions& lo = out.listener;
  lo.address = options.address;
  lo.port = options.port;
  lo.threads = options.thread_count;
  lo.max_body_size = options.max_input_size;
  lo.max_header_size = options.max_header_size;
  lo.idle_timeout_ms = options.idle_timeout_secs * 1000;
  lo.request_timeout_ms = options.request_timeout_secs * 1000;
  lo.max_connections = options.max_connections;
  if (options.auth && options.auth->active()) {
    lo.precheck = [auth = options.auth](const HttpRequest& req) { return CheckAccess(*auth, req); };
  }
  auto router = std::make_shared<Router>(server, options.console);
  out.handler = [router](const HttpRequest& req, HttpRespond respond) {
    router->Handle(req, std::move(respond));
  };
  out.stop = [router] { router->Stop(); };
  return out;
}

}  // namespace flowserve
