#pragma once
// Lets the requests an I/O thread parses in one turn of its event loop share one wake-up
// of the thread that executes them. Inside a WakeBatch scope on this thread, NotifyOne()
// only records the condition variable; the scope's end notifies each recorded one once.
// Outside a scope NotifyOne() notifies at once. Waking a sleeping thread is a system call
// plus a context switch, which under load costs more than a small request itself.
#include <condition_variable>
#include <memory>

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
};

}  // namespace flowserve
