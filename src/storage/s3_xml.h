#pragma once
// The two XML documents the client reads: a ListObjectsV2 page and an S3 error body.
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace flowserve::storage {

struct ObjectInfo {
  std::string key;
  std::string etag;  // without the surrounding quotes
  uint64_t size = 0;
};

struct ListPage {
  std::vector<ObjectInfo> objects;
  bool truncated = false;
  std::string next_token;  // NextContinuationToken when truncated
};

Result<ListPage> ParseListObjectsV2(const std::string& xml);

struct S3Error {
  std::string code;     // e.g. NoSuchBucket, AccessDenied
  std::string message;  // the server's text (S3 never echoes a secret key in it)
};
// Empty fields when the body is not an S3 error document.
S3Error ParseS3Error(const std::string& xml);

}  // namespace flowserve::storage
