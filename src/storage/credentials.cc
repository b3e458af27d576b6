#include "storage/credentials.h"

#include <rapidjson/document.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace flowserve::storage {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string Member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it != obj.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

}  // namespace

Result<S3Credentials> ResolveS3Credentials(const std::string& repository_url) {
  S3Credentials out;
  const std::string env_region =
      !Env("AWS_DEFAULT_REGION").empty() ? Env("AWS_DEFAULT_REGION") : Env("AWS_REGION");
  const std::string path = Env("TRITON_CLOUD_CREDENTIAL_PATH");
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) {
      return InvalidArgument("TRITON_CLOUD_CREDENTIAL_PATH: cannot read '" + path + "'");
    }
    std::stringstream ss;
    ss << in.rdbuf();
    rapidjson::Document doc;
    doc.Parse(ss.str().c_str());
    if (doc.HasParseError() || !doc.IsObject()) {
      // The offset only: the text around it could be a key.
      return InvalidArgument("TRITON_CLOUD_CREDENTIAL_PATH: '" + path +
                             "' is not a JSON object (error at offset " +
                             std::to_string(doc.GetErrorOffset()) + ")");
    }
    auto s3 = doc.FindMember("s3");
    if (s3 != doc.MemberEnd() && s3->value.IsObject()) {
      const rapidjson::Value* best = nullptr;
      std::string best_prefix;
      for (auto it = s3->value.MemberBegin(); it != s3->value.MemberEnd(); ++it) {
        std::string prefix = it->name.GetString();
        if (!it->value.IsObject() || repository_url.rfind(prefix, 0) != 0) continue;
        if (!best || prefix.size() > best_prefix.size()) {
          best = &it->value;
          best_prefix = prefix;
        }
      }
      if (best) {
        out.keys.key_id = Member(*best, "key_id");
        out.keys.secret_key = Member(*best, "secret_key");
        out.keys.session_token = Member(*best, "session_token");
        out.region = Member(*best, "region");
        if (out.region.empty()) out.region = env_region;
        if (out.region.empty()) out.region = "us-east-1";
        out.source = "credential file '" + path + "' entry '" + best_prefix + "'";
        return out;
      }
    }
  }
  out.keys.key_id = Env("AWS_ACCESS_KEY_ID");
  out.keys.secret_key = Env("AWS_SECRET_ACCESS_KEY");
  out.keys.session_token = Env("AWS_SESSION_TOKEN");
  out.region = env_region.empty() ? "us-east-1" : env_region;
  out.source = out.keys.anonymous() ? "none (unsigned requests)" : "environment";
  return out;
}

}  // namespace flowserve::storage
