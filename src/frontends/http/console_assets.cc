#include "frontends/http/console_assets.h"

#include <string>

#include "frontends/http/console_asset_table.h"

namespace flowserve {
namespace {

constexpr std::string_view kPrefix = "/console/";
// Scripts, styles, images and API calls from this origin only; blob: and data: are the
// output images the page itself makes. No inline script or style, no framing.
constexpr std::string_view kPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'";

HttpReply Secured(HttpReply r) {
  r.headers.emplace_back("Content-Security-Policy", std::string(kPolicy));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  return r;
}

HttpReply Plain(int status, std::string text) {
  HttpReply r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(text);
  r.headers.emplace_back("Cache-Control", "no-store");
  return Secured(std::move(r));
}

const ConsoleAsset* Find(std::string_view name) {
  size_t n = 0;
  const ConsoleAsset* assets = ConsoleAssets(&n);
  for (size_t i = 0; i < n; ++i) {
    if (assets[i].name == name) return &assets[i];
  }
  return nullptr;
}

// Hashed names change with their content, so a browser may keep them for good; the
// page that names them must be asked for again each time.
HttpReply AssetReply(const ConsoleAsset& a) {
  HttpReply r;
  r.content_type = a.content_type;
  r.body = std::string(a.bytes);
  const bool hashed = a.name.starts_with("assets/");
  r.headers.emplace_back("Cache-Control",
                         hashed ? "public, max-age=31536000, immutable" : "no-cache");
  return Secured(std::move(r));
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A model page's name: one segment, decoded, never "." or ".." nor holding a separator.
bool IsModelPageName(std::string_view raw) {
  if (raw.empty()) return false;
  std::string name;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%') {
      if (i + 2 >= raw.size()) return false;
      int hi = Hex(raw[i + 1]), lo = Hex(raw[i + 2]);
      if (hi < 0 || lo < 0) return false;
      name += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      name += raw[i];
    }
  }
  if (name == "." || name == "..") return false;
  return name.find_first_of(std::string_view("/\\\0", 3)) == std::string::npos;
}

HttpReply FactsReply(const ConsoleFacts& facts) {
  const auto up = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::steady_clock::now() - facts.started);
  HttpReply r;
  r.body = "{\"uptime_seconds\":" + std::to_string(up.count()) + ",\"model_control_mode\":\"" +
           facts.model_control_mode + "\"}";
  r.headers.emplace_back("Cache-Control", "no-store");
  return Secured(std::move(r));
}

}  // namespace

bool IsConsolePath(std::string_view path) {
  return path == "/console" || path.starts_with(kPrefix);
}

HttpReply ConsoleReply(const HttpRequest& req, const ConsoleFacts& facts) {
  const bool head = req.method() == "HEAD";
  if (req.method() != "GET" && !head) {
    HttpReply r = Plain(405, "method " + std::string(req.method()) + " is not allowed on " +
                                 std::string(req.path()) + "\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  HttpReply reply;
  const std::string_view path = req.path();
  if (path == "/console") {
    reply = Plain(308, "");
    reply.headers.emplace_back("Location", std::string(kPrefix));
  } else {
    std::string_view rest = path.substr(kPrefix.size());
    const ConsoleAsset* index = Find("index.html");
    if (rest == "facts.json") {
      reply = FactsReply(facts);
    } else if (rest.empty() || (rest.starts_with("models/") && IsModelPageName(rest.substr(7)))) {
      reply = index
                  ? AssetReply(*index)
                  : Plain(404, "this build of flowserve has no console (FLOWSERVE_WITH_CONSOLE)\n");
    } else if (const ConsoleAsset* a = Find(rest)) {
      reply = AssetReply(*a);
    } else {
      reply = Plain(404, "no console file '" + std::string(rest) + "'\n");
    }
  }
  if (head) reply.body.clear();
  return reply;
}

}  // namespace flowserve
