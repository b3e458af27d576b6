// Our AWS Signature V4 signer against botocore's, for the requests the S3 client sends.
// The reference values are computed at test time by Debian's /usr/bin/python3 with
// python3-botocore (S3SigV4Auth, its clock pinned to the same instant), so the test
// checks the real signer rather than values pasted once. Skipped when botocore is absent.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdio>

#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "storage/credentials.h"
#include "storage/s3_location.h"
#include "storage/s3_xml.h"
#include "storage/sigv4.h"

using namespace flowserve::storage;

namespace {

const char* kBotocoreScript = R"PY(
import datetime, json, sys
from unittest import mock
from urllib.parse import quote
import botocore.auth, botocore.awsrequest, botocore.credentials
c = json.loads(sys.argv[1])
creds = botocore.credentials.Credentials(c["key_id"], c["secret"], c["token"] or None)
path = "/" + (c["bucket"] + "/" if c["bucket"] else "") + quote(c["key"], safe="/~")
req = botocore.awsrequest.AWSRequest(method=c["method"], url=c["scheme"] + "://" + c["host"] + path,
                                     headers=c["headers"], params=[tuple(p) for p in c["params"]],
                                     data=b"")
when = datetime.datetime.utcfromtimestamp(c["time"])
with mock.patch("botocore.auth.datetime") as dt:
    dt.datetime.utcnow.return_value = when
    dt.datetime.strptime = datetime.datetime.strptime
    botocore.auth.S3SigV4Auth(creds, "s3", c["region"]).add_auth(req)
print(req.headers["Authorization"])
print(req.headers["X-Amz-Date"])
print(req.headers["X-Amz-Content-SHA256"])
)PY";

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool HaveBotocore() {
  return std::system("/usr/bin/python3 -c 'import botocore.auth' >/dev/null 2>&1") == 0;
}

struct Case {
  std::string method, scheme, host, bucket, key;
  std::vector<std::pair<std::string, std::string>> params;
  std::map<std::string, std::string> headers;
  std::string key_id = "AKIDEXAMPLE", secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  std::string token, region = "us-east-1";
  std::time_t time = 1796170245;  // 2026-12-02T00:10:45Z
};

// Runs botocore; returns its Authorization, X-Amz-Date and X-Amz-Content-SHA256 lines.
std::vector<std::string> Botocore(const Case& c) {
  std::string params = "[";
  for (size_t i = 0; i < c.params.size(); ++i) {
    params += (i ? "," : "") + std::string("[") + JsonString(c.params[i].first) + "," +
              JsonString(c.params[i].second) + "]";
  }
  params += "]";
  std::string headers = "{";
  for (const auto& [k, v] : c.headers) {
    headers += (headers.size() > 1 ? "," : "") + JsonString(k) + ":" + JsonString(v);
  }
  headers += "}";
  std::string json = "{\"method\":" + JsonString(c.method) + ",\"scheme\":" + JsonString(c.scheme) +
                     ",\"host\":" + JsonString(c.host) + ",\"bucket\":" + JsonString(c.bucket) +
                     ",\"key\":" + JsonString(c.key) + ",\"params\":" + params +
                     ",\"headers\":" + headers + ",\"key_id\":" + JsonString(c.key_id) +
                     ",\"secret\":" + JsonString(c.secret) + ",\"token\":" + JsonString(c.token) +
                     ",\"region\":" + JsonString(c.region) + ",\"time\":" + std::to_string(c.time) +
                     "}";
  std::string cmd = "/usr/bin/python3 -c " + ShellQuote(kBotocoreScript) + " " + ShellQuote(json);
  FILE* p = popen(cmd.c_str(), "r");
  std::vector<std::string> lines;
  if (!p) return lines;
  char buf[4096];
  while (std::fgets(buf, sizeof(buf), p)) {
    std::string l(buf);
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    lines.push_back(l);
  }
  pclose(p);
  return lines;
}

std::map<std::string, std::string> Ours(const Case& c) {
  SigV4Request r;
  r.method = c.method;
  r.host = c.host;
  r.path =
      "/" + (c.bucket.empty() ? "" : UriEncode(c.bucket, false) + "/") + UriEncode(c.key, true);
  r.query = c.params;
  r.headers = c.headers;
  AwsCredentials creds{c.key_id, c.secret, c.token};
  return SignV4(r, creds, c.region, "s3", c.time);
}

void ExpectSameAsBotocore(const Case& c) {
  auto ref = Botocore(c);
  ASSERT_EQ(ref.size(), 3u) << "botocore produced no signature";
  auto ours = Ours(c);
  EXPECT_EQ(ours["Authorization"], ref[0]);
  EXPECT_EQ(ours["x-amz-date"], ref[1]);
  EXPECT_EQ(ours["x-amz-content-sha256"], ref[2]);
  if (!c.token.empty()) {
    EXPECT_EQ(ours["x-amz-security-token"], c.token);
  }
}

}  // namespace

TEST(S3SigV4, ListWithQueryStringMatchesBotocore) {
  ASSERT_TRUE(HaveBotocore()) << "python3-botocore is missing: run scripts/install-deps.sh";
  Case c;
  c.method = "GET";
  c.scheme = "http";
  c.host = "127.0.0.1:9000";
  c.bucket = "models";
  c.key = "";
  // Unsorted, with characters that must be encoded ('/', ' ', '+', '=').
  c.params = {{"prefix", "a/b c/"}, {"list-type", "2"}, {"continuation-token", "1/xY+z=="}};
  c.token = "FQoGZXIvYXdzEXAMPLETOKEN//+=";
  c.region = "eu-central-1";
  ExpectSameAsBotocore(c);
}

TEST(S3SigV4, GetWithRangeMatchesBotocore) {
  ASSERT_TRUE(HaveBotocore()) << "python3-botocore is missing: run scripts/install-deps.sh";
  Case c;
  c.method = "GET";
  c.scheme = "https";
  c.host = "models.s3.us-west-2.amazonaws.com";  // virtual-host style: no bucket in the path
  c.key = "repo/my model+v2/1/model.pt";
  c.headers = {{"Range", "bytes=1048576-"}, {"If-Match", "\"9b2cf535f27731c974343645a3985328\""}};
  c.region = "us-west-2";
  ExpectSameAsBotocore(c);
}

TEST(S3SigV4, HeadMatchesBotocore) {
  ASSERT_TRUE(HaveBotocore()) << "python3-botocore is missing: run scripts/install-deps.sh";
  Case c;
  c.method = "HEAD";
  c.scheme = "http";
  c.host = "minio.local:9000";
  c.bucket = "bucket";
  c.key = "a/b/digits/config.pbtxt";
  c.time = 1767225599;  // 2025-12-31T23:59:59Z: the date in the scope is the UTC one
  ExpectSameAsBotocore(c);
}

TEST(S3SigV4, UriEncodeKeepsUnreservedOnly) {
  EXPECT_EQ(UriEncode("a-b_c.d~e/f g+h", true), "a-b_c.d~e/f%20g%2Bh");
  EXPECT_EQ(UriEncode("a/b", false), "a%2Fb");
}

TEST(S3Location, ParsesTritonSpellings) {
  auto aws = ParseS3Url("s3://bucket/path/to/repo");
  ASSERT_TRUE(aws.ok());
  EXPECT_TRUE(aws->aws());
  EXPECT_EQ(aws->scheme, "https");
  EXPECT_EQ(aws->bucket, "bucket");
  EXPECT_EQ(aws->prefix, "path/to/repo/");
  auto custom = ParseS3Url("s3://127.0.0.1:9000/bucket/a/b/");
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(custom->endpoint_host, "127.0.0.1:9000");
  EXPECT_EQ(custom->scheme, "http");
  EXPECT_EQ(custom->bucket, "bucket");
  EXPECT_EQ(custom->prefix, "a/b/");
  auto tls = ParseS3Url("s3://https://minio:443/models");
  ASSERT_TRUE(tls.ok());
  EXPECT_EQ(tls->scheme, "https");
  EXPECT_EQ(tls->prefix, "");
  EXPECT_FALSE(ParseS3Url("s3://host:/bucket").ok());
  EXPECT_FALSE(ParseS3Url("s3://").ok());
}

TEST(S3Xml, ParsesListingAndErrors) {
  auto page = ParseListObjectsV2(
      R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Contents><Key>a/m&amp;n/config.pbtxt</Key><ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>
<Contents><Key>a/m/1/model.pt</Key><ETag>"def-2"</ETag><Size>5000000000</Size></Contents>
<IsTruncated>true</IsTruncated><NextContinuationToken>tok/1</NextContinuationToken>
</ListBucketResult>)");
  ASSERT_TRUE(page.ok()) << page.status().message();
  ASSERT_EQ(page->objects.size(), 2u);
  EXPECT_EQ(page->objects[0].key, "a/m&n/config.pbtxt");
  EXPECT_EQ(page->objects[0].etag, "abc");
  EXPECT_EQ(page->objects[1].size, 5000000000ull);
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_token, "tok/1");
  auto err = ParseS3Error(
      "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>"
      "<BucketName>nope</BucketName></Error>");
  EXPECT_EQ(err.code, "NoSuchBucket");
  EXPECT_FALSE(ParseListObjectsV2("<ListBucketResult><Contents>").ok());
}

TEST(S3Credentials, LongestPrefixOfTheFileWinsOverEnvironment) {
  char path[] = "/tmp/flowserve-creds-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string json = R"({"s3": {"": {"key_id": "K0", "secret_key": "S0", "region": "r0"},
    "s3://127.0.0.1:9000/bucket": {"key_id": "K1", "secret_key": "S1", "region": "r1"},
    "s3://127.0.0.1:9000/bucket/a": {"key_id": "K2", "secret_key": "S2"}}})";
  ASSERT_EQ(write(fd, json.data(), json.size()), static_cast<ssize_t>(json.size()));
  close(fd);
  setenv("TRITON_CLOUD_CREDENTIAL_PATH", path, 1);
  setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
  setenv("AWS_DEFAULT_REGION", "env-region", 1);
  auto a = ResolveS3Credentials("s3://127.0.0.1:9000/bucket/a/b");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->keys.key_id, "K2");
  EXPECT_EQ(a->region, "env-region");  // the entry has none
  auto b = ResolveS3Credentials("s3://127.0.0.1:9000/bucket/x");
  EXPECT_EQ(b->keys.key_id, "K1");
  EXPECT_EQ(b->region, "r1");
  EXPECT_EQ(ResolveS3Credentials("s3://other/x")->keys.key_id, "K0");
  unsetenv("TRITON_CLOUD_CREDENTIAL_PATH");
  EXPECT_EQ(ResolveS3Credentials("s3://other/x")->keys.key_id, "ENVKEY");
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_DEFAULT_REGION");
  std::remove(path);
}
