#include "core/model_manager.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "common/logging.h"
#include "core/config_autocomplete.h"
#include "core/ensemble_plan.h"
#include "core/ensemble_scheduler.h"
#include "core/repository_poller.h"
#include "model_config.pb.h"
#include "repository/model_repository.h"
#include "storage/repository_sources.h"

namespace flowserve {
namespace {

constexpr int kMaxDepth = 8;  // ensembles of ensembles; deeper means a cycle
constexpr int kDispatchAttempts = 4;
constexpr const char* kUnloaded = "unloaded";

// Runs fn(0..n-1) on up to `threads` threads.
void ParallelFor(size_t n, int threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  };
  size_t t = std::min<size_t>(std::max(1, threads), n);
  std::vector<std::thread> pool;
  for (size_t i = 1; i < t; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

const ModelDirectory* FindDir(const RepositoryScan& scan, const std::string& name) {
  for (const auto& d : scan.models)
    if (d.name == name) return &d;
  return nullptr;
}

// The config a load would use, only to learn whether it is an ensemble and of what.
std::shared_ptr<inference::ModelConfig> PeekConfig(const ModelDirectory& dir,
                                                   const std::string& config_json, bool strict) {
  auto cfg = config_json.empty() ? LoadModelConfig(dir, strict)
                                 : ParseModelConfigJson(config_json, dir.name);
  return cfg.ok() ? cfg.value() : nullptr;
}

bool IsEnsemble(const std::shared_ptr<inference::ModelConfig>& cfg) {
  return cfg && cfg->platform() == "ensemble";
}

}  // namespace

ModelManager::ModelManager(ServerOptions options)
    : options_(std::move(options)),
      sources_(std::make_shared<storage::RepositorySources>(options_.model_repositories,
                                                            options_.repository_cache_dir)) {}

ModelManager::~ModelManager() { UnloadAll(); }

std::shared_ptr<std::mutex> ModelManager::OpLock(const std::string& name) {
  std::lock_guard<std::mutex> lock(ops_mu_);
  auto& m = op_locks_[name];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

bool ModelManager::Serving(const ModelEntry& e) {
  return std::any_of(e.versions.begin(), e.versions.end(),
                     [](const auto& kv) { return kv.second.model != nullptr; });
}

bool ModelManager::Serving(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  return it != models_.end() && Serving(it->second);
}

void ModelManager::Install(const std::string& name, ModelEntry entry) {
  if (!entry.error.ok()) FS_LOG_ERROR("failed to load '{}': {}", name, entry.error.message());
  ModelEntry old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it != models_.end()) old = std::move(it->second);
    models_[name] = std::move(entry);
    // Versions carried over stay; only the replaced ones drain below.
    for (const auto& [v, ve] : models_[name].versions) {
      auto o = old.versions.find(v);
      if (o != old.versions.end() && o->second.model == ve.model) o->second.model.reset();
    }
  }
  for (auto& [v, ve] : old.versions) {
    if (!ve.model) continue;
    ve.model->Drain();
    FS_LOG_INFO("successfully unloaded '{}' version {}", name, v);
  }
}

Status ModelManager::Sync(const ModelDirectory& dir, const std::string& config_json, SyncMode mode,
                          bool& changed) {
  changed = false;
  const std::string& name = dir.name;
  auto op = OpLock(name);
  std::lock_guard<std::mutex> op_lock(*op);

  const std::string model_fp = ModelFingerprint(dir.path);
  const auto version_fps = VersionFingerprints(dir.path);
  std::string attempted = model_fp + "|" + config_json;
  for (const auto& [v, fp] : version_fps) attempted += "|" + std::to_string(v) + ":" + fp;

  ModelEntry cur;
  bool has_cur = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it != models_.end()) {
      cur = it->second;
      has_cur = true;
    }
  }
  if (mode == SyncMode::kIfChanged && has_cur && !cur.unloaded && cur.attempted == attempted) {
    return Status::Ok();
  }
  const bool keep_old = mode != SyncMode::kDependency && Serving(cur);

  // A failure before any version loads: the old versions keep serving when there are
  // any, and the index says why the reload did not happen.
  auto fail_early = [&](const Status& st) -> Status {
    if (keep_old) {
      std::lock_guard<std::mutex> lock(mu_);
      ModelEntry& e = models_[name];
      e.attempted = attempted;
      for (auto& [_, ve] : e.versions) {
        if (ve.model)
          ve.reason = "reload failed, still serving the previous version: " + st.message();
      }
      FS_LOG_ERROR("failed to reload '{}' (the previous version keeps serving): {}", name,
                   st.message());
      return st;
    }
    ModelEntry e;
    e.path = dir.path;
    e.error = st;
    e.attempted = attempted;
    Install(name, std::move(e));
    changed = has_cur && Serving(cur);
    return st;
  };

  auto parsed = config_json.empty()
                    ? LoadModelConfig(dir, options_.strict_model_config)
                    : ParseModelConfigJson(
                          config_json, name,
                          options_.strict_model_config ? "" : GuessBackendFromFiles(dir.path));
  if (!parsed.ok()) return fail_early(parsed.status());
  auto completed = AutoCompleteModelConfig(parsed.value(), dir, options_);
  if (!completed.ok()) return fail_early(completed.status());
  std::shared_ptr<const inference::ModelConfig> cfg = completed.value();
  auto selected = SelectVersions(*cfg, ListVersions(dir.path));
  if (!selected.ok()) return fail_early(selected.status().WithContext("model '" + name + "': "));

  const bool ensemble = cfg->platform() == "ensemble";
  const bool same_config = has_cur && !cur.unloaded && cur.config &&
                           cur.model_fingerprint == model_fp && cur.config_json == config_json &&
                           mode != SyncMode::kDependency;
  ModelEntry next;
  next.path = dir.path;
  next.config = cfg;
  next.config_json = config_json;
  next.model_fingerprint = model_fp;
  next.attempted = attempted;
  std::vector<int64_t> to_load;
  for (int64_t v : selected.value()) {
    auto fp = version_fps.count(v) ? version_fps.at(v) : std::string();
    auto old = cur.versions.find(v);
    if (same_config && old != cur.versions.end() && old->second.model &&
        old->second.fingerprint == fp) {
      VersionEntry keep = old->second;
      keep.reason.clear();
      next.versions[v] = std::move(keep);
    } else {
      next.versions[v] = VersionEntry{"LOADING", "", nullptr, fp};
      to_load.push_back(v);
    }
  }
  if (to_load.empty() && has_cur && cur.versions.size() == next.versions.size() && cur.error.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ModelEntry& e = models_[name];
    e.attempted = attempted;
    for (auto& [_, ve] : e.versions) ve.reason.clear();
    return Status::Ok();
  }
  {
    // Show what is loading without disturbing what serves.
    std::lock_guard<std::mutex> lock(mu_);
    ModelEntry& e = models_[name];
    if (e.path.empty()) e.path = dir.path;
    for (int64_t v : to_load) {
      auto it = e.versions.find(v);
      if (it == e.versions.end() || !it->second.model)
        e.versions[v] = VersionEntry{"LOADING", "", nullptr, ""};
    }
  }

  Status result;
  for (int64_t v : to_load) {
    auto mv = std::make_shared<ModelVersion>(name, v, cfg, dir.path);
    mv->SetResponseCache(response_cache_);
    FS_LOG_INFO("loading: {}:{}", name, v);
    Status st;
    if (ensemble) {
      EnsembleEnvironment env;
      env.find_model = [this](const std::string& n, int64_t ver) { return Get(n, ver); };
      env.dispatch = [this](std::unique_ptr<InferenceRequest> r) { Dispatch(std::move(r)); };
      st = mv->LoadEnsemble(env);
    } else {
      st = mv->Load(options_.backend_config,
                    [this](std::unique_ptr<InferenceRequest> r) { Dispatch(std::move(r)); });
    }
    VersionEntry& ve = next.versions[v];
    if (st.ok()) {
      ve.state = "READY";
      ve.model = std::move(mv);
      FS_LOG_INFO("successfully loaded '{}' version {}", name, v);
    } else {
      ve.state = "UNAVAILABLE";
      ve.reason = st.message();
      FS_LOG_ERROR("failed to load '{}' version {}: {}", name, v, st.message());
      if (result.ok()) {
        result = Status(st.code(), "failed to load '" + name + "' version " + std::to_string(v) +
                                       ": " + st.message());
      }
    }
  }

  if (!result.ok() && keep_old) {
    // All or nothing: the previous versions keep serving; what did load is discarded.
    {
      std::lock_guard<std::mutex> lock(mu_);
      ModelEntry& e = models_[name];
      e.attempted = attempted;
      for (int64_t v : to_load) {
        const VersionEntry& tried = next.versions[v];
        auto it = e.versions.find(v);
        if (it != e.versions.end() && it->second.model) {
          if (!tried.model) {
            it->second.reason =
                "reload failed, still serving the previous version: " + tried.reason;
          }
        } else if (tried.model) {
          e.versions.erase(v);
        } else {
          e.versions[v] = VersionEntry{"UNAVAILABLE", tried.reason, nullptr, tried.fingerprint};
        }
      }
      for (auto& [v, ve] : e.versions) {
        if (ve.model && ve.reason.empty()) {
          ve.reason = "reload failed, still serving the previous version: " + result.message();
        }
      }
    }
    for (int64_t v : to_load) {
      if (next.versions[v].model) next.versions[v].model->Drain();
    }
    FS_LOG_ERROR("reload of '{}' failed, the previous version keeps serving", name);
    return result;
  }
  Install(name, std::move(next));
  changed = true;
  return result;
}

Status ModelManager::SyncAndRefresh(const ModelDirectory& dir, const std::string& config_json,
                                    SyncMode mode, int depth) {
  bool changed = false;
  Status st = Sync(dir, config_json, mode, changed);
  if (changed) RefreshDependents(dir.name, depth + 1);
  return st;
}

void ModelManager::RefreshDependents(const std::string& name, int depth) {
  if (depth > kMaxDepth) return;
  std::vector<ModelDirectory> dependents;
  std::vector<std::string> overrides;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [n, e] : models_) {
      if (n == name || e.unloaded || !e.config || e.config->platform() != "ensemble") continue;
      // In explicit mode only what serves is rebuilt; a failed explicit load stays
      // failed until the next load request.
      if (!Serving(e) && options_.model_control_mode == "explicit") continue;
      if (!ComposingModelNames(*e.config).count(name)) continue;
      dependents.push_back(ModelDirectory{n, e.path});
      overrides.push_back(e.config_json);
    }
  }
  for (size_t i = 0; i < dependents.size(); ++i) {
    FS_LOG_INFO("'{}' changed: rebuilding ensemble '{}'", name, dependents[i].name);
    SyncAndRefresh(dependents[i], overrides[i], SyncMode::kDependency, depth);
  }
}

Status ModelManager::LoadFromScan(const RepositoryScan& scan, const std::string& name,
                                  const std::string& config_json, SyncMode mode, int depth) {
  auto err = scan.errors.find(name);
  if (err != scan.errors.end()) {
    ModelEntry e;
    e.error = err->second;
    if (!Serving(name)) Install(name, std::move(e));
    return err->second;
  }
  const ModelDirectory* dir = FindDir(scan, name);
  if (dir == nullptr) {
    return NotFound("failed to load '" + name + "': no model folder '" + name +
                    "' in the model repositories");
  }
  if (depth > kMaxDepth) {
    return InvalidArgument("failed to load '" + name + "': ensembles nest deeper than " +
                           std::to_string(kMaxDepth) + " levels (a cycle?)");
  }
  auto cfg = PeekConfig(*dir, config_json, options_.strict_model_config);
  if (IsEnsemble(cfg)) {
    // Composing models first; their own failures surface as the ensemble's load error.
    for (const auto& child : ComposingModelNames(*cfg)) {
      if (child == name || Serving(child) || !FindDir(scan, child)) continue;
      LoadFromScan(scan, child, "", mode, depth + 1);
    }
  }
  return SyncAndRefresh(*dir, config_json, mode, depth);
}

Status ModelManager::LoadStartupModels() {
  for (const auto& repo : options_.model_repositories) {
    std::error_code ec;
    if (repo.rfind("s3://", 0) == 0) continue;  // checked by listing it, below
    if (!std::filesystem::is_directory(repo, ec)) {
      return InvalidArgument("model repository '" + repo + "' is not a readable directory");
    }
  }
  // Object stores are mirrored first (explicit mode: only the --load-model versions).
  storage::FetchScope scope;
  if (options_.model_control_mode == "explicit") {
    const auto& want = options_.startup_models;
    if (std::find(want.begin(), want.end(), "*") == want.end())
      scope = storage::FetchScope::Only({want.begin(), want.end()});
  }
  Status fetch_error;
  RepositoryScan scan = sources_->Scan(scope, options_.strict_model_config, &fetch_error);
  if (!scan.error.ok()) return scan.error;
  // An unreachable or missing bucket: fatal with --exit-on-error, else the server stays
  // up and (in poll mode) keeps trying.
  if (!fetch_error.ok() && options_.exit_on_error) return fetch_error;
  for (const auto& [name, err] : scan.errors) {
    ModelEntry e;
    e.error = err;
    Install(name, std::move(e));
  }
  std::vector<std::string> todo;
  if (options_.model_control_mode == "explicit") {
    const auto& want = options_.startup_models;
    bool all = std::find(want.begin(), want.end(), "*") != want.end();
    for (const auto& d : scan.models) {
      if (all || std::find(want.begin(), want.end(), d.name) != want.end()) todo.push_back(d.name);
    }
    for (const auto& w : want) {
      if (w == "*" || FindDir(scan, w) || scan.errors.count(w)) continue;
      ModelEntry e;
      e.error =
          NotFound("--load-model=" + w + ": no model folder '" + w + "' in the model repositories");
      Install(w, std::move(e));
    }
  } else {
    for (const auto& d : scan.models) todo.push_back(d.name);
  }
  // Ensembles last, so the composing models they wait for are mostly loaded already.
  std::stable_partition(todo.begin(), todo.end(), [&](const std::string& n) {
    return !IsEnsemble(PeekConfig(*FindDir(scan, n), "", options_.strict_model_config));
  });
  ParallelFor(todo.size(), options_.model_load_thread_count,
              [&](size_t i) { LoadFromScan(scan, todo[i], "", SyncMode::kIfChanged, 0); });
  return Status::Ok();
}

Status ModelManager::Load(const std::string& name, const std::string& config_json) {
  Status fetch_error;
  RepositoryScan scan =
      sources_->Scan(storage::FetchScope::Only({name}), options_.strict_model_config, &fetch_error);
  if (!fetch_error.ok() && !FindDir(scan, name)) {
    return fetch_error.WithContext("failed to load '" + name + "': ");
  }
  Status st = LoadFromScan(scan, name, config_json, SyncMode::kAlways, 0);
  if (!st.ok() && st.message().find(name) == std::string::npos) {
    st = st.WithContext("failed to load '" + name + "': ");
  }
  return st;
}

void ModelManager::Poll() {
  // A store that cannot be listed keeps its cached models as they are: nothing unloads.
  RepositoryScan scan = sources_->Scan(storage::FetchScope::All(), options_.strict_model_config);
  if (!scan.error.ok()) {
    FS_LOG_ERROR("repository poll: {}", scan.error.message());
    return;
  }
  std::vector<std::string> gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, _] : models_) {
      if (!FindDir(scan, name) && !scan.errors.count(name)) gone.push_back(name);
    }
  }
  for (const auto& name : gone) {
    FS_LOG_INFO("repository poll: '{}' was removed", name);
    UnloadOne(name, /*erase=*/true, nullptr);
    RefreshDependents(name, 1);
  }
  for (const auto& [name, err] : scan.errors) {
    if (Serving(name)) continue;  // e.g. a duplicate appeared: keep what serves
    ModelEntry e;
    e.error = err;
    Install(name, std::move(e));
  }
  std::vector<std::string> plain, ensembles;
  for (const auto& d : scan.models) {
    (IsEnsemble(PeekConfig(d, "", options_.strict_model_config)) ? ensembles : plain)
        .push_back(d.name);
  }
  ParallelFor(plain.size(), options_.model_load_thread_count,
              [&](size_t i) { LoadFromScan(scan, plain[i], "", SyncMode::kIfChanged, 0); });
  for (const auto& name : ensembles) LoadFromScan(scan, name, "", SyncMode::kIfChanged, 0);
}

Status ModelManager::UnloadOne(const std::string& name, bool erase,
                               std::set<std::string>* composing) {
  auto op = OpLock(name);
  std::lock_guard<std::mutex> op_lock(*op);
  ModelEntry old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(name);
    if (it == models_.end()) {
      return NotFound("failed to unload '" + name + "': model is not loaded");
    }
    if (composing && it->second.config && it->second.config->platform() == "ensemble") {
      *composing = ComposingModelNames(*it->second.config);
    }
    old = std::move(it->second);
    if (erase) {
      models_.erase(it);
    } else {
      ModelEntry& e = it->second;
      e = ModelEntry{};
      e.path = old.path;
      e.unloaded = true;
      for (const auto& [v, _] : old.versions)
        e.versions[v] = VersionEntry{"UNAVAILABLE", kUnloaded, nullptr, ""};
    }
  }
  // New requests already miss it; the accepted ones finish before this returns.
  for (auto& [_, ve] : old.versions) {
    if (ve.model) ve.model->Drain();
  }
  FS_LOG_INFO("successfully unloaded '{}'", name);
  return Status::Ok();
}

Status ModelManager::Unload(const std::string& name, bool unload_dependents) {
  std::set<std::string> composing;
  FS_RETURN_IF_ERROR(UnloadOne(name, false, unload_dependents ? &composing : nullptr));
  RefreshDependents(name, 1);
  for (const auto& child : composing) {
    if (child == name) continue;
    Status st = Unload(child, true);
    if (!st.ok()) FS_LOG_WARNING("unloading '{}' (composing '{}'): {}", child, name, st.message());
  }
  return Status::Ok();
}

void ModelManager::UnloadAll() {
  std::map<std::string, ModelEntry> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old.swap(models_);
  }
  // Ensembles first: their in-flight requests still need the composing models.
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& [_, e] : old)
      for (auto& [__, ve] : e.versions)
        if (ve.model && ve.model->IsEnsemble() == (pass == 0)) ve.model->Drain();
  }
}

void ModelManager::Dispatch(std::unique_ptr<InferenceRequest> request) {
  auto fail = [&](const Status& st) {
    auto resp = std::make_unique<InferenceResponse>();
    resp->model_name = request->model_name;
    resp->model_version = request->model_version;
    resp->id = request->id;
    resp->status = st;
    auto cb = std::move(request->on_complete);
    request.reset();
    cb(std::move(resp));
  };
  for (int attempt = 1;; ++attempt) {
    auto model = Get(request->model_name, request->model_version);
    if (!model.ok()) {
      fail(model.status());
      return;
    }
    Status st = (*model)->Enqueue(request);
    if (st.ok()) return;
    // Drain starts only after the table stopped handing this version out, so the
    // next lookup finds its successor (or that the model is gone).
    if ((*model)->draining() && attempt < kDispatchAttempts) continue;
    (*model)->stats().fail.Add(NowNs() - request->arrival_ns);
    fail(st);
    return;
  }
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
    std::string why;
    for (auto v = e.versions.rbegin(); v != e.versions.rend(); ++v) {
      if (!v->second.model) continue;
      if (!v->second.model->unavailable()) return v->second.model;
      if (why.empty()) why = ": " + v->second.model->unavailable_reason();
    }
    if (why.empty() && !e.error.ok()) why = ": " + e.error.message();
    if (why.empty() && !e.versions.empty() && !e.versions.rbegin()->second.reason.empty()) {
      why = ": " + e.versions.rbegin()->second.reason;
    }
    return Unavailable("Request for unknown model: '" + name + "' has no available versions" + why);
  }
  auto v = e.versions.find(version);
  if (v == e.versions.end()) {
    return NotFound("Request for unknown model: '" + name + "' version " + std::to_string(version) +
                    " is not found");
  }
  if (v->second.model && v->second.model->unavailable()) {
    return Unavailable("Request for unknown model: '" + name + "' version " +
                       std::to_string(version) +
                       " is not at ready state: " + v->second.model->unavailable_reason());
  }
  if (!v->second.model) {
    return Unavailable("Request for unknown model: '" + name + "' version " +
                       std::to_string(version) + " is not at ready state" +
                       (v->second.reason.empty() ? "" : ": " + v->second.reason));
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
  // Like Triton, the full index also names the folders never loaded (explicit mode, or
  // added since start-up in none mode). The disk is read before taking the table lock so
  // a slow repository never holds up lookups.
  RepositoryScan scan;
  if (!ready_only) {
    // s3:// repositories are read through their cache folders (no fetch here).
    scan = ScanRepositories(sources_->LocalPaths(), options_.strict_model_config);
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelIndexEntry> out;
  std::set<std::string> listed;
  for (const auto& [name, e] : models_) {
    if (!e.error.ok() && !ready_only) {
      out.push_back({name, "", "UNAVAILABLE", e.error.message()});
    }
    for (const auto& [v, ve] : e.versions) {
      const bool gave_up = ve.model && ve.model->unavailable();
      if (ready_only && (ve.state != "READY" || gave_up)) continue;
      if (gave_up) {
        out.push_back({name, std::to_string(v), "UNAVAILABLE", ve.model->unavailable_reason()});
      } else {
        out.push_back({name, std::to_string(v), ve.state, ve.reason});
      }
    }
    if (!out.empty() && out.back().name == name) listed.insert(name);
  }
  if (ready_only) return out;
  for (const auto& d : scan.models) {
    if (!listed.count(d.name)) out.push_back({d.name, "", "", ""});  // the name alone
  }
  for (const auto& [name, error] : scan.errors) {
    if (!listed.count(name)) out.push_back({name, "", "UNAVAILABLE", error.message()});
  }
  std::stable_sort(out.begin(), out.end(), [](const ModelIndexEntry& a, const ModelIndexEntry& b) {
    return a.name < b.name;
  });
  return out;
}

bool ModelManager::AllReady() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, e] : models_) {
    if (e.unloaded) continue;
    if (!e.error.ok() && !Serving(e)) return false;
    // A version still LOADING does not change readiness: what served before still does.
    for (const auto& [__, ve] : e.versions) {
      if (ve.state == "UNAVAILABLE" || (ve.model && ve.model->unavailable())) return false;
    }
  }
  return true;
}

bool ModelManager::AnyFailed() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, e] : models_) {
    if (e.unloaded) continue;
    if (!e.error.ok()) return true;
    for (const auto& [__, ve] : e.versions)
      if (ve.state == "UNAVAILABLE" || (ve.model && ve.model->unavailable())) return true;
  }
  return false;
}

}  // namespace flowserve
