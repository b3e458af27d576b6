#pragma once
// Lets the requests an I/O thread parses in one turn of its event loop share one wake-up
// of the thread that executes them. Inside a WakeBatch scope on this thread, NotifyOne()
// only records the condition variable; the scope's end notifies each recorded one once.
// Outside a scope NotifyOne() notifies at once. Waking a sleeping thread is a system call
// plus a context switch, which under load costs more than a small request itself.
#include <condition_variable>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace flowserve {

class WakeBatch {
 public:
  WakeBatch();  // scopes nest; the outermost one notifies
  ~WakeBatch();
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;

  // Shared ownership: the owner of `cv` may be gone (a model unloaded by another thread)
  // before the scope ends, and notifying a condition variable nobody waits on is harmless.
  static void NotifyOne(const std::shared_ptr<std::condition_variable>& cv);

  // Whether a scope is open on this thread (an I/O thread's turn).
  static bool InScope();
  // Runs `work` once when the outermost scope ends, after its notifications; once per
  // `key` per turn (later calls with the same key are dropped). Outside a scope: now.
  static void AtEnd(const void* key, std::function<void()> work);

  // For its lifetime this thread acts as outside any scope, after notifying what the
  // scope recorded so far: for work inside a turn that may block on another thread, which
  // a deferred wake-up would reach only after that work (never, if it waits for it).
  class Pause {
   public:
    Pause();
    ~Pause();
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;

   private:
    int depth_;
    std::vector<std::pair<const void*, std::function<void()>>> at_end_;  // the scope's, kept
  };
};

}  // namespace flowserve
