#include "backends/backend_support.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

namespace flowserve {
namespace {

namespace fs = std::filesystem;

std::string ListFolder(const fs::path& dir) {
  std::string names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    names += (names.empty() ? "" : ", ") + e.path().filename().string();
    if (e.is_directory()) names += "/";
  }
  return names.empty() ? "nothing" : names;
}

}  // namespace

Result<std::string> FindModelFile(const std::string& version_dir, const std::string& configured,
                                  const std::string& default_name, const std::string& format) {
  const fs::path dir(version_dir);
  std::vector<std::string> tried;
  if (!configured.empty()) {
    tried.push_back(configured);
  } else {
    tried = {default_name, "model"};
  }
  std::error_code ec;
  for (const auto& name : tried) {
    const fs::path p = dir / name;
    if (fs::is_regular_file(p, ec)) return p.string();
    if (fs::is_directory(p, ec) && fs::is_regular_file(p / default_name, ec)) {
      return (p / default_name).string();
    }
  }
  std::string looked;
  for (const auto& t : tried) looked += (looked.empty() ? "" : " or ") + t;
  return NotFound("no " + format + " model in " + dir.string() + ": looked for " + looked +
                  " (a file, or a folder holding " + default_name + "); the folder holds " +
                  ListFolder(dir));
}

Result<int> ParseIntParameter(const std::string& key, const std::string& value, int min) {
  int n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size() || n < min) {
    return InvalidArgument("parameter " + key + " must be an integer >= " + std::to_string(min) +
                           ", got '" + value + "'");
  }
  return n;
}

Result<bool> ParseBoolParameter(const std::string& key, const std::string& value) {
  std::string v = value;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return InvalidArgument("parameter " + key + " must be true or false (or 1/0), got '" + value +
                         "'");
}

bool ConcatenableAlongBatch(std::span<InferenceRequest* const> requests) {
  const auto& first = requests[0]->inputs;
  for (auto* r : requests.subspan(1)) {
    if (r->inputs.size() != first.size()) return false;
    for (const Tensor& f : first) {
      const Tensor* t = r->FindInput(f.name);
      if (t == nullptr || t->shape.size() != f.shape.size() || t->shape.empty() ||
          !std::equal(t->shape.begin() + 1, t->shape.end(), f.shape.begin() + 1)) {
        return false;
      }
    }
  }
  return true;
}

int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int ThreadsPerInstance(int instance_count) {
  return std::max(1, UsableCores() / std::max(1, instance_count));
}

}  // namespace flowserve
