#pragma once
// Spin-then-sleep for a thread that waits on another thread's work. On a small machine
// waking a sleeping thread (futex or eventfd, then a context switch, often of an idle
// virtual CPU) costs more than a fast model's whole request, so a waiter first polls for
// a short while, yielding the CPU at every turn so that a runnable thread is never kept
// waiting behind it. Even so, while several clients keep the machine busy, a spinner only
// adds context switches (on 2 cores it cost a fifth of the throughput at 32 connections,
// bench/http_identity.sh). So the waiter watches whether the kernel gave its core to
// another thread while it spun (an involuntary switch) and then skips its next spins,
// more of them each time it happens again. A lone client (client_activity.h) is exempt:
// its own thread taking the core between requests is no sign of load.
#include <algorithm>
#include <chrono>
#include <cstdint>

#include "common/client_activity.h"

namespace flowserve {

// Lets a thread waiting for this CPU run (sched_yield).
void YieldCpu();

// Involuntary context switches of the calling thread so far.
int64_t InvoluntarySwitches();

// One per waiting thread; not thread-safe.
class AdaptiveSpin {
 public:
  explicit AdaptiveSpin(std::chrono::microseconds budget) : budget_(budget) {}

  // Polls `done` until it returns true or the budget runs out, and returns its last
  // answer; returns false at once while backing off from contention.
  template <class Done>
  bool Spin(Done&& done) {
    if (budget_.count() <= 0) return false;
    const bool lone = LoneClient();
    if (skip_ > 0 && !lone) {
      --skip_;
      return false;
    }
    const int64_t switches = InvoluntarySwitches();
    const auto until = std::chrono::steady_clock::now() + budget_;
    bool got = false;
    for (unsigned i = 0;; ++i) {
      if (done()) {
        got = true;
        break;
      }
      if ((i & 3) == 3 && std::chrono::steady_clock::now() >= until) break;
      YieldCpu();
    }
    if (lone) {
      backoff_ = skip_ = 0;
    } else if (InvoluntarySwitches() != switches) {
      backoff_ = std::min<uint32_t>(backoff_ == 0 ? 1 : backoff_ * 2, kMaxBackoff);
      skip_ = backoff_;
    } else {
      backoff_ /= 2;
    }
    return got;
  }

 private:
  // Waits skipped after the latest contended spin. 4096 waits of a busy server are a
  // fraction of a second; a probe spin costs at most one budget.
  static constexpr uint32_t kMaxBackoff = 4096;
  std::chrono::microseconds budget_;
  uint32_t backoff_ = 0;
  uint32_t skip_ = 0;
};

}  // namespace flowserve
