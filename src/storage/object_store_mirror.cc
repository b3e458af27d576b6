#include "storage/object_store_mirror.h"

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/logging.h"
#include "model_config.pb.h"
#include "repository/model_repository.h"

namespace flowserve::storage {
namespace fs = std::filesystem;
namespace {

bool IsVersion(const std::string& s) {
  return !s.empty() && s.size() < 19 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A key part we will write under the cache: no empty, "." or ".." components, so a key
// like "m/../../x" can never escape the model folder.
bool SafeRelative(const std::string& rel) {
  if (rel.empty() || rel.front() == '/') return false;
  size_t start = 0;
  while (true) {
    size_t end = rel.find('/', start);
    std::string part =
        rel.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

// A folder name for the repository's cache: readable, and distinct per URL.
std::string CacheId(const std::string& url) {
  std::string id;
  for (char c : url.substr(5)) id.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return id + "-" + std::to_string(std::hash<std::string>{}(url) % 1000000);
}

// The versions a model's config selects from `available`. Only version_policy matters
// here, so the config is parsed leniently; when it does not parse, or names versions
// that do not exist, nothing is selected and the loader reports the real error.
std::vector<int64_t> Selected(const std::string& config_path,
                              const std::vector<int64_t>& available) {
  inference::ModelConfig cfg;
  std::ifstream in(config_path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    google::protobuf::TextFormat::Parser parser;
    parser.AllowUnknownField(true);
    if (!parser.ParseFromString(ss.str(), &cfg)) return {};
  }
  if (!cfg.has_version_policy())
    cfg.mutable_version_policy()->mutable_latest()->set_num_versions(1);
  auto sel = SelectVersions(cfg, available);
  return sel.ok() ? sel.value() : std::vector<int64_t>{};
}

std::set<std::string> ComposingOf(const std::string& config_path) {
  std::set<std::string> out;
  inference::ModelConfig cfg;
  std::ifstream in(config_path);
  if (!in) return out;
  std::stringstream ss;
  ss << in.rdbuf();
  google::protobuf::TextFormat::Parser parser;
  parser.AllowUnknownField(true);
  if (!parser.ParseFromString(ss.str(), &cfg) || cfg.platform() != "ensemble") return out;
  for (const auto& step : cfg.ensemble_scheduling().step()) out.insert(step.model_name());
  return out;
}

}  // namespace

ObjectStoreMirror::ObjectStoreMirror(S3Location location, S3Credentials credentials,
                                     std::string cache_root)
    : client_(std::move(location), std::move(credentials)) {
  root_ = (fs::path(cache_root) / CacheId(client_.location().url)).string();
  models_dir_ = (fs::path(root_) / "models").string();
  staging_ = (fs::path(root_) / "staging").string();
}

Status ObjectStoreMirror::Open() {
  std::error_code ec;
  fs::remove_all(staging_, ec);  // what a crash left half-downloaded
  fs::create_directories(models_dir_, ec);
  if (!ec) fs::create_directories(staging_, ec);
  if (ec) {
    return InvalidArgument("model repository '" + client_.location().url +
                           "': cannot create the cache folder '" + root_ + "': " + ec.message());
  }
  // "<etag>\t<size>\t<key>" per line; a line that does not parse is ignored (refetched).
  std::ifstream in(fs::path(root_) / "manifest.tsv");
  std::string line;
  while (std::getline(in, line)) {
    auto t1 = line.find('\t');
    auto t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string::npos) continue;
    Entry e;
    e.etag = line.substr(0, t1);
    try {
      e.size = std::stoull(line.substr(t1 + 1, t2 - t1 - 1));
    } catch (...) {
      continue;
    }
    manifest_[line.substr(t2 + 1)] = e;
  }
  return Status::Ok();
}

void ObjectStoreMirror::SaveManifest() {
  const fs::path path = fs::path(root_) / "manifest.tsv";
  const fs::path tmp = fs::path(root_) / "manifest.tsv.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [key, e] : manifest_) out << e.etag << '\t' << e.size << '\t' << key << '\n';
    if (!out) {
      FS_LOG_WARNING("cannot write the cache manifest '{}': the next start refetches",
                     tmp.string());
      return;
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
}

void ObjectStoreMirror::ForgetUnder(const std::string& rel_prefix) {
  auto it = manifest_.lower_bound(rel_prefix);
  while (it != manifest_.end() && it->first.rfind(rel_prefix, 0) == 0) it = manifest_.erase(it);
}

bool ObjectStoreMirror::Fresh(const std::string& rel, const ObjectInfo& obj) const {
  auto it = manifest_.find(rel);
  if (it == manifest_.end() || it->second.etag != obj.etag || it->second.size != obj.size) {
    return false;
  }
  std::error_code ec;
  auto size = fs::file_size(fs::path(models_dir_) / rel, ec);
  return !ec && size == obj.size;
}

Status ObjectStoreMirror::Sync(const FetchScope& scope, std::map<std::string, Status>& model_errors,
                               SyncStats& stats) {
  const S3Location& loc = client_.location();
  auto listed = client_.List(loc.prefix, list_retry);
  if (!listed.ok()) {
    Status st = listed.status();
    if (st.code() == StatusCode::kNotFound &&
        st.message().find("NoSuchBucket") != std::string::npos) {
      st = Status(st.code(), "model repository '" + loc.url + "': bucket '" + loc.bucket +
                                 "' does not exist (" + st.message() + ")");
    } else {
      st = st.WithContext("model repository '" + loc.url + "': ");
    }
    return st;
  }

  std::map<std::string, ModelObjects> models;
  for (const auto& obj : listed.value()) {
    if (obj.key.size() <= loc.prefix.size()) continue;
    const std::string rel = obj.key.substr(loc.prefix.size());
    const auto slash = rel.find('/');
    if (slash == std::string::npos || slash == 0 || rel[0] == '.')
      continue;  // not in a model folder
    const std::string name = rel.substr(0, slash);
    std::string inner = rel.substr(slash + 1);
    ModelObjects& m = models[name];
    if (inner.empty()) continue;  // the model folder's own marker
    const bool marker = inner.back() == '/';
    if (marker) inner.pop_back();
    if (!SafeRelative(inner)) {
      FS_LOG_WARNING("{}: ignoring object '{}': not a plain path", loc.url, obj.key);
      continue;
    }
    if (marker) {
      m.dirs.insert(inner);
    } else {
      m.files[inner] = obj;
    }
  }

  // Models gone from the store leave the cache (a successful listing says so).
  std::error_code ec;
  std::vector<std::string> gone;
  for (fs::directory_iterator it(models_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!models.count(name)) gone.push_back(name);
  }
  for (const auto& name : gone) {
    std::error_code rm;
    fs::remove_all(fs::path(models_dir_) / name, rm);
    ForgetUnder(name + "/");
  }
  for (auto it = model_errors.begin(); it != model_errors.end();)
    it = models.count(it->first) ? std::next(it) : model_errors.erase(it);

  auto sync_one = [&](const std::string& name, bool with_versions,
                      std::set<std::string>* composing) {
    Status st = SyncModel(name, models.at(name), with_versions, stats, composing);
    if (st.ok()) {
      model_errors.erase(name);
    } else {
      model_errors[name] = st;
      FS_LOG_ERROR("{}", st.message());
    }
  };
  if (scope.all) {
    for (const auto& [name, _] : models) sync_one(name, true, nullptr);
  } else {
    // The requested models with their versions, an ensemble's composing models too; then
    // only the configs of the others.
    std::vector<std::string> todo(scope.models.begin(), scope.models.end());
    std::set<std::string> done;
    while (!todo.empty()) {
      std::string name = todo.back();
      todo.pop_back();
      if (!models.count(name) || !done.insert(name).second) continue;
      std::set<std::string> composing;
      sync_one(name, true, &composing);
      for (const auto& c : composing) todo.push_back(c);
    }
    for (const auto& [name, _] : models)
      if (!done.count(name)) sync_one(name, false, nullptr);
  }
  SaveManifest();
  return Status::Ok();
}

Status ObjectStoreMirror::SyncModel(const std::string& name, const ModelObjects& objects,
                                    bool with_versions, SyncStats& stats,
                                    std::set<std::string>* composing) {
  const fs::path model_dir = fs::path(models_dir_) / name;
  const fs::path stage = fs::path(staging_) / name;
  std::error_code ec;
  fs::remove_all(stage, ec);

  std::map<std::string, ObjectInfo> outer;                        // beside the versions
  std::map<int64_t, std::map<std::string, ObjectInfo>> versions;  // by version
  std::set<int64_t> version_set;
  for (const auto& [rel, obj] : objects.files) {
    const std::string top = rel.substr(0, rel.find('/'));
    if (IsVersion(top) && rel.find('/') != std::string::npos) {
      versions[std::stoll(top)][rel] = obj;
      version_set.insert(std::stoll(top));
    } else {
      outer[rel] = obj;
    }
  }
  for (const auto& d : objects.dirs) {
    const std::string top = d.substr(0, d.find('/'));
    if (IsVersion(top)) version_set.insert(std::stoll(top));
  }

  std::vector<std::pair<std::string, ObjectInfo>> staged;  // rel path -> object
  auto fetch = [&](const std::string& rel, const ObjectInfo& obj) -> Status {
    if (Fresh(name + "/" + rel, obj)) return Status::Ok();
    const fs::path dest = stage / rel;
    std::error_code mk;
    fs::create_directories(dest.parent_path(), mk);
    auto etag = client_.Download(obj, dest.string(), download_retry);
    if (!etag.ok()) return etag.status();
    stats.files_fetched++;
    stats.bytes_fetched += obj.size;
    staged.emplace_back(rel, obj);
    return Status::Ok();
  };
  auto fail = [&](const Status& st) {
    std::error_code rm;
    fs::remove_all(stage, rm);
    return st.WithContext("model '" + name + "': ");
  };

  for (const auto& [rel, obj] : outer) {
    if (Status st = fetch(rel, obj); !st.ok()) return fail(st);
  }
  std::vector<int64_t> selected;
  if (with_versions) {
    // The config this model will load with: the one just fetched, else the cached one.
    fs::path config = stage / "config.pbtxt";
    if (!fs::exists(config, ec)) config = model_dir / "config.pbtxt";
    if (!outer.count("config.pbtxt")) config = stage / "no-config";
    selected =
        Selected(config.string(), std::vector<int64_t>(version_set.begin(), version_set.end()));
    if (composing) *composing = ComposingOf(config.string());
    for (int64_t v : selected) {
      for (const auto& [rel, obj] : versions[v]) {
        if (Status st = fetch(rel, obj); !st.ok()) return fail(st);
      }
    }
  }

  // Everything arrived: move it into place (renames within one file system).
  fs::create_directories(model_dir, ec);
  for (const auto& [rel, obj] : staged) {
    const fs::path dest = model_dir / rel;
    std::error_code mv;
    fs::create_directories(dest.parent_path(), mv);
    if (fs::is_directory(dest, mv)) fs::remove_all(dest, mv);
    fs::rename(stage / rel, dest, mv);
    if (mv) {
      return fail(Internal("cannot move '" + rel + "' into the cache folder '" +
                           model_dir.string() + "': " + mv.message()));
    }
    manifest_[name + "/" + rel] = Entry{obj.etag, obj.size};
  }
  for (const auto& d : objects.dirs) {
    const std::string top = d.substr(0, d.find('/'));
    if (!IsVersion(top) || std::count(selected.begin(), selected.end(), std::stoll(top)))
      fs::create_directories(model_dir / d, ec);
  }
  for (int64_t v : selected) fs::create_directories(model_dir / std::to_string(v), ec);
  fs::remove_all(stage, ec);

  // What the store no longer has (or the policy no longer selects) leaves the cache.
  std::vector<fs::path> remove;
  for (fs::recursive_directory_iterator it(model_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code e2;
    const std::string rel = fs::relative(it->path(), model_dir, e2).generic_string();
    const bool file = it->is_regular_file(e2);
    const std::string top = rel.substr(0, rel.find('/'));
    if (IsVersion(top)) {
      if (!with_versions) {
        it.disable_recursion_pending();
        continue;
      }
      const int64_t v = std::stoll(top);
      if (!std::count(selected.begin(), selected.end(), v)) {
        if (rel == top) {
          remove.push_back(it->path());
          it.disable_recursion_pending();
        }
        continue;
      }
      if (file && !versions[v].count(rel)) remove.push_back(it->path());
    } else if (file && !outer.count(rel)) {
      remove.push_back(it->path());
    }
  }
  for (const auto& p : remove) {
    std::error_code rm;
    const std::string rel = fs::relative(p, model_dir, rm).generic_string();
    fs::remove_all(p, rm);
    manifest_.erase(name + "/" + rel);
    ForgetUnder(name + "/" + rel + "/");
  }
  return Status::Ok();
}

}  // namespace flowserve::storage
