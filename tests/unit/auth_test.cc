// API groups, restricted-header rules, the token file and the access decision.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "core/api_auth.h"

namespace flowserve {
namespace {

class Headers final : public HeaderSource {
 public:
  Headers(std::initializer_list<std::pair<const std::string, std::string>> h) : h_(h) {}
  std::string_view Get(std::string_view name) const override {
    auto it = h_.find(std::string(name));
    return it == h_.end() ? std::string_view() : std::string_view(it->second);
  }

 private:
  std::map<std::string, std::string> h_;
};

std::string TempFile(const std::string& text) {
  static int n = 0;
  auto path = std::filesystem::temp_directory_path() /
              ("flowserve_auth_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
  std::ofstream(path) << text;
  return path.string();
}

TEST(ApiGroup, NamesRoundTrip) {
  for (size_t i = 0; i < kApiGroupCount; ++i) {
    auto g = static_cast<ApiGroup>(i);
    EXPECT_EQ(ParseApiGroup(ApiGroupName(g)), g);
  }
  EXPECT_FALSE(ParseApiGroup("Health"));
  EXPECT_FALSE(ParseApiGroup("metrics"));
}

TEST(ApiRestriction, Parses) {
  auto r = ParseApiRestriction("model-repository,statistics:Admin-Key=s3cret=x");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->groups, GroupBit(ApiGroup::kModelRepository) | GroupBit(ApiGroup::kStatistics));
  EXPECT_EQ(r->header, "admin-key");
  EXPECT_EQ(r->value, "s3cret=x");  // only the first '=' separates
}

TEST(ApiRestriction, RejectsBadSpecs) {
  for (const char* bad : {"inference", "inference:key", "bogus:k=v", ":k=v", "inference:=v",
                          "inference:k=", "inference:bad key=v"}) {
    EXPECT_FALSE(ParseApiRestriction(bad).ok()) << bad;
  }
}

TEST(ConstantTimeEquals, Basics) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abd", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("ab", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abcabc", "abc"));  // a repeat of the secret is not it
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(TokenFile, ParsesGroupsCommentsAndBlankLines) {
  auto f = TokenFile::Open(TempFile("# a comment\n\nalpha\nbeta inference,metadata\n"));
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->size(), 2u);
  EXPECT_EQ((*f)->GroupsOf("alpha"), kAllApiGroups);
  EXPECT_EQ((*f)->GroupsOf("beta"), GroupBit(ApiGroup::kInference) | GroupBit(ApiGroup::kMetadata));
  EXPECT_FALSE((*f)->GroupsOf("gamma"));
  EXPECT_FALSE((*f)->GroupsOf(""));
}

TEST(TokenFile, BadLineNamesTheLineNotTheToken) {
  auto f = TokenFile::Open(TempFile("ok\nsupersecret nope\n"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("line 2"), std::string::npos);
  EXPECT_EQ(f.status().message().find("supersecret"), std::string::npos);
  EXPECT_FALSE(TokenFile::Open("/nonexistent/flowserve/tokens").ok());
}

TEST(TokenFile, ReloadKeepsOldTokensOnError) {
  std::string path = TempFile("one\n");
  auto f = TokenFile::Open(path);
  ASSERT_TRUE(f.ok());
  std::ofstream(path) << "two\n";
  ASSERT_TRUE((*f)->Reload().ok());
  EXPECT_FALSE((*f)->GroupsOf("one"));
  EXPECT_TRUE((*f)->GroupsOf("two"));
  std::ofstream(path) << "three bogus-group\n";
  EXPECT_FALSE((*f)->Reload().ok());
  EXPECT_TRUE((*f)->GroupsOf("two"));
}

TEST(TokenFile, ReloadIfChangedNoticesANewFile) {
  std::string path = TempFile("one\n");
  auto f = TokenFile::Open(path);
  ASSERT_TRUE(f.ok());
  std::string next = TempFile("two\n");
  std::filesystem::rename(next, path);  // a new inode, as rotation tools do
  (*f)->ReloadIfChanged(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // Open() defers the first look
  (*f)->ReloadIfChanged(0);
  EXPECT_TRUE((*f)->GroupsOf("two"));
  EXPECT_FALSE((*f)->GroupsOf("one"));
}

TEST(ApiAuth, RestrictedHeaderGivesForbiddenWithoutEchoingTheValue) {
  auto auth = ApiAuth::Create({"model-repository:admin-key=topsecret"}, "", nullptr);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->active());
  EXPECT_TRUE((*auth)->Check(ApiGroup::kInference, Headers{}).ok());
  Status st = (*auth)->Check(ApiGroup::kModelRepository, Headers{{"admin-key", "wrong"}});
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("model-repository"), std::string::npos);
  EXPECT_NE(st.message().find("admin-key"), std::string::npos);
  EXPECT_EQ(st.message().find("topsecret"), std::string::npos);
  EXPECT_EQ((*auth)->Check(ApiGroup::kModelRepository, Headers{}).code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE((*auth)->Check(ApiGroup::kModelRepository, Headers{{"admin-key", "topsecret"}}).ok());
}

TEST(ApiAuth, GrpcPrefixAndBareKeyBothWork) {
  auto auth = ApiAuth::Create({"inference:k=v"}, "triton-grpc-protocol-", nullptr);
  ASSERT_TRUE(auth.ok());
  EXPECT_TRUE((*auth)->Check(ApiGroup::kInference, Headers{{"triton-grpc-protocol-k", "v"}}).ok());
  EXPECT_TRUE((*auth)->Check(ApiGroup::kInference, Headers{{"k", "v"}}).ok());
  Status st = (*auth)->Check(ApiGroup::kInference, Headers{});
  EXPECT_NE(st.message().find("triton-grpc-protocol-k"), std::string::npos);
}

TEST(ApiAuth, GroupInTwoRulesIsAnError) {
  EXPECT_FALSE(ApiAuth::Create({"inference:a=1", "health,inference:b=2"}, "", nullptr).ok());
  EXPECT_FALSE(ApiAuth::Create({"nonsense"}, "", nullptr).ok());
  auto none = ApiAuth::Create({}, "", nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE((*none)->active());
}

TEST(ApiAuth, Tokens) {
  auto tokens = TokenFile::Open(TempFile("all-token\ninfer-token inference\n"));
  ASSERT_TRUE(tokens.ok());
  auto auth = ApiAuth::Create({"statistics:stats-key=v"}, "", *tokens);
  ASSERT_TRUE(auth.ok());
  const auto& a = **auth;
  // Health stays open; a group with its own header rule ignores tokens.
  EXPECT_TRUE(a.Check(ApiGroup::kHealth, Headers{}).ok());
  EXPECT_TRUE(a.Check(ApiGroup::kStatistics, Headers{{"stats-key", "v"}}).ok());
  EXPECT_EQ(a.Check(ApiGroup::kStatistics, Headers{{"authorization", "all-token"}}).code(),
            StatusCode::kPermissionDenied);

  EXPECT_EQ(a.Check(ApiGroup::kInference, Headers{}).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(a.Check(ApiGroup::kInference, Headers{{"authorization", "Bearer nope"}}).code(),
            StatusCode::kUnauthenticated);
  EXPECT_TRUE(a.Check(ApiGroup::kInference, Headers{{"authorization", "all-token"}}).ok());
  EXPECT_TRUE(a.Check(ApiGroup::kInference, Headers{{"authorization", "Bearer all-token"}}).ok());
  EXPECT_TRUE(
      a.Check(ApiGroup::kInference, Headers{{"authorization", "bearer  infer-token "}}).ok());
  Status st = a.Check(ApiGroup::kModelConfig, Headers{{"authorization", "infer-token"}});
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(st.message().find("infer-token"), std::string::npos);
}

}  // namespace
}  // namespace flowserve
