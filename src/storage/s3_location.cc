#include "storage/s3_location.h"

#include <cctype>

namespace flowserve::storage {

bool IsObjectStoreUrl(const std::string& repository) { return repository.rfind("s3://", 0) == 0; }

Result<S3Location> ParseS3Url(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument(
        "model repository '" + url + "': " + why +
        " (expected s3://<bucket>/<path> or s3://<host>:<port>/<bucket>/<path>)");
  };
  if (!IsObjectStoreUrl(url)) return bad("not an s3:// URL");
  std::string rest = url.substr(5);
  S3Location loc;
  loc.url = url;
  loc.scheme = "https";
  bool explicit_scheme = false;
  for (const char* s : {"http://", "https://"}) {
    if (rest.rfind(s, 0) == 0) {
      loc.scheme = std::string(s).substr(0, std::string(s).find(':'));
      rest = rest.substr(std::string(s).size());
      explicit_scheme = true;
    }
  }
  auto slash = rest.find('/');
  std::string first = rest.substr(0, slash);
  rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (first.empty()) return bad("no bucket");
  if (first.find(':') != std::string::npos) {
    // host:port: an S3-compatible endpoint, plain HTTP unless the URL says https://.
    auto port = first.substr(first.rfind(':') + 1);
    if (port.empty()) return bad("no port after ':'");
    for (char c : port)
      if (!std::isdigit(static_cast<unsigned char>(c)))
        return bad("port '" + port + "' is not a number");
    loc.endpoint_host = first;
    if (!explicit_scheme) loc.scheme = "http";
    slash = rest.find('/');
    loc.bucket = rest.substr(0, slash);
    rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (loc.bucket.empty()) return bad("no bucket after the endpoint");
  } else {
    if (explicit_scheme) return bad("an http:// or https:// endpoint needs a port");
    loc.bucket = first;
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  while (!rest.empty() && rest.front() == '/') rest.erase(rest.begin());
  loc.prefix = rest.empty() ? "" : rest + "/";
  return loc;
}

}  // namespace flowserve::storage
