// What is on disk: model folders, their version folders, label files.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>

#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve {
namespace {

namespace fs = std::filesystem;

bool IsDirectory(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// Sub-directory names of `dir`, sorted; hidden entries (".git", ".ipynb_checkpoints") skipped.
std::vector<std::string> SubDirectories(const fs::path& dir, std::error_code& ec) {
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (IsDirectory(it->path())) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

RepositoryScan ScanRepositories(const std::vector<std::string>& repositories,
                                bool strict_model_config) {
  RepositoryScan scan;
  std::map<std::string, std::string> found_in;  // model name -> repository
  std::set<std::string> duplicated;
  for (const std::string& repo : repositories) {
    if (!IsDirectory(repo)) {
      if (scan.error.ok())
        scan.error = NotFound("model repository path is not a directory: " + repo);
      continue;
    }
    std::error_code ec;
    std::vector<std::string> names = SubDirectories(repo, ec);
    if (ec) {
      if (scan.error.ok()) {
        scan.error = Status(StatusCode::kPermissionDenied,
                            "cannot list model repository " + repo + ": " + ec.message());
      }
      continue;
    }
    for (const std::string& name : names) {
      fs::path dir = fs::path(repo) / name;
      if (strict_model_config && !fs::exists(dir / "config.pbtxt", ec)) continue;
      auto [it, inserted] = found_in.emplace(name, repo);
      if (!inserted) {
        duplicated.insert(name);
        scan.errors[name] =
            Status(StatusCode::kAlreadyExists,
                   "model '" + name + "' appears in more than one repository: " + it->second +
                       " and " + repo);
        continue;
      }
      scan.models.push_back({name, dir.string()});
    }
  }
  std::erase_if(scan.models, [&](const ModelDirectory& m) { return duplicated.count(m.name); });
  std::sort(scan.models.begin(), scan.models.end(),
            [](const ModelDirectory& a, const ModelDirectory& b) { return a.name < b.name; });
  return scan;
}

std::vector<int64_t> ListVersions(const std::string& model_dir) {
  std::error_code ec;
  std::vector<int64_t> versions;
  for (const std::string& name : SubDirectories(model_dir, ec)) {
    int64_t v = 0;
    const char* end = name.data() + name.size();
    auto [ptr, err] = std::from_chars(name.data(), end, v);
    // Only plain decimal names: "1", "007"; not "1a", "-1" or values beyond int64.
    if (err != std::errc() || ptr != end || name[0] == '-' || name[0] == '+') continue;
    versions.push_back(v);
  }
  std::sort(versions.begin(), versions.end());
  versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
  return versions;
}

Result<std::vector<int64_t>> SelectVersions(const inference::ModelConfig& config,
                                            const std::vector<int64_t>& available) {
  // Callers prefix the model name; these messages say only what is wrong.
  if (available.empty()) {
    return NotFound("no version folders (numeric sub-folders such as 1/) in the model directory");
  }
  std::vector<int64_t> sorted = available;
  std::sort(sorted.begin(), sorted.end());
  const auto& policy = config.version_policy();
  switch (policy.policy_choice_case()) {
    case inference::ModelVersionPolicy::kAll:
      return sorted;
    case inference::ModelVersionPolicy::kSpecific: {
      std::vector<int64_t> wanted(policy.specific().versions().begin(),
                                  policy.specific().versions().end());
      std::sort(wanted.begin(), wanted.end());
      wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
      std::string missing;
      for (int64_t v : wanted) {
        if (!std::binary_search(sorted.begin(), sorted.end(), v)) {
          missing += (missing.empty() ? "" : ", ") + std::to_string(v);
        }
      }
      if (!missing.empty()) {
        return NotFound("version_policy.specific names version(s) " + missing +
                        " that have no folder");
      }
      return wanted;
    }
    case inference::ModelVersionPolicy::kLatest:
    case inference::ModelVersionPolicy::POLICY_CHOICE_NOT_SET: {
      size_t n = policy.has_latest() ? policy.latest().num_versions() : 1;
      if (n == 0) return InvalidArgument("version_policy.latest.num_versions is 0");
      n = std::min(n, sorted.size());
      return std::vector<int64_t>(sorted.end() - static_cast<std::ptrdiff_t>(n), sorted.end());
    }
  }
  return InvalidArgument("unknown version_policy");
}

Result<std::vector<std::string>> LoadLabels(const std::string& model_dir,
                                            const std::string& filename) {
  const fs::path path = fs::path(model_dir) / filename;
  std::ifstream in(path);
  if (!in) return NotFound("label file " + path.string() + " not found or not readable");
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(std::move(line));
  }
  return labels;
}

}  // namespace flowserve
