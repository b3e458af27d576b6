#include "core/model_manager.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "common/logging.h"
#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve {

ModelManager::ModelManager(ServerOptions options) : options_(std::move(options)) {}

ModelManager::~ModelManager() { UnloadAll(); }

ModelManager::ModelEntry ModelManager::LoadModelDirectory(const ModelDirectory& dir,
                                                          const std::string& config_json) {
  ModelEntry entry;
  entry.path = dir.path;
  auto config = config_json.empty() ? LoadModelConfig(dir, options_.strict_model_config)
                                    : ParseModelConfigJson(config_json, dir.name);
  if (!config.ok()) {
    entry.error = config.status();
    return entry;
  }
  const auto cfg = config.value();
  if (cfg->platform() == "ensemble") {
    entry.error = Unimplemented("model '" + dir.name +
                                "': ensemble scheduling is not available in this build yet");
    return entry;
  }
  auto versions = SelectVersions(*cfg, ListVersions(dir.path));
  if (!versions.ok()) {
    entry.error = versions.status().WithContext("model '" + dir.name + "': ");
    return entry;
  }
  for (int64_t v : versions.value()) {
    auto mv = std::make_shared<ModelVersion>(dir.name, v, cfg, dir.path);
    FS_LOG_INFO("loading: {}:{}", dir.name, v);
    Status st = mv->Load(options_.backend_config);
    VersionEntry ve;
    if (st.ok()) {
      ve.state = "READY";
      ve.model = std::move(mv);
      FS_LOG_INFO("successfully loaded '{}' version {}", dir.name, v);
    } else {
      ve.state = "UNAVAILABLE";
      ve.reason = st.message();
      FS_LOG_ERROR("failed to load '{}' version {}: {}", dir.name, v, st.message());
    }
    entry.versions[v] = std::move(ve);
  }
  return entry;
}

void ModelManager::Install(const std::string& name, ModelEntry entry) {
  if (!entry.error.ok()) FS_LOG_ERROR("failed to load '{}': {}", name, entry.error.message());
  ModelEntry old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it != models_.end()) old = std::move(it->second);
    models_[name] = std::move(entry);
  }
  // The old versions finish what they queued before they go.
  for (auto& [_, ve] : old.versions) {
    if (ve.model) ve.model->Drain();
  }
}

Status ModelManager::LoadStartupModels() {
  for (const auto& repo : options_.model_repositories) {
    std::error_code ec;
    if (!std::filesystem::is_directory(repo, ec)) {
      return InvalidArgument("model repository '" + repo + "' is not a readable directory");
    }
  }
  RepositoryScan scan = ScanRepositories(options_.model_repositories, options_.strict_model_config);
  for (const auto& [name, err] : scan.errors) {
    ModelEntry e;
    e.error = err;
    Install(name, std::move(e));
  }
  std::vector<ModelDirectory> todo;
  if (options_.model_control_mode == "explicit") {
    bool all = std::find(options_.startup_models.begin(), options_.startup_models.end(), "*") !=
               options_.startup_models.end();
    for (const auto& d : scan.models) {
      if (all || std::find(options_.startup_models.begin(), options_.startup_models.end(),
                           d.name) != options_.startup_models.end()) {
        todo.push_back(d);
      }
    }
    for (const auto& want : options_.startup_models) {
      if (want == "*") continue;
      bool found = std::any_of(todo.begin(), todo.end(),
                               [&](const ModelDirectory& d) { return d.name == want; });
      if (!found && !scan.errors.count(want)) {
        ModelEntry e;
        e.error = NotFound("--load-model=" + want + ": no model folder '" + want +
                           "' in the model repositories");
        Install(want, std::move(e));
      }
    }
  } else {
    todo = scan.models;
  }

  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      Install(todo[i].name, LoadModelDirectory(todo[i], ""));
    }
  };
  size_t n = std::min<size_t>(std::max(1, options_.model_load_thread_count), todo.size());
  std::vector<std::thread> threads;
  for (size_t i = 1; i < n; ++i) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  return Status::Ok();
}

Status ModelManager::Load(const std::string& name, const std::string& config_json) {
  RepositoryScan scan = ScanRepositories(options_.model_repositories, options_.strict_model_config);
  auto err = scan.errors.find(name);
  if (err != scan.errors.end()) return err->second;
  auto dir = std::find_if(scan.models.begin(), scan.models.end(),
                          [&](const ModelDirectory& d) { return d.name == name; });
  if (dir == scan.models.end()) {
    return NotFound("failed to load '" + name + "': no model folder '" + name +
                    "' in the model repositories");
  }
  ModelEntry entry = LoadModelDirectory(*dir, config_json);
  Status result = entry.error;
  if (result.ok()) {
    for (const auto& [v, ve] : entry.versions) {
      if (ve.state != "READY") {
        result = InvalidArgument("failed to load '" + name + "' version " + std::to_string(v) +
                                 ": " + ve.reason);
        break;
      }
    }
  }
  if (!result.ok()) {
    // A failed reload leaves the serving versions in place.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    bool serving = it != models_.end() &&
                   std::any_of(it->second.versions.begin(), it->second.versions.end(),
                               [](const auto& kv) { return kv.second.model != nullptr; });
    if (serving) return result;
  }
  Install(name, std::move(entry));
  return result;
}

Status ModelManager::Unload(const std::string& name) {
  ModelEntry old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it == models_.end()) {
      return NotFound("failed to unload '" + name + "': model is not loaded");
    }
    old = std::move(it->second);
    ModelEntry& e = it->second;
    e = ModelEntry{};
    e.path = old.path;
    for (const auto& [v, _] : old.versions) {
      e.versions[v] = VersionEntry{"UNAVAILABLE", "unloaded", nullptr};
    }
  }
  for (auto& [_, ve] : old.versions) {
    if (ve.model) ve.model->Drain();
  }
  FS_LOG_INFO("successfully unloaded '{}'", name);
  return Status::Ok();
}

void ModelManager::UnloadAll() {
  std::map<std::string, ModelEntry> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old.swap(models_);
  }
  for (auto& [_, e] : old)
    for (auto& [__, ve] : e.versions)
      if (ve.model) ve.model->Drain();
}

Result<std::shared_ptr<ModelVersion>> ModelManager::Get(const std::string& name,
                                                        int64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    return NotFound("Request for unknown model: '" + name + "' is not found");
  }
  const ModelEntry& e = it->second;
  if (version < 0) {
    for (auto v = e.versions.rbegin(); v != e.versions.rend(); ++v) {
      if (v->second.model) return v->second.model;
    }
    std::string why = e.error.ok() ? "" : ": " + e.error.message();
    if (why.empty() && !e.versions.empty()) why = ": " + e.versions.rbegin()->second.reason;
    return Unavailable("Request for unknown model: '" + name + "' has no available versions" +
                       why);
  }
  auto v = e.versions.find(version);
  if (v == e.versions.end()) {
    return NotFound("Request for unknown model: '" + name + "' version " +
                    std::to_string(version) + " is not found");
  }
  if (!v->second.model) {
    return Unavailable("Request for unknown model: '" + name + "' version " +
                       std::to_string(version) + " is not at ready state: " + v->second.reason);
  }
  return v->second.model;
}

std::vector<std::shared_ptr<ModelVersion>> ModelManager::Loaded() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<ModelVersion>> out;
  for (const auto& [_, e] : models_)
    for (const auto& [__, ve] : e.versions)
      if (ve.model) out.push_back(ve.model);
  return out;
}

std::vector<ModelIndexEntry> ModelManager::Index(bool ready_only) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelIndexEntry> out;
  for (const auto& [name, e] : models_) {
    if (!e.error.ok() && !ready_only) {
      out.push_back({name, "", "UNAVAILABLE", e.error.message()});
    }
    for (const auto& [v, ve] : e.versions) {
      if (ready_only && ve.state != "READY") continue;
      out.push_back({name, std::to_string(v), ve.state, ve.reason});
    }
  }
  return out;
}

bool ModelManager::AllReady() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, e] : models_) {
    if (!e.error.ok()) return false;
    for (const auto& [__, ve] : e.versions) {
      if (ve.state != "READY" && ve.reason != "unloaded") return false;
    }
  }
  return true;
}

bool ModelManager::AnyFailed() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, e] : models_) {
    if (!e.error.ok()) return true;
    for (const auto& [__, ve] : e.versions)
      if (ve.state == "UNAVAILABLE" && ve.reason != "unloaded") return true;
  }
  return false;
}

}  // namespace flowserve
