#include "common/wake_batch.h"

#include <algorithm>
#include <vector>

namespace flowserve {
namespace {

struct Pending {
  int depth = 0;
  std::vector<std::shared_ptr<std::condition_variable>> cvs;
};

thread_local Pending t_pending;

}  // namespace

WakeBatch::WakeBatch() { ++t_pending.depth; }

WakeBatch::~WakeBatch() {
  if (--t_pending.depth > 0) return;
  for (auto& cv : t_pending.cvs) cv->notify_one();
  t_pending.cvs.clear();
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
