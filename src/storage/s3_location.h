#pragma once
// Where an s3:// repository lives, in Triton's two spellings:
//   s3://<bucket>/<path>                       AWS (HTTPS; region from the credentials)
//   s3://[http://|https://]<host>:<port>/<bucket>/<path>   any S3-compatible endpoint
//                                              (plain HTTP unless https:// is given)
#include <string>

#include "common/status.h"

namespace flowserve::storage {

struct S3Location {
  std::string url;            // the repository as given (it never holds a secret)
  std::string scheme;         // "http" | "https"
  std::string endpoint_host;  // host[:port] of a custom endpoint; empty for AWS
  std::string bucket;
  std::string prefix;  // object key prefix of the repository, "" or ending in '/'
  bool aws() const { return endpoint_host.empty(); }
};

bool IsObjectStoreUrl(const std::string& repository);
Result<S3Location> ParseS3Url(const std::string& url);

}  // namespace flowserve::storage
