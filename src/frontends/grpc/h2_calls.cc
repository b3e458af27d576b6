// The methods of the nghttp2 engine: ModelInfer and ModelStreamInfer parsed from the
// received bytes and handed to the core, every other RPC forwarded unchanged to the
// grpc++ Service through its in-process channel.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/client_activity.h"
#include "core/api_auth.h"
#include "core/server.h"
#include "frontends/grpc/h2_connection.h"
#include "frontends/grpc/h2_loop.h"
#include "frontends/grpc/infer_convert.h"

namespace flowserve::grpc_frontend {

using inference::ModelInferRequest;
using inference::ModelInferResponse;

namespace {

constexpr std::string_view kModelInfer = "/inference.GRPCInferenceService/ModelInfer";
constexpr std::string_view kModelStreamInfer = "/inference.GRPCInferenceService/ModelStreamInfer";
constexpr int kInternal = 13;

// Where an answer goes: the loop owning the connection, and the stream on it. Answers
// for a stream or connection that closed meanwhile are dropped there.
struct Target {
  std::shared_ptr<H2Loop> loop;
  uint64_t conn;
  int32_t stream;
};

Target TargetOf(H2Connection& c, H2Stream& s) {
  return {c.loop()->shared_from_this(), c.id(), s.id};
}

class StreamHeaders final : public HeaderSource {
 public:
  explicit StreamHeaders(const H2Stream& s) : s_(s) {}
  std::string_view Get(std::string_view name) const override {
    for (const auto& [k, v] : s_.metadata) {
      if (k == name) return v;
    }
    return {};
  }

 private:
  const H2Stream& s_;
};

Status Authorize(H2Connection& c, const H2Stream& s) {
  const auto& auth = c.ctx().auth;
  if (!auth) return Status::Ok();
  return auth->Check(ApiGroup::kInference, StreamHeaders(s));
}

template <typename Message>
std::string Serialize(const Message& m) {
  const size_t size = m.ByteSizeLong();
  std::string framed = FrameMessage(size);
  m.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(framed.data()) + 5);
  return framed;
}

// Parses a request; responses of the same call reuse nothing, so a message is its own
// owner for the tensors that point into it.
std::shared_ptr<ModelInferRequest> Parse(std::string_view bytes) {
  auto msg = std::make_shared<ModelInferRequest>();
  if (!msg->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return nullptr;
  return msg;
}

// A unary method: exactly one request message, handled by Start.
class UnaryCall : public H2Call {
 public:
  void OnMessage(H2Connection& c, H2Stream& s, std::string_view bytes) final {
    if (started_) return c.Finish(s, kInternal, "more than one request message in a unary call");
    started_ = true;
    Start(c, s, bytes);
  }
  void OnHalfClose(H2Connection& c, H2Stream& s) final {
    if (!started_) c.Finish(s, kInternal, "the call ended without a request message");
  }

 protected:
  virtual void Start(H2Connection& c, H2Stream& s, std::string_view bytes) = 0;

 private:
  bool started_ = false;
};

// ---- ModelInfer ---------------------------------------------------------------------

class UnaryInfer final : public UnaryCall {
  void Start(H2Connection& c, H2Stream& s, std::string_view bytes) override {
    auto msg = Parse(bytes);
    if (!msg) return c.Finish(s, kInternal, "cannot parse the ModelInferRequest message");
    NoteRequestFrom(static_cast<uintptr_t>(c.id()));
    InferenceServer* server = c.ctx().server;
    auto request = std::make_unique<InferenceRequest>();
    std::vector<SharedMemoryOutput> shm_outputs;
    Status st =
        ToInferenceRequest(*msg, msg, request.get(), &server->shared_memory(), &shm_outputs);
    if (!st.ok()) return c.Finish(s, st.GrpcCode(), st.message());
    request->endpoint = "ModelInfer RPC";
    // A cheap model runs here on the loop thread and its answer is written by the same
    // event's flush: no thread hand-off at all.
    request->may_run_inline = true;
    H2Context* ctx = &c.ctx();
    request->on_complete = [target = TargetOf(c, s), ctx, shm_outputs = std::move(shm_outputs)](
                               std::unique_ptr<InferenceResponse> r) {
      Status done = r->status;
      std::string framed;
      if (done.ok()) {
        ModelInferResponse response;
        done = ToModelInferResponse(*r, shm_outputs, &response);
        if (done.ok()) framed = Serialize(response);
      }
      r.reset();
      target.loop->RunOn(target.conn, [id = target.stream, done = std::move(done),
                                       framed = std::move(framed)](H2Connection& c) mutable {
        H2Stream* s = c.stream(id);
        if (s == nullptr) return;
        if (!done.ok()) return c.Finish(*s, done.GrpcCode(), done.message());
        c.SendMessage(*s, std::move(framed));
        c.Finish(*s, 0, {});
      });
      ctx->calls_in_core.fetch_sub(1, std::memory_order_acq_rel);
    };
    ctx->calls_in_core.fetch_add(1, std::memory_order_acq_rel);
    server->Infer(std::move(request));
  }
};

// ---- ModelStreamInfer ---------------------------------------------------------------

// Submits each request as it arrives, so many are in flight and answer in any order
// (decoupled models answer any number of times). The call ends OK once the client has
// half-closed and every request has had its final answer.
class StreamInfer final : public H2Call {
 public:
  void OnMessage(H2Connection& c, H2Stream& s, std::string_view bytes) override {
    auto msg = Parse(bytes);
    if (!msg) return c.Finish(s, kInternal, "cannot parse the ModelInferRequest message");
    NoteRequestFrom(static_cast<uintptr_t>(c.id() << 32 | static_cast<uint32_t>(s.id)));
    InferenceServer* server = c.ctx().server;
    StreamRequestInfo info = StreamInfoOf(*msg);
    auto request = std::make_unique<InferenceRequest>();
    std::vector<SharedMemoryOutput> shm_outputs;
    Status st =
        ToInferenceRequest(*msg, msg, request.get(), &server->shared_memory(), &shm_outputs);
    if (!st.ok()) return c.SendMessage(s, Serialize(*StreamError(info, st)));
    ++in_flight_;
    request->multiple_responses = true;
    request->may_run_inline = true;
    H2Context* ctx = &c.ctx();
    request->on_complete = [target = TargetOf(c, s), ctx, info = std::move(info),
                            shm_outputs =
                                std::move(shm_outputs)](std::unique_ptr<InferenceResponse> r) {
      const bool final = r->final;
      auto out = ToStreamResponse(*r, shm_outputs, info);
      std::string framed = out ? Serialize(*out) : std::string();
      out.reset();
      r.reset();
      target.loop->RunOn(target.conn, [id = target.stream, final,
                                       framed = std::move(framed)](H2Connection& c) mutable {
        H2Stream* s = c.stream(id);
        if (s == nullptr) return;
        if (!framed.empty()) c.SendMessage(*s, std::move(framed));
        if (final) static_cast<StreamInfer*>(s->call.get())->Answered(c, *s);
      });
      if (final) ctx->calls_in_core.fetch_sub(1, std::memory_order_acq_rel);
    };
    ctx->calls_in_core.fetch_add(1, std::memory_order_acq_rel);
    server->Infer(std::move(request));
  }

  void OnHalfClose(H2Connection& c, H2Stream& s) override { MaybeFinish(c, s); }

  void Answered(H2Connection& c, H2Stream& s) {
    --in_flight_;
    MaybeFinish(c, s);
  }

 private:
  void MaybeFinish(H2Connection& c, H2Stream& s) {
    if (s.remote_closed && in_flight_ == 0) c.Finish(s, 0, {});
  }

  int64_t in_flight_ = 0;
};

// ---- every other RPC: the grpc++ Service, in process -----------------------------------

// Binary metadata ("-bin" keys) travels base64-encoded (padding optional); grpc++ takes
// the raw bytes.
std::string Base64Decode(std::string_view in) {
  auto value = [](char ch) -> int {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : in) {
    int v = value(ch);
    if (v < 0) continue;  // padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

class Forward final : public UnaryCall {
  void Start(H2Connection& c, H2Stream& s, std::string_view bytes) override {
    struct Pending {
      grpc::ClientContext context;
      grpc::ByteBuffer request, response;
    };
    auto call = std::make_shared<Pending>();
    for (const auto& [key, value] : s.metadata) {
      const bool binary = key.size() > 4 && key.compare(key.size() - 4, 4, "-bin") == 0;
      call->context.AddMetadata(key, binary ? Base64Decode(value) : value);
    }
    if (s.timeout_us > 0) {
      call->context.set_deadline(std::chrono::system_clock::now() +
                                 std::chrono::microseconds(s.timeout_us));
    }
    grpc::Slice slice(bytes.data(), bytes.size());
    call->request = grpc::ByteBuffer(&slice, 1);
    grpc::GenericStub stub(c.ctx().forward);
    stub.UnaryCall(&call->context, s.path, grpc::StubOptions(), &call->request, &call->response,
                   [call, target = TargetOf(c, s)](grpc::Status st) {
                     std::string framed;
                     if (st.ok()) {
                       std::vector<grpc::Slice> slices;
                       (void)call->response.Dump(&slices);
                       size_t size = 0;
                       for (const auto& sl : slices) size += sl.size();
                       framed = FrameMessage(size);
                       size_t at = 5;
                       for (const auto& sl : slices) {
                         std::memcpy(framed.data() + at, sl.begin(), sl.size());
                         at += sl.size();
                       }
                     }
                     target.loop->RunOn(
                         target.conn, [id = target.stream, code = static_cast<int>(st.error_code()),
                                       message = st.error_message(),
                                       framed = std::move(framed)](H2Connection& c) mutable {
                           H2Stream* s = c.stream(id);
                           if (s == nullptr) return;
                           if (code == 0) c.SendMessage(*s, std::move(framed));
                           c.Finish(*s, code, message);
                         });
                   });
  }
};

}  // namespace

std::unique_ptr<H2Call> MakeH2Call(H2Connection& c, H2Stream& s) {
  const bool unary = s.path == kModelInfer;
  if (unary || s.path == kModelStreamInfer) {
    if (Status st = Authorize(c, s); !st.ok()) {
      c.Finish(s, st.GrpcCode(), st.message());
      return nullptr;
    }
    if (unary) return std::make_unique<UnaryInfer>();
    return std::make_unique<StreamInfer>();
  }
  return std::make_unique<Forward>();
}

}  // namespace flowserve::grpc_frontend
