#pragma once
// Poll mode: a thread that rescans the model repositories every few seconds and hands
// the changes to the model manager. Change detection is by file fingerprints (path,
// size, modification time), so a poll that finds nothing new loads nothing.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace flowserve {

// The files of a model folder outside its version folders (config.pbtxt, labels...).
std::string ModelFingerprint(const std::string& model_dir);
// The files of each numeric version folder, by version.
std::map<int64_t, std::string> VersionFingerprints(const std::string& model_dir);

class RepositoryPoller {
 public:
  // Calls `poll` every `interval_secs` (> 0) until destroyed.
  RepositoryPoller(int interval_secs, std::function<void()> poll);
  ~RepositoryPoller();

 private:
  void Loop();

  int interval_secs_;
  std::function<void()> poll_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace flowserve
