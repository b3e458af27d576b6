#pragma once
// The KServe HTTP frontend in the fuzzer's process: Beast-parsed requests go through the
// auth precheck and the real router (kserve_router.h) over the in-process core, handed
// over the way the listener hands them, minus the socket. Every reply is checked against
// what the listener needs to write it: answered once, within a deadline, a known status,
// header lines that cannot split, JSON that parses, chunks that can be read.
#include <optional>
#include <string>
#include <string_view>

#include "frontends/http/beast.h"
#include "frontends/http/kserve_router.h"

namespace flowserve::fuzz {

using HttpMessage = http_detail::bhttp::request<http_detail::bhttp::string_body>;

// Credentials the frontend's auth takes (the seeds carry them). The model-repository and
// logging groups need the header rule; every other group but health needs a token:
// kToken opens all of them, kReaderToken only metadata, model-config and statistics.
inline constexpr std::string_view kToken = "fuzz-token";
inline constexpr std::string_view kReaderToken = "fuzz-reader";
inline constexpr std::string_view kAdminHeader = "X-Fuzz-Admin";
inline constexpr std::string_view kAdminValue = "open";

// Built once over Server(): default HttpOptions plus the auth above.
const KServeHttp& Frontend();

// The precheck on `msg`'s header (body not read), as the listener runs it; nullopt lets
// the request through.
std::optional<HttpReply> Precheck(const HttpMessage& msg);
// The router's answer to `msg`, whose body is moved out, once it came.
HttpReply Handle(HttpMessage& msg);

// Undoes what one input's requests changed in the process (models unloaded or loaded with
// another config, log settings), so that every input meets the same server.
void Reset();

// POST /v2/models/<model>/infer with a token, through the precheck and the router;
// `header_length` is the Inference-Header-Content-Length value, none when empty.
HttpReply PostInfer(const std::string& model, std::string_view header_length, std::string body);

// One of the in-process server's plain models (or one it does not have), by a selector.
const std::string& ModelName(unsigned char selector);

}  // namespace flowserve::fuzz
