#include "common/blocking_worker.h"

#include <utility>

namespace flowserve {

BlockingWorker::BlockingWorker() : thread_([this] { Run(); }) {}

BlockingWorker::~BlockingWorker() { Stop(); }

bool BlockingWorker::Post(std::function<void()> job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return false;
  jobs_.push_back(std::move(job));
  cv_.notify_one();
  return true;
}

void BlockingWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
}

void BlockingWorker::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

}  // namespace flowserve
