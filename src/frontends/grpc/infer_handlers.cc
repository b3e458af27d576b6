#include "frontends/grpc/infer_handlers.h"

#include <atomic>
#include <deque>
#include <functional>
#include <string>
#include <utility>

#include "common/client_activity.h"
#include "core/server.h"
#include "frontends/grpc/infer_convert.h"

namespace flowserve::grpc_frontend {

using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelStreamInferResponse;

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.GrpcCode()), status.message());
}

// ---- message pool -------------------------------------------------------------------

struct InferMessages : grpc::MessageHolder<ModelInferRequest, ModelInferResponse> {
  InferMessages() {
    set_request(&request);
    set_response(&response);
  }
  // grpc is done with the pair; tensors in the core may still hold it through `self`.
  void Release() override { auto keep = std::move(self); }

  ModelInferRequest request;
  ModelInferResponse response;
  std::shared_ptr<InferMessages> self;
};

namespace {
// Buffers above this are given back to the allocator rather than pooled, so one huge
// request does not pin its memory for the life of the server.
constexpr size_t kMaxPooledPayload = 1 << 20;

size_t Payload(const InferMessages& m) {
  size_t n = 0;
  for (const auto& s : m.request.raw_input_contents()) n += s.capacity();
  for (const auto& s : m.response.raw_output_contents()) n += s.capacity();
  return n;
}
}  // namespace

InferMessagePool::~InferMessagePool() {
  for (InferMessages* m : free_) delete m;
}

grpc::MessageHolder<ModelInferRequest, ModelInferResponse>* InferMessagePool::AllocateMessages() {
  InferMessages* m = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      m = free_.back();
      free_.pop_back();
    }
  }
  if (m == nullptr) m = new InferMessages();
  m->self = std::shared_ptr<InferMessages>(
      m, [pool = shared_from_this()](InferMessages* x) { pool->Recycle(x); });
  return m;
}

std::shared_ptr<const void> InferMessagePool::Owner(grpc::RpcAllocatorState* state) {
  return static_cast<InferMessages*>(state)->self;
}

void InferMessagePool::Recycle(InferMessages* m) {
  if (Payload(*m) <= kMaxPooledPayload) {
    m->request.Clear();
    m->response.Clear();
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < capacity_) {
      free_.push_back(m);
      return;
    }
  }
  delete m;
}

// ---- unary --------------------------------------------------------------------------

grpc::ServerUnaryReactor* HandleModelInfer(InferenceServer* server,
                                           grpc::CallbackServerContext* context,
                                           const ModelInferRequest* request,
                                           ModelInferResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // The peer names the client's connection, which carries all of a channel's calls.
  NoteRequestFrom(std::hash<std::string>{}(context->peer()));
  auto core_request = std::make_unique<InferenceRequest>();
  std::shared_ptr<const void> owner = InferMessagePool::Owner(context->GetRpcAllocatorState());
  std::vector<SharedMemoryOutput> shm_outputs;
  Status st = ToInferenceRequest(*request, owner, core_request.get(), &server->shared_memory(),
                                 &shm_outputs);
  if (!st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  core_request->endpoint = "ModelInfer RPC";
  // This is one of grpc's callback threads: a cheap model may run right here, and the
  // answer is then finished inside the handler, which grpc sends without waking another
  // thread (the scheduler decides, as for HTTP's I/O threads).
  core_request->may_run_inline = true;
  // grpc keeps `response` alive until Finish, and the core calls this exactly once.
  // The pair goes back to the pool when the last reference to it drops, and the core
  // drops the request's (input tensors) before this runs. Holding one until after
  // Finish makes the reference count itself order these writes before the pair's
  // Clear() and reuse, instead of relying only on grpc's hand-off of the finished call.
  core_request->on_complete =
      [reactor, response, owner = std::move(owner),
       shm_outputs = std::move(shm_outputs)](std::unique_ptr<InferenceResponse> r) mutable {
        Status done = r->status.ok() ? ToModelInferResponse(*r, shm_outputs, response) : r->status;
        reactor->Finish(done.ok() ? grpc::Status::OK : ToGrpcStatus(done));
        owner.reset();
      };
  server->Infer(std::move(core_request));
  return reactor;
}

// ---- bidirectional stream -----------------------------------------------------------

namespace {

// Reads requests as fast as the client sends them and submits each at once, so many
// are in flight and complete in any order. Answers are written one at a time from a
// queue (grpc allows one outstanding write). The call ends OK once the client has
// half-closed and every submitted request has been answered.
class StreamInferReactor
    : public grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse> {
 public:
  explicit StreamInferReactor(InferenceServer* server) : server_(server) { NextRead(); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        reads_done_ = true;
      }
      MaybeFinish();
      return;
    }
    Submit(std::move(reading_));
    NextRead();
  }

  void OnWriteDone(bool ok) override {
    ModelStreamInferResponse* next = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.pop_front();
      if (!ok) {
        // The client is gone: nothing more can be delivered.
        broken_ = true;
        queue_.clear();
      }
      if (queue_.empty()) {
        writing_ = false;
      } else {
        next = queue_.front().get();
      }
    }
    if (next != nullptr) {
      StartWrite(next);
    } else {
      MaybeFinish();
    }
  }

  void OnDone() override { Unref(); }

 private:
  void NextRead() {
    reading_ = std::make_shared<ModelInferRequest>();
    StartRead(reading_.get());
  }

  void Submit(std::shared_ptr<ModelInferRequest> msg) {
    NoteRequestFrom(reinterpret_cast<uintptr_t>(this));
    auto request = std::make_unique<InferenceRequest>();
    std::vector<SharedMemoryOutput> shm_outputs;
    Status st =
        ToInferenceRequest(*msg, msg, request.get(), &server_->shared_memory(), &shm_outputs);
    if (!st.ok()) {
      Push(StreamError(StreamInfoOf(*msg), st));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
    }
    refs_.fetch_add(1, std::memory_order_relaxed);
    // A decoupled model answers with any number of responses, the last one final.
    request->multiple_responses = true;
    // On grpc's callback thread, as for unary calls; the answer is then written from
    // inside OnReadDone.
    request->may_run_inline = true;
    request->on_complete = [this, info = StreamInfoOf(*msg), shm_outputs = std::move(shm_outputs)](
                               std::unique_ptr<InferenceResponse> r) {
      const bool final = r->final;
      if (auto out = ToStreamResponse(*r, shm_outputs, info)) Push(std::move(out));
      if (!final) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        --in_flight_;
      }
      MaybeFinish();
      Unref();
    };
    server_->Infer(std::move(request));
  }

  void Push(std::unique_ptr<ModelStreamInferResponse> response) {
    ModelStreamInferResponse* start = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (broken_ || finished_) return;
      queue_.push_back(std::move(response));
      if (!writing_) {
        writing_ = true;
        start = queue_.front().get();
      }
    }
    // Outside the lock: a reaction may run inline from StartWrite.
    if (start != nullptr) StartWrite(start);
  }

  void MaybeFinish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_ || !reads_done_ || in_flight_ > 0 || writing_) return;
      finished_ = true;
    }
    Finish(grpc::Status::OK);
  }

  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  InferenceServer* server_;
  std::shared_ptr<ModelInferRequest> reading_;  // touched only by the read chain
  // One reference for grpc (until OnDone) and one per request in the core.
  std::atomic<int> refs_{1};

  std::mutex mu_;
  std::deque<std::unique_ptr<ModelStreamInferResponse>> queue_;  // front is being written
  bool writing_ = false;
  bool reads_done_ = false;
  bool broken_ = false;
  bool finished_ = false;
  int64_t in_flight_ = 0;
};

}  // namespace

grpc::ServerBidiReactor<ModelInferRequest, ModelStreamInferResponse>* NewStreamInferReactor(
    InferenceServer* server) {
  return new StreamInferReactor(server);
}

}  // namespace flowserve::grpc_frontend
