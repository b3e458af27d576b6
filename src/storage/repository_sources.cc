#include "storage/repository_sources.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "common/logging.h"
#include "storage/credentials.h"
#include "storage/s3_location.h"

namespace flowserve::storage {
namespace fs = std::filesystem;

RepositorySources::RepositorySources(std::vector<std::string> repositories, std::string cache_dir)
    : repositories_(std::move(repositories)), cache_dir_(std::move(cache_dir)) {}

RepositorySources::~RepositorySources() {
  if (!temp_dir_.empty()) {
    std::error_code ec;
    fs::remove_all(temp_dir_, ec);
  }
}

Status RepositorySources::Open() {
  bool any_remote = false;
  for (const auto& r : repositories_) any_remote |= IsObjectStoreUrl(r);
  if (any_remote && cache_dir_.empty()) {
    const char* mount = std::getenv("TRITON_AWS_MOUNT_DIRECTORY");
    if (mount && *mount) {
      cache_dir_ = mount;
    } else {
      std::string tmpl = (fs::temp_directory_path() / "flowserve-repository-XXXXXX").string();
      if (!mkdtemp(tmpl.data())) return Internal("cannot create a temporary cache folder");
      cache_dir_ = temp_dir_ = tmpl;
    }
  }
  for (const auto& r : repositories_) {
    Source src;
    src.spec = r;
    if (IsObjectStoreUrl(r)) {
      auto loc = ParseS3Url(r);
      if (!loc.ok()) return loc.status();
      auto creds = ResolveS3Credentials(r);
      if (!creds.ok()) return creds.status().WithContext("model repository '" + r + "': ");
      FS_LOG_INFO("model repository '{}': {} {} (credentials: {}), cached in '{}'", r,
                  loc->aws() ? "AWS S3, region" : "S3-compatible endpoint",
                  loc->aws() ? creds->region : loc->scheme + "://" + loc->endpoint_host,
                  creds->source, cache_dir_);
      src.mirror = std::make_unique<ObjectStoreMirror>(loc.value(), creds.value(), cache_dir_);
      FS_RETURN_IF_ERROR(src.mirror->Open());
    }
    sources_.push_back(std::move(src));
  }
  std::lock_guard<std::mutex> lock(paths_mu_);
  for (const auto& s : sources_) paths_.push_back(s.mirror ? s.mirror->models_dir() : s.spec);
  return Status::Ok();
}

std::vector<std::string> RepositorySources::LocalPaths() {
  std::lock_guard<std::mutex> lock(paths_mu_);
  return paths_;
}

RepositoryScan RepositorySources::Scan(const FetchScope& scope, bool strict_model_config,
                                       Status* fetch_error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!opened_) {
    open_error_ = Open();
    opened_ = true;
  }
  if (!open_error_.ok()) {
    RepositoryScan scan;
    scan.error = open_error_;
    if (fetch_error) *fetch_error = open_error_;
    return scan;
  }
  std::vector<std::string> paths;
  for (auto& src : sources_) {
    if (!src.mirror) {
      paths.push_back(src.spec);
      continue;
    }
    paths.push_back(src.mirror->models_dir());
    const auto start = std::chrono::steady_clock::now();
    SyncStats stats;
    std::map<std::string, Status> errors = src.model_errors;
    Status st = src.mirror->Sync(scope, errors, stats);
    if (!st.ok()) {
      // Once per outage: a poll every few seconds must not flood the log.
      if (!src.failing) {
        FS_LOG_ERROR("{}; models from it keep their current state until it can be listed again",
                     st.message());
      }
      src.failing = true;
      if (fetch_error && fetch_error->ok()) *fetch_error = st;
      continue;
    }
    if (src.failing) FS_LOG_INFO("model repository '{}' can be listed again", src.spec);
    src.failing = false;
    src.model_errors = std::move(errors);
    if (stats.files_fetched > 0) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      FS_LOG_INFO("model repository '{}': fetched {} file(s), {} bytes, in {:.3f} s", src.spec,
                  stats.files_fetched, stats.bytes_fetched, secs);
    }
  }
  RepositoryScan scan = ScanRepositories(paths, strict_model_config);
  for (const auto& src : sources_) {
    for (const auto& [name, err] : src.model_errors) {
      bool cached = false;
      for (const auto& d : scan.models) cached |= d.name == name;
      if (!cached && !scan.errors.count(name)) scan.errors[name] = err;
    }
  }
  return scan;
}

}  // namespace flowserve::storage
