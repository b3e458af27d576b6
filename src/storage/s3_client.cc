#include "storage/s3_client.h"

#include <curl/curl.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <thread>

#include <unistd.h>

#include "common/logging.h"
#include "storage/sigv4.h"

namespace flowserve::storage {
namespace {

// Error bodies and listing pages are small; anything larger is not what we asked for.
constexpr size_t kMaxTextBody = 64 << 20;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool DnsSafeBucket(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

}  // namespace

struct S3Client::Request {
  std::string method = "GET";
  std::string key;  // empty: the bucket itself
  std::vector<std::pair<std::string, std::string>> query;
  std::map<std::string, std::string> headers;
  FILE* sink = nullptr;  // body goes here when set, else into Response::body
};

struct S3Client::Response {
  CURLcode curl = CURLE_OK;
  std::string curl_error;
  long http = 0;
  std::string body;
  std::string etag;
  uint64_t written = 0;  // bytes written to the sink
  bool sink_failed = false;

  bool Transient() const {
    if (curl != CURLE_OK) {
      return curl == CURLE_COULDNT_CONNECT || curl == CURLE_OPERATION_TIMEDOUT ||
             curl == CURLE_RECV_ERROR || curl == CURLE_SEND_ERROR || curl == CURLE_GOT_NOTHING ||
             curl == CURLE_PARTIAL_FILE || curl == CURLE_COULDNT_RESOLVE_HOST ||
             curl == CURLE_SSL_CONNECT_ERROR || curl == CURLE_HTTP2 || curl == CURLE_HTTP2_STREAM;
    }
    return http >= 500 || http == 429;
  }
};

S3Client::S3Client(S3Location location, S3Credentials credentials)
    : location_(std::move(location)), credentials_(std::move(credentials)) {
  GlobalInit();
  virtual_host_ = location_.aws() && DnsSafeBucket(location_.bucket);
  curl_ = curl_easy_init();
}

S3Client::~S3Client() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

std::string S3Client::Host() const {
  if (!location_.aws()) return location_.endpoint_host;
  const std::string aws = "s3." + credentials_.region + ".amazonaws.com";
  return virtual_host_ ? location_.bucket + "." + aws : aws;
}

std::string S3Client::PathFor(const std::string& key) const {
  std::string path = virtual_host_ ? "/" : "/" + UriEncode(location_.bucket, false) + "/";
  return path + UriEncode(key, true);
}

std::string S3Client::Describe(const std::string& key) const {
  std::string where = location_.aws() ? "" : location_.endpoint_host + "/";
  return "s3://" + where + location_.bucket + "/" + key;
}

namespace {

size_t WriteToString(char* data, size_t size, size_t n, void* user) {
  auto* r = static_cast<std::pair<std::string*, size_t>*>(user);
  if (r->first->size() + size * n > kMaxTextBody) return 0;
  r->first->append(data, size * n);
  return size * n;
}

struct FileSink {
  FILE* file;
  std::string* error_body;
  uint64_t* written;
  bool* failed;
  long* http;
  CURL* curl;
};

size_t WriteToFile(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<FileSink*>(user);
  // Only a successful body is the object; an error body goes nowhere near the file.
  long code = 0;
  curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
  *s->http = code;
  if (code != 200 && code != 206) {
    if (s->error_body->size() < 65536) s->error_body->append(data, size * n);
    return size * n;
  }
  if (std::fwrite(data, size, n, s->file) != n) {
    *s->failed = true;
    return 0;
  }
  *s->written += size * n;
  return size * n;
}

size_t HeaderLine(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name == "etag") {
      std::string v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '"')) v.erase(v.begin());
      while (!v.empty() &&
             (v.back() == '\r' || v.back() == '\n' || v.back() == ' ' || v.back() == '"'))
        v.pop_back();
      *static_cast<std::string*>(user) = v;
    }
  }
  return size * n;
}

}  // namespace

S3Client::Response S3Client::Perform(const Request& req) {
  std::lock_guard<std::mutex> lock(mu_);
  Response resp;
  CURL* c = static_cast<CURL*>(curl_);
  if (!c) {
    resp.curl = CURLE_FAILED_INIT;
    resp.curl_error = "curl_easy_init failed";
    return resp;
  }
  curl_easy_reset(c);

  SigV4Request sr;
  sr.method = req.method;
  sr.host = Host();
  sr.path = PathFor(req.key);
  sr.query = req.query;
  sr.headers = req.headers;
  std::map<std::string, std::string> headers = req.headers;
  if (!credentials_.keys.anonymous()) {
    for (auto& [k, v] :
         SignV4(sr, credentials_.keys, credentials_.region, "s3", std::time(nullptr)))
      headers[k] = v;
  }
  std::string url = location_.scheme + "://" + sr.host + sr.path;
  for (size_t i = 0; i < req.query.size(); ++i) {
    url += (i ? "&" : "?") + UriEncode(req.query[i].first, false) + "=" +
           UriEncode(req.query[i].second, false);
  }
  curl_slist* list = nullptr;
  for (const auto& [k, v] : headers) list = curl_slist_append(list, (k + ": " + v).c_str());
  // curl adds "Expect" and "Accept" on its own; neither is signed, and S3 does not mind.
  list = curl_slist_append(list, "Accept:");

  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  // A stalled transfer (under 1 KB/s for 30 s) fails and is retried, rather than hang.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
  if (req.method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &HeaderLine);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp.etag);

  std::pair<std::string*, size_t> text{&resp.body, 0};
  FileSink file{req.sink, &resp.body, &resp.written, &resp.sink_failed, &resp.http, c};
  if (req.sink) {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteToFile);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &file);
    // Large buffers: fewer callbacks and syscalls for multi-hundred-MB objects.
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024L);
  } else {
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteToString);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &text);
  }
  resp.curl = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.http);
  if (resp.curl != CURLE_OK) {
    resp.curl_error = errbuf[0] ? errbuf : curl_easy_strerror(resp.curl);
  }
  curl_slist_free_all(list);
  return resp;
}

namespace {

void Backoff(const RetryPolicy& retry, int attempt) {
  int ms = retry.first_backoff_ms << std::min(attempt, 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, retry.max_backoff_ms)));
}

}  // namespace

// Builds the error for a failed request: what (op + object), where, and why (curl's
// reason, or the HTTP status with S3's error code). The request's headers, which carry
// the signature and token, never go into it.
static Status RequestError(const std::string& what, long http, CURLcode curl,
                           const std::string& curl_error, const std::string& body) {
  if (curl != CURLE_OK) {
    return Unavailable(what + ": " + curl_error);
  }
  S3Error e = ParseS3Error(body);
  std::string why = "HTTP " + std::to_string(http);
  if (!e.code.empty()) why += " " + e.code;
  if (!e.message.empty()) why += ": " + e.message;
  StatusCode code = StatusCode::kUnavailable;
  if (http == 404) code = StatusCode::kNotFound;
  if (http == 403 || http == 401) code = StatusCode::kPermissionDenied;
  if (http == 400) code = StatusCode::kInvalidArgument;
  return Status(code, what + ": " + why);
}

Result<std::vector<ObjectInfo>> S3Client::List(const std::string& prefix,
                                               const RetryPolicy& retry) {
  std::vector<ObjectInfo> out;
  std::string token;
  const std::string what = "listing " + Describe(prefix);
  for (int page = 0;; ++page) {
    Request req;
    req.query = {{"list-type", "2"}, {"prefix", prefix}};
    if (!token.empty()) req.query.emplace_back("continuation-token", token);
    Response resp;
    for (int attempt = 0;; ++attempt) {
      resp = Perform(req);
      if (resp.curl == CURLE_OK && resp.http == 200) break;
      if (!resp.Transient() || attempt + 1 >= retry.attempts) {
        return RequestError(what, resp.http, resp.curl, resp.curl_error, resp.body);
      }
      Backoff(retry, attempt);
    }
    auto parsed = ParseListObjectsV2(resp.body);
    if (!parsed.ok()) return parsed.status().WithContext(what + ": ");
    for (auto& o : parsed->objects) out.push_back(std::move(o));
    if (!parsed->truncated) break;
    token = parsed->next_token;
  }
  return out;
}

Result<std::string> S3Client::Download(const ObjectInfo& object, const std::string& dest,
                                       const RetryPolicy& retry) {
  const std::string what = "fetching " + Describe(object.key);
  FILE* f = std::fopen(dest.c_str(), "wb");
  if (!f) return Internal(what + ": cannot create '" + dest + "'");
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);  // fewer write syscalls for large objects
  uint64_t have = 0;
  std::string etag;
  Status err;
  for (int attempt = 0;; ++attempt) {
    Request req;
    req.key = object.key;
    req.sink = f;
    if (have > 0) {
      // Resume where the broken transfer stopped, only if the object is the same one.
      req.headers["Range"] = "bytes=" + std::to_string(have) + "-";
      if (!etag.empty()) req.headers["If-Match"] = "\"" + etag + "\"";
    }
    Response resp = Perform(req);
    if (resp.sink_failed) {
      err = Internal(what + ": writing '" + dest + "' failed (disk full?)");
      break;
    }
    if (resp.http == 200 && have > 0) {
      // The server ignored the range and sent it all: the file holds it from byte 0 on,
      // after the bytes kept from before. Start over cleanly.
      have = 0;
      std::fflush(f);
      if (ftruncate(fileno(f), 0) != 0 || std::fseek(f, 0, SEEK_SET) != 0) {
        err = Internal(what + ": cannot truncate '" + dest + "'");
        break;
      }
      if (attempt + 1 < retry.attempts) continue;
    }
    if (resp.http == 200 || resp.http == 206) {
      have += resp.written;
      if (!resp.etag.empty()) etag = resp.etag;
    }
    if (resp.curl == CURLE_OK && (resp.http == 200 || resp.http == 206)) {
      if (have == object.size) break;
      err = Status(StatusCode::kDataLoss, what + ": got " + std::to_string(have) +
                                              " bytes, the listing says " +
                                              std::to_string(object.size));
      break;
    }
    if (resp.http == 412) {
      err = Unavailable(what + ": the object changed during the download");
      break;
    }
    if (resp.curl == CURLE_WRITE_ERROR) resp.curl = CURLE_RECV_ERROR;
    if (!resp.Transient() || attempt + 1 >= retry.attempts) {
      err = RequestError(what, resp.http, resp.curl, resp.curl_error, resp.body);
      break;
    }
    FS_LOG_WARNING("{}: transient failure after {} bytes ({}); retrying", what, have,
                   resp.curl != CURLE_OK ? resp.curl_error : "HTTP " + std::to_string(resp.http));
    Backoff(retry, attempt);
  }
  if (std::fclose(f) != 0 && err.ok()) err = Internal(what + ": closing '" + dest + "' failed");
  if (!err.ok()) return err;
  return etag.empty() ? object.etag : etag;
}

}  // namespace flowserve::storage
