#include "core/repository_poller.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <vector>

#include "common/logging.h"

namespace flowserve {
namespace fs = std::filesystem;
namespace {

bool IsVersionName(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "relative path:size:mtime;" for every regular file under `root`, sorted. A folder
// that vanishes mid-walk yields what was seen: the next poll sees the rest.
std::string FilesFingerprint(const fs::path& root, bool skip_version_dirs) {
  std::vector<std::string> items;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::directory_entry& e = *it;
    if (skip_version_dirs && it.depth() == 0 && e.is_directory(ec) &&
        IsVersionName(e.path().filename().string())) {
      it.disable_recursion_pending();
      continue;
    }
    if (!e.is_regular_file(ec)) continue;
    std::error_code e1, e2;
    auto size = e.file_size(e1);
    auto mtime = e.last_write_time(e2);
    if (e1 || e2) continue;
    items.push_back(fs::relative(e.path(), root, ec).string() + ":" + std::to_string(size) + ":" +
                    std::to_string(mtime.time_since_epoch().count()) + ";");
  }
  std::sort(items.begin(), items.end());
  std::string out;
  for (const auto& s : items) out += s;
  return out;
}

}  // namespace

std::string ModelFingerprint(const std::string& model_dir) {
  return FilesFingerprint(model_dir, true);
}

std::map<int64_t, std::string> VersionFingerprints(const std::string& model_dir) {
  std::map<int64_t, std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(model_dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsVersionName(name) || name.size() > 18 || !it->is_directory(ec)) continue;
    out[std::stoll(name)] = FilesFingerprint(it->path(), false);
  }
  return out;
}

RepositoryPoller::RepositoryPoller(int interval_secs, std::function<void()> poll)
    : interval_secs_(interval_secs), poll_(std::move(poll)), thread_([this] { Loop(); }) {}

RepositoryPoller::~RepositoryPoller() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RepositoryPoller::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (cv_.wait_for(lock, std::chrono::seconds(interval_secs_), [this] { return stop_; })) return;
    lock.unlock();
    poll_();
    lock.lock();
  }
}

}  // namespace flowserve
