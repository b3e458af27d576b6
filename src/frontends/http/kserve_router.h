#pragma once
// The KServe v2 routes with Triton's extensions (health, metadata, config, infer,
// repository, statistics, logging, trace) and their auth precheck, as a handler any transport
// can feed: HttpServer's listener, or a harness in the same process with no socket.
#include <functional>
#include <optional>
#include <string_view>

#include "core/api_auth.h"
#include "frontends/http/http_listener.h"
#include "frontends/http/http_server.h"

namespace flowserve {

class InferenceServer;

struct KServeHttp {
  // `options` as the listener takes them (its parser limits among them), with the auth
  // precheck set when some API group needs credentials.
  HttpListenerOptions listener;
  HttpHandler handler;
  // Lets the model load or unload in progress (and any queued) finish, then ends the
  // thread that runs them; later ones are answered 503. Call before the core goes away.
  // Idempotent.
  std::function<void()> stop;
};

// `server` must outlive every use of the handler.
KServeHttp MakeKServeHttp(InferenceServer* server, const HttpOptions& options);

// The API group of a request path, as the auth precheck files it; nullopt for a path that
// is no API (404 whoever asks) or that is malformed.
std::optional<ApiGroup> KServeApiGroup(std::string_view path);

}  // namespace flowserve
