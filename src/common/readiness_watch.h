#pragma once
// Lets work started on an event loop's thread wait for a descriptor without blocking that
// thread: the loop runs a callback once the descriptor is readable, and meanwhile serves
// its other connections. The HTTP listener's I/O threads provide one; other threads have
// none, and callers then wait the blocking way.
#include <functional>

namespace flowserve {

class ReadinessWatch {
 public:
  virtual ~ReadinessWatch() = default;
  // Runs `ready` once on this loop's thread when `fd` is readable or closed by its peer;
  // the caller keeps `fd` open until then. If the loop ends first, `ready` still runs
  // once, on the thread that ends it. Call only from the loop's own thread. `ready` runs
  // inside the loop's turn (a WakeBatch scope): what it must block on, it pauses for.
  virtual void WhenReadable(int fd, std::function<void()> ready) = 0;
};

// The watch of the event loop this thread runs; null when it runs none.
ReadinessWatch* ThreadReadinessWatch();
void SetThreadReadinessWatch(ReadinessWatch* watch);

}  // namespace flowserve
