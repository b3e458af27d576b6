#pragma once
// The model repositories as the core sees them: local folders as they are, and each
// s3:// repository as the local cache folder its mirror keeps current. A scan first
// brings the caches in line with the stores (listing, fetching what changed), then runs
// the ordinary local scan over every folder, so one loader serves both kinds.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "repository/model_repository.h"
#include "storage/object_store_mirror.h"

namespace flowserve::storage {

class RepositorySources {
 public:
  // cache_dir: where s3 repositories are mirrored; empty means TRITON_AWS_MOUNT_DIRECTORY
  // when set (as tritonserver), else a temporary folder removed at exit.
  RepositorySources(std::vector<std::string> repositories, std::string cache_dir);
  ~RepositorySources();

  // Syncs the object stores (`scope` says whose versions to fetch), then scans. A store
  // that cannot be listed keeps its cache as it was (its models keep serving); the
  // failure goes to `fetch_error` and is logged once per outage. An s3:// URL that does
  // not parse, or an unreadable credential file, is `scan.error`. Models whose objects
  // could not be fetched, and that have no earlier copy, are in `scan.errors`.
  RepositoryScan Scan(const FetchScope& scope, bool strict_model_config,
                      Status* fetch_error = nullptr);

  // The folders the local scan reads (after the first Scan). Never waits for a sync in
  // progress: the repository index must answer while a large model downloads.
  std::vector<std::string> LocalPaths();

 private:
  struct Source {
    std::string spec;  // as given on the command line
    std::unique_ptr<ObjectStoreMirror> mirror;
    bool failing = false;
    std::map<std::string, Status> model_errors;
  };
  Status Open();

  std::vector<std::string> repositories_;
  std::string cache_dir_;
  std::string temp_dir_;  // created by us, removed in the destructor
  std::mutex mu_;         // one sync at a time: polls, explicit loads
  bool opened_ = false;
  Status open_error_;
  std::vector<Source> sources_;
  std::mutex paths_mu_;
  std::vector<std::string> paths_;  // set once, by Open
};

}  // namespace flowserve::storage
