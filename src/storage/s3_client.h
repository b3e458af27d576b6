#pragma once
// A small S3 client over libcurl: ListObjectsV2 (all pages) and GetObject streamed to a
// file, both signed with our SigV4 signer. Transient failures (connection resets,
// timeouts, 5xx, SlowDown) are retried with exponential back-off; a download that breaks
// part-way resumes with a Range request pinned to the object's ETag.
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/credentials.h"
#include "storage/s3_location.h"
#include "storage/s3_xml.h"

namespace flowserve::storage {

struct RetryPolicy {
  int attempts = 5;
  int first_backoff_ms = 200;
  int max_backoff_ms = 5000;
};

class S3Client {
 public:
  S3Client(S3Location location, S3Credentials credentials);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Location& location() const { return location_; }

  // Every object under `prefix` (the repository's prefix, or below it).
  Result<std::vector<ObjectInfo>> List(const std::string& prefix, const RetryPolicy& retry);
  // Streams the object into `dest` (created or truncated). Fails unless exactly
  // `object.size` bytes arrived. Returns the ETag the server sent.
  Result<std::string> Download(const ObjectInfo& object, const std::string& dest,
                               const RetryPolicy& retry);

  // "s3://host:port/bucket/key" for messages.
  std::string Describe(const std::string& key) const;

 private:
  struct Response;
  struct Request;
  Response Perform(const Request& req);
  std::string Host() const;
  std::string PathFor(const std::string& key) const;  // encoded, from the root

  S3Location location_;
  S3Credentials credentials_;
  bool virtual_host_ = false;  // AWS with a DNS-safe bucket: bucket.s3.<region>.amazonaws.com
  std::mutex mu_;              // one easy handle, reused: keep-alive across requests
  void* curl_ = nullptr;
};

}  // namespace flowserve::storage
