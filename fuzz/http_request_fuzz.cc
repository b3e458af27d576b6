// Raw bytes as one keep-alive connection carries them, through the KServe frontend's real
// routes (fuzz/http_route.h). Each request is parsed with the listener's parser limits,
// header first: the auth precheck sees the header alone, then the body is read and the
// router answers. Requests follow one another as pipelined on a socket, so one input can
// unload a model and then call it; the connection ends where the listener would close it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "frontends/http/beast.h"
#include "fuzz/http_route.h"

namespace bhttp = flowserve::http_detail::bhttp;
namespace beast = flowserve::http_detail::beast;

namespace {

constexpr int kMaxRequests = 16;

// Feeds `rest` to the parser until it stops (with eager off: at the header's end), taking
// what it consumed off `rest`; false on a malformed or over-limit request (the listener
// answers 400 / 413 / 431 and closes) or one that needs bytes the input lacks.
bool Feed(bhttp::request_parser<bhttp::string_body>& parser, std::string_view& rest,
          bool until_done) {
  while (until_done ? !parser.is_done() : !parser.is_header_done()) {
    beast::error_code ec;
    const size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    rest.remove_prefix(used);
    if (ec || used == 0) return false;
  }
  return true;
}

// One request off the front of `rest`; false when the connection ends after it.
bool OneRequest(std::string_view& rest) {
  const flowserve::HttpListenerOptions& limits = flowserve::fuzz::Frontend().listener;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.body_limit(limits.max_body_size);
  parser.header_limit(
      static_cast<std::uint32_t>(std::min<size_t>(limits.max_header_size, UINT32_MAX)));
  parser.eager(false);
  if (!Feed(parser, rest, false)) return false;
  if (auto refusal = flowserve::fuzz::Precheck(parser.get())) {
    // The unread body would be taken for the next request: the listener closes.
    return parser.is_done() && parser.get().keep_alive();
  }
  parser.eager(true);
  if (!Feed(parser, rest, true)) return false;
  flowserve::fuzz::Handle(parser.get());
  return parser.get().keep_alive();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  flowserve::fuzz::Frontend();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int i = 0; i < kMaxRequests && !rest.empty() && OneRequest(rest); ++i) {
  }
  flowserve::fuzz::Reset();
  return 0;
}
