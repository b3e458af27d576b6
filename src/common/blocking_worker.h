#pragma once
// Runs slow control operations (model load and unload) one at a time on a thread of its
// own, so that no I/O or RPC thread ever waits for a model to load. Both frontends use
// one for their repository endpoints.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace flowserve {

class BlockingWorker {
 public:
  BlockingWorker();
  ~BlockingWorker();
  BlockingWorker(const BlockingWorker&) = delete;
  BlockingWorker& operator=(const BlockingWorker&) = delete;

  // False once stopped: the job will never run, and the caller answers for it.
  bool Post(std::function<void()> job);
  // Runs every job already posted, then ends the thread. Idempotent.
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace flowserve
