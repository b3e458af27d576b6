#include "fuzz/http_route.h"

#include <rapidjson/document.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <utility>

#include "common/logging.h"
#include "core/api_auth.h"
#include "frontends/http/infer_codec.h"
#include "frontends/http/model_json.h"
#include "fuzz/inprocess_server.h"

namespace flowserve::fuzz {
namespace {

namespace bhttp = http_detail::bhttp;

// The identity models answer in microseconds and a load takes milliseconds: a request
// still unanswered after this never will be (its connection would hang).
constexpr auto kAnswerDeadline = std::chrono::seconds(5);

[[noreturn]] void Die(const HttpMessage& msg, const std::string& what) {
  std::string target(msg.target().substr(0, 200));
  std::fprintf(stderr, "fuzz: %s %s: %s\n", std::string(msg.method_string()).c_str(),
               target.c_str(), what.c_str());
  std::abort();
}

LogSettings QuietLogSettings() {
  LogSettings s;
  s.info = s.warning = s.error = false;
  return s;
}

bool SameLogSettings(const LogSettings& a, const LogSettings& b) {
  return a.info == b.info && a.warning == b.warning && a.error == b.error &&
         a.verbose == b.verbose && a.format == b.format && a.file == b.file;
}

void QuietLogging() {
  if (!ConfigureLogging(QuietLogSettings()).ok()) std::abort();
}

const bhttp::fields* Fields(const HttpMessage& msg) { return &msg; }

std::string_view PathOf(const HttpMessage& msg) {
  std::string_view target = msg.target();
  return target.substr(0, target.find('?'));
}

// POST /v2/logging with a log_file would have the fuzzer create files wherever it likes
// (spdlog makes the directories too).
bool NamesLogFile(const HttpMessage& msg, const std::string& body) {
  if (msg.method() != bhttp::verb::post || KServeApiGroup(PathOf(msg)) != ApiGroup::kLogging) {
    return false;
  }
  LogSettings settings = CurrentLogSettings();
  return UpdateLogSettings(body, &settings).ok() && !settings.file.empty();
}

bool BreaksHeaderLine(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

void Check(const HttpReply& reply, const HttpMessage& msg) {
  if (HttpReasonPhrase(reply.status) == "Unknown") {
    Die(msg, "status " + std::to_string(reply.status) + " has no reason phrase");
  }
  if (BreaksHeaderLine(reply.content_type)) Die(msg, "the content type breaks its header line");
  std::string_view json_length;
  for (const auto& [name, value] : reply.headers) {
    if (name.empty() || name.find(':') != std::string::npos || BreaksHeaderLine(name) ||
        BreaksHeaderLine(value)) {
      Die(msg, "header '" + name + "' breaks its header line");
    }
    if (name == "Inference-Header-Content-Length") json_length = value;
  }
  if (!json_length.empty() && json_length != std::to_string(reply.body.size())) {
    Die(msg, "Inference-Header-Content-Length " + std::string(json_length) + " but " +
                 std::to_string(reply.body.size()) + " JSON bytes");
  }
  if (!reply.body.empty() && (reply.content_type == "application/json" || !json_length.empty())) {
    rapidjson::Document doc;
    // NaN and Infinity are the writer's deliberate spelling for non-finite floats.
    doc.Parse<rapidjson::kParseNanAndInfFlag>(reply.body.data(), reply.body.size());
    if (doc.HasParseError()) {
      Die(msg, "the reply is not JSON (at byte " + std::to_string(doc.GetErrorOffset()) +
                   "): " + reply.body.substr(0, 300));
    }
  }
  // The listener writes every chunk: one pointing at freed or short memory shows up here.
  unsigned sum = 0;
  for (const auto& c : reply.chunks) {
    if (c.size > 0 && c.data == nullptr) Die(msg, "a body chunk without data");
    for (size_t i = 0; i < c.size; ++i) sum += static_cast<unsigned char>(c.data[i]);
  }
  volatile unsigned sink = sum;
  (void)sink;
}

// One request's answer: the handler may give it from any thread, exactly once.
struct Answer {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  HttpReply reply;
};

}  // namespace

const KServeHttp& Frontend() {
  static const KServeHttp* frontend = [] {
    InferenceServer& server = Server();
    const std::string tokens = TempDir() + "/tokens";
    std::ofstream(tokens) << kToken << "\n"
                          << kReaderToken << " metadata,model-config,statistics\n";
    auto file = TokenFile::Open(tokens);
    auto auth = file.ok()
                    ? ApiAuth::Create({"model-repository,logging:" + std::string(kAdminHeader) +
                                       "=" + std::string(kAdminValue)},
                                      "", file.value())
                    : file.status();
    if (!auth.ok()) {
      std::fprintf(stderr, "fuzz: auth: %s\n", auth.status().message().c_str());
      std::abort();
    }
    HttpOptions options;
    options.auth = auth.value();
    QuietLogging();
    return new KServeHttp(MakeKServeHttp(&server, options));  // lives as long as the process
  }();
  return *frontend;
}

std::optional<HttpReply> Precheck(const HttpMessage& msg) {
  const HttpPrecheck& precheck = Frontend().listener.precheck;
  if (!precheck) return std::nullopt;
  HttpRequest request;
  FillHttpRequest(request, msg.method_string(), msg.target(), Fields(msg), nullptr);
  std::optional<HttpReply> refusal = precheck(request);
  if (refusal) Check(*refusal, msg);
  return refusal;
}

HttpReply Handle(HttpMessage& msg) {
  auto body = std::make_shared<std::string>(std::move(msg.body()));
  if (NamesLogFile(msg, *body)) return ErrorReply(InvalidArgument("fuzz: no log files"));
  HttpRequest request;
  FillHttpRequest(request, msg.method_string(), msg.target(), Fields(msg), std::move(body));
  auto answer = std::make_shared<Answer>();
  Frontend().handler(request, [answer](HttpReply reply) {
    std::lock_guard<std::mutex> lock(answer->mu);
    if (++answer->calls > 1) {
      std::fprintf(stderr, "fuzz: a request was answered twice\n");
      std::abort();
    }
    answer->reply = std::move(reply);
    answer->cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(answer->mu);
  if (!answer->cv.wait_for(lock, kAnswerDeadline, [&] { return answer->calls > 0; })) {
    Die(msg, "no answer within " + std::to_string(kAnswerDeadline.count()) + " s");
  }
  HttpReply reply = std::move(answer->reply);
  lock.unlock();
  Check(reply, msg);
  return reply;
}

void Reset() {
  RestoreModels();
  if (!SameLogSettings(CurrentLogSettings(), QuietLogSettings())) QuietLogging();
}

HttpReply PostInfer(const std::string& model, std::string_view header_length, std::string body) {
  // Over the listener's header limit (the rest of this header takes < 256 bytes): refused
  // (431) before any route sees it.
  if (header_length.size() + 256 > Frontend().listener.max_header_size) {
    HttpReply refused;
    refused.status = 431;
    return refused;
  }
  HttpMessage msg(bhttp::verb::post, "/v2/models/" + model + "/infer", 11);
  msg.set(bhttp::field::authorization, "Bearer " + std::string(kToken));
  if (!header_length.empty()) msg.set("Inference-Header-Content-Length", header_length);
  msg.body() = std::move(body);
  msg.prepare_payload();
  if (auto refusal = Precheck(msg)) Die(msg, "the token was refused: " + refusal->body);
  return Handle(msg);
}

const std::string& ModelName(unsigned char selector) {
  static const std::string kNames[] = {"simple", "bytes", "multi", "batched", "missing"};
  return kNames[selector % (sizeof(kNames) / sizeof(kNames[0]))];
}

}  // namespace flowserve::fuzz
