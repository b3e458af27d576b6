#pragma once
// Mirrors the models of one s3:// repository into a local cache folder that the ordinary
// local scan and loader then read. Only what a model needs is fetched: the files beside
// its version folders (config.pbtxt, labels, ...) and the version folders its
// version_policy selects. Every changed object of a model is downloaded into a staging
// folder first and moved into place only when all of that model's downloads succeeded,
// so a partial download is never loaded. A manifest of (key, ETag, size) makes a warm
// restart that finds the same objects fetch nothing.
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/status.h"
#include "storage/s3_client.h"

namespace flowserve::storage {

// Which models get their version folders fetched; the files beside the version folders
// of every model are always kept current (so the index knows every model).
struct FetchScope {
  bool all = true;
  std::set<std::string> models;  // when !all
  static FetchScope All() { return FetchScope{}; }
  static FetchScope Only(std::set<std::string> models) {
    return FetchScope{false, std::move(models)};
  }
};

struct SyncStats {
  uint64_t files_fetched = 0;
  uint64_t bytes_fetched = 0;
};

class ObjectStoreMirror {
 public:
  ObjectStoreMirror(S3Location location, S3Credentials credentials, std::string cache_root);

  // Creates the cache folders and reads the manifest a previous run left.
  Status Open();
  // The folder the local scan reads: one sub-folder per model.
  const std::string& models_dir() const { return models_dir_; }
  const S3Location& location() const { return client_.location(); }

  // Lists the repository and brings the cache in line with it. A failed listing returns
  // its error and changes nothing. A model whose objects could not be fetched keeps its
  // previous files; its error goes into `model_errors`.
  Status Sync(const FetchScope& scope, std::map<std::string, Status>& model_errors,
              SyncStats& stats);

  // Retries for listings (polls: give up fast, the next poll tries again) and downloads.
  RetryPolicy list_retry{3, 200, 1000};
  RetryPolicy download_retry{6, 250, 4000};

 private:
  struct Entry {
    std::string etag;
    uint64_t size = 0;
  };
  struct ModelObjects {
    std::map<std::string, ObjectInfo> files;  // path inside the model folder -> object
    std::set<std::string> dirs;               // folder markers ("1", "configs")
  };
  Status SyncModel(const std::string& name, const ModelObjects& objects, bool with_versions,
                   SyncStats& stats, std::set<std::string>* composing);
  bool Fresh(const std::string& rel, const ObjectInfo& obj) const;
  void SaveManifest();
  void ForgetUnder(const std::string& rel_prefix);

  S3Client client_;
  std::string root_;                       // <cache>/<repository id>
  std::string models_dir_;                 // <root>/models
  std::string staging_;                    // <root>/staging (same file system: rename is atomic)
  std::map<std::string, Entry> manifest_;  // "<model>/<path>" -> what the file holds
};

}  // namespace flowserve::storage
