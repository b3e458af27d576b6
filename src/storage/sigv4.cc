#include "storage/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

namespace flowserve::storage {
namespace {

std::string Hex(const unsigned char* data, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

std::string Hmac(const std::string& key, const std::string& msg) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Trims and collapses runs of spaces, as the canonical header value requires.
std::string TrimAll(const std::string& v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string UriEncode(const std::string& s, bool keep_slash) {
  static const char* kDigits = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0xf]);
    }
  }
  return out;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return Hex(digest, sizeof(digest));
}

std::string AmzDate(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::map<std::string, std::string> SignV4(const SigV4Request& request,
                                          const AwsCredentials& credentials,
                                          const std::string& region, const std::string& service,
                                          std::time_t now) {
  const std::string amz_date = AmzDate(now);
  const std::string date = amz_date.substr(0, 8);
  const std::string payload_hash =
      request.payload_sha256.empty() ? Sha256Hex("") : request.payload_sha256;

  std::map<std::string, std::string> added;
  added["x-amz-date"] = amz_date;
  added["x-amz-content-sha256"] = payload_hash;
  if (!credentials.session_token.empty()) added["x-amz-security-token"] = credentials.session_token;

  // Every header we send is signed (sorted by lower-case name): a proxy cannot alter any.
  std::map<std::string, std::string> signed_headers;
  signed_headers["host"] = request.host;
  for (const auto& [k, v] : request.headers) signed_headers[Lower(k)] = TrimAll(v);
  for (const auto& [k, v] : added) signed_headers[k] = v;

  std::vector<std::pair<std::string, std::string>> query;
  for (const auto& [k, v] : request.query)
    query.emplace_back(UriEncode(k, false), UriEncode(v, false));
  std::sort(query.begin(), query.end());

  std::string canonical =
      request.method + "\n" + (request.path.empty() ? "/" : request.path) + "\n";
  for (size_t i = 0; i < query.size(); ++i) {
    if (i) canonical += "&";
    canonical += query[i].first + "=" + query[i].second;
  }
  canonical += "\n";
  std::string names;
  for (const auto& [k, v] : signed_headers) {
    canonical += k + ":" + v + "\n";
    if (!names.empty()) names += ";";
    names += k;
  }
  canonical += "\n" + names + "\n" + payload_hash;

  const std::string scope = date + "/" + region + "/" + service + "/aws4_request";
  const std::string to_sign =
      "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + Sha256Hex(canonical);
  std::string key = Hmac("AWS4" + credentials.secret_key, date);
  key = Hmac(key, region);
  key = Hmac(key, service);
  key = Hmac(key, "aws4_request");
  const std::string sig = Hmac(key, to_sign);
  added["Authorization"] = "AWS4-HMAC-SHA256 Credential=" + credentials.key_id + "/" + scope +
                           ", SignedHeaders=" + names + ", Signature=" +
                           Hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
  return added;
}

}  // namespace flowserve::storage
