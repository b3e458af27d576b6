// Raw HTTP/1.1 bytes through the parser the listener uses (same header limit), then the
// infer route: /v2/models/<name>[/versions/<v>]/infer with the header-length header.
// Other routes live in the frontend's private router and are not reached (see README).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/server.h"
#include "frontends/http/beast.h"
#include "fuzz/http_infer.h"

namespace bhttp = flowserve::http_detail::bhttp;
namespace beast = flowserve::http_detail::beast;

namespace {

// Splits /v2/models/<name>[/versions/<v>]/infer; false for any other path.
bool InferRoute(std::string_view path, std::string& name, std::string& version) {
  constexpr std::string_view kPrefix = "/v2/models/", kSuffix = "/infer";
  if (path.size() <= kPrefix.size() + kSuffix.size() || path.substr(0, kPrefix.size()) != kPrefix ||
      path.substr(path.size() - kSuffix.size()) != kSuffix) {
    return false;
  }
  std::string_view mid = path.substr(kPrefix.size(), path.size() - kPrefix.size() - kSuffix.size());
  const size_t v = mid.find("/versions/");
  name = std::string(mid.substr(0, v));
  version = v == std::string_view::npos ? "" : std::string(mid.substr(v + 10));
  return !name.empty() && name.find('/') == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  auto& req = parser.get();
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  std::string name, version_text;
  if (req.method() != bhttp::verb::post || !InferRoute(target, name, version_text)) return 0;
  auto version = flowserve::ParseModelVersion(version_text);
  if (!version.ok()) return 0;
  auto body = std::make_shared<std::string>(std::move(req.body()));
  std::string length(req["Inference-Header-Content-Length"]);
  flowserve::fuzz::HttpInfer(body, length, name, version.value());
  return 0;
}
