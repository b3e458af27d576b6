#include "common/wake_batch.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace flowserve {
namespace {

struct Pending {
  int depth = 0;
  std::vector<std::shared_ptr<std::condition_variable>> cvs;
  std::vector<std::pair<const void*, std::function<void()>>> at_end;
};

thread_local Pending t_pending;

}  // namespace

WakeBatch::WakeBatch() { ++t_pending.depth; }

WakeBatch::~WakeBatch() {
  if (--t_pending.depth > 0) return;
  for (auto& cv : t_pending.cvs) cv->notify_one();
  t_pending.cvs.clear();
  // Work may add work (outside the scope now, it runs at once).
  auto work = std::move(t_pending.at_end);
  t_pending.at_end.clear();
  for (auto& [_, fn] : work) fn();
}

WakeBatch::Pause::Pause() : depth_(t_pending.depth), at_end_(std::move(t_pending.at_end)) {
  t_pending.at_end.clear();
  for (auto& cv : t_pending.cvs) cv->notify_one();
  t_pending.cvs.clear();
  t_pending.depth = 0;
}

WakeBatch::Pause::~Pause() {
  // Scopes opened meanwhile have ended and run their own work.
  t_pending.depth = depth_;
  t_pending.at_end = std::move(at_end_);
}

bool WakeBatch::InScope() { return t_pending.depth > 0; }

void WakeBatch::AtEnd(const void* key, std::function<void()> work) {
  if (t_pending.depth == 0) return work();
  auto& at_end = t_pending.at_end;
  for (const auto& [k, _] : at_end)
    if (k == key) return;
  at_end.emplace_back(key, std::move(work));
}

void WakeBatch::NotifyOne(const std::shared_ptr<std::condition_variable>& cv) {
  if (t_pending.depth == 0) {
    cv->notify_one();
    return;
  }
  auto& cvs = t_pending.cvs;
  if (std::find(cvs.begin(), cvs.end(), cv) == cvs.end()) cvs.push_back(cv);
}

}  // namespace flowserve
