#pragma once
// Credentials as tritonserver takes them: a JSON file named by TRITON_CLOUD_CREDENTIAL_PATH
// ({"s3": {"<url prefix>": {"key_id", "secret_key", "session_token", "region"}}}, the
// longest prefix of the repository URL wins, "" matches every one), else the AWS_*
// environment variables. No credentials at all means unsigned (anonymous) requests.
#include <string>

#include "common/status.h"
#include "storage/sigv4.h"

namespace flowserve::storage {

struct S3Credentials {
  AwsCredentials keys;
  std::string region;
  std::string source;  // "credential file entry 's3://...'" or "environment": for logs
};

// Errors name the file and the problem, never a key.
Result<S3Credentials> ResolveS3Credentials(const std::string& repository_url);

}  // namespace flowserve::storage
