#include "common/client_activity.h"

#include <atomic>
#include <chrono>

namespace flowserve {
namespace {

// Long enough to span many requests of any busy client, short enough that a server
// left with one client switches back to spinning at once.
constexpr int64_t kMixedWindowNs = 20'000'000;

std::atomic<uintptr_t> g_last_client{0};
std::atomic<int64_t> g_mixed_until_ns{0};

int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void NoteRequestFrom(uintptr_t client) {
  // A lone client only reads the shared line; several clients write it per request,
  // which costs nothing next to their requests.
  if (g_last_client.load(std::memory_order_relaxed) == client) return;
  g_last_client.store(client, std::memory_order_relaxed);
  g_mixed_until_ns.store(MonotonicNs() + kMixedWindowNs, std::memory_order_relaxed);
}

bool LoneClient() { return MonotonicNs() >= g_mixed_until_ns.load(std::memory_order_relaxed); }

}  // namespace flowserve
