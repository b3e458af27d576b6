#include "core/response_sender.h"

#include <algorithm>
#include <mutex>

#include "core/model_version.h"
#include "core/response_finisher.h"

namespace flowserve {
namespace {

class CoreResponseSender : public ResponseSender {
 public:
  CoreResponseSender(ModelVersion* model, InferenceRequest& request, uint64_t dequeue_ns)
      : model_(model),
        callback_(std::move(request.on_complete)),
        dequeue_ns_(dequeue_ns),
        infer_start_ns_(NowNs()) {
    shape_.id = request.id;
    shape_.outputs = request.outputs;
    shape_.batch_size = request.batch_size;
    shape_.arrival_ns = request.arrival_ns ? request.arrival_ns : request.enqueue_ns;
    shape_.enqueue_ns = request.enqueue_ns;
  }

  ~CoreResponseSender() override {
    if (closed()) return;
    auto resp = std::make_unique<InferenceResponse>();
    resp->status =
        Internal("model '" + model_->name() + "' version " + std::to_string(model_->version()) +
                 " released the request without sending its final response");
    (void)Send(std::move(resp), /*final=*/true);
  }

  bool closed() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

  Status Send(std::unique_ptr<InferenceResponse> response, bool final) override {
    // Under mu_ throughout: a request's responses reach the frontend in the order sent,
    // and nothing after the final one.
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      return InvalidArgument("model '" + model_->name() +
                             "': a response was sent after the request's final response");
    }
    const bool flag_only = response == nullptr;
    if (flag_only) response = std::make_unique<InferenceResponse>();
    response->model_name = model_->name();
    response->model_version = model_->version();
    response->id = shape_.id;
    response->final = final;
    response->flag_only = flag_only;
    FailureReason reason = FailureReason::kBackend;
    if (!flag_only) reason = FinishResponse(*model_, shape_, *response);
    if (!response->status.ok()) failed_ = true;
    if (final) {
      closed_ = true;
      RecordStatistics(reason);
    }
    callback_(std::move(response));
    return Status::Ok();
  }

 private:
  // One inference per request, whatever the number of responses, counted when it ends.
  void RecordStatistics(FailureReason reason) {
    const uint64_t end = NowNs();
    RequestTimes t;
    t.total_ns = end - shape_.arrival_ns;
    t.queue_ns = dequeue_ns_ - shape_.enqueue_ns;
    t.compute_input_ns = infer_start_ns_ - dequeue_ns_;
    t.compute_infer_ns = end - std::min(end, infer_start_ns_);
    if (failed_) {
      model_->stats().RecordFailure(reason, t.total_ns);
    } else {
      model_->stats().RecordSuccess(t, std::max<int64_t>(1, shape_.batch_size));
    }
  }

  ModelVersion* model_;     // outlives the sender: the backend's instances hold senders
  InferenceRequest shape_;  // id, requested outputs and times of the request; no inputs
  ResponseCallback callback_;
  uint64_t dequeue_ns_;
  uint64_t infer_start_ns_;
  mutable std::mutex mu_;
  bool closed_ = false;
  bool failed_ = false;
};

}  // namespace

std::shared_ptr<ResponseSender> MakeResponseSender(ModelVersion* model, InferenceRequest& request,
                                                   uint64_t dequeue_ns) {
  return std::make_shared<CoreResponseSender>(model, request, dequeue_ns);
}

}  // namespace flowserve
