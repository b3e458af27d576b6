#pragma once
// AWS Signature Version 4 for S3 requests (header form). Our own signer rather than
// curl's CURLOPT_AWS_SIGV4 so that it can be checked against botocore's in a unit test
// and so that the range and session-token headers are signed exactly as AWS documents.
#include <ctime>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace flowserve::storage {

struct AwsCredentials {
  std::string key_id;
  std::string secret_key;     // never logged, never put in an error message
  std::string session_token;  // optional (temporary credentials)
  bool anonymous() const { return key_id.empty() || secret_key.empty(); }
};

struct SigV4Request {
  std::string method;  // GET, HEAD, ...
  std::string host;    // as sent in the Host header, with ":port" when not the default
  std::string path;    // already URI-encoded, starting with '/'
  // Query parameters, not encoded; the signer encodes and sorts them.
  std::vector<std::pair<std::string, std::string>> query;
  // Extra headers to sign (e.g. "Range"); names in any case.
  std::map<std::string, std::string> headers;
  std::string payload_sha256;  // hex; empty means the empty body
};

// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters stay, everything
// else is %XX (upper case); '/' stays only when `keep_slash`.
std::string UriEncode(const std::string& s, bool keep_slash);
std::string Sha256Hex(const std::string& data);
// "20261202T013000Z" for a UTC time.
std::string AmzDate(std::time_t t);

// Returns the headers to add to the request: x-amz-date, x-amz-content-sha256,
// x-amz-security-token (with a session token) and Authorization. `now` is the signing
// time (UTC seconds); region and service name the credential scope.
std::map<std::string, std::string> SignV4(const SigV4Request& request,
                                          const AwsCredentials& credentials,
                                          const std::string& region, const std::string& service,
                                          std::time_t now);

}  // namespace flowserve::storage
