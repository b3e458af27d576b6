#pragma once
// Who may call which API group: Triton's restricted-API header rules (--http-restricted-api,
// --grpc-restricted-protocol) and bearer tokens from a file (--auth-token-file) that is
// re-read when it changes. Protocol-free: a frontend names the group of the call and lends
// a way to read request headers; it gets back Ok, Unauthenticated or PermissionDenied.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace flowserve {

// Triton's restricted-feature categories, same names, same order.
enum class ApiGroup : uint8_t {
  kHealth,
  kMetadata,
  kInference,
  kSharedMemory,
  kModelConfig,
  kModelRepository,
  kStatistics,
  kTrace,
  kLogging,
};
inline constexpr size_t kApiGroupCount = 9;

std::string_view ApiGroupName(ApiGroup group);
std::optional<ApiGroup> ParseApiGroup(std::string_view name);
// "health, metadata, ..." for messages and --help.
std::string ApiGroupNames();

// A set of groups as a bit mask.
using ApiGroupSet = uint32_t;
inline constexpr ApiGroupSet kAllApiGroups = (1u << kApiGroupCount) - 1;
inline constexpr ApiGroupSet GroupBit(ApiGroup g) { return 1u << static_cast<unsigned>(g); }

// One --http-restricted-api / --grpc-restricted-protocol value:
// <group>[,<group>...]:<header>=<value>.
struct ApiRestriction {
  ApiGroupSet groups = 0;
  std::string header;  // lower-cased: HTTP matches it case-insensitively, gRPC needs lower case
  std::string value;
};
Result<ApiRestriction> ParseApiRestriction(std::string_view spec);

// Compares without an early exit, so the time taken does not tell how much of a secret a
// guess got right. It depends only on the length of `given` (the caller's own input).
bool ConstantTimeEquals(std::string_view given, std::string_view expected);

// The tokens of --auth-token-file. Each line: `<token> [<group>,<group>...]`; no groups means
// every group. Blank lines and lines starting with '#' are skipped. Thread-safe.
class TokenFile {
 public:
  // Fails when the file cannot be read or has a bad line (the message names the line
  // number, never the token).
  static Result<std::shared_ptr<TokenFile>> Open(const std::string& path);

  // Re-reads the file now (SIGHUP). On failure the tokens already loaded stay in force.
  Status Reload();
  // Re-reads the file if its modification time, size or inode changed; looks at most once
  // per `min_interval_ms`, so it is cheap enough to call on every request.
  void ReloadIfChanged(int64_t min_interval_ms = 1000);

  // The groups the token opens; nullopt when the token is not in the file. Every token
  // is compared (in constant time), so the answer's timing reveals nothing about which.
  std::optional<ApiGroupSet> GroupsOf(std::string_view token) const;
  const std::string& path() const { return path_; }
  size_t size() const;

 private:
  struct Entry {
    std::string token;
    ApiGroupSet groups;
  };
  struct FileId {
    int64_t mtime_ns = 0, size = 0;
    uint64_t inode = 0;
    bool operator==(const FileId&) const = default;
  };
  explicit TokenFile(std::string path) : path_(std::move(path)) {}
  static Result<std::vector<Entry>> Parse(const std::string& text);
  static std::optional<FileId> Stat(const std::string& path);

  const std::string path_;
  std::atomic<int64_t> next_check_ms_{0};
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<Entry>> entries_;  // guarded by mu_; swapped whole
  FileId loaded_id_;                                   // guarded by mu_
};

// Reads one request header / metadata value by (lower-case) name; empty when absent.
class HeaderSource {
 public:
  virtual std::string_view Get(std::string_view lower_name) const = 0;

 protected:
  ~HeaderSource() = default;
};

// The access rules of one frontend.
//
// A group restricted by a header rule needs that header with the configured value
// (403 / PERMISSION_DENIED otherwise). With a token file, every other group except health
// needs `Authorization: [Bearer ]<token>` naming a token that opens it: no token or an
// unknown token is 401 / UNAUTHENTICATED, a known token that does not open the group is
// 403 / PERMISSION_DENIED. Messages name the group and the header, never a value.
class ApiAuth {
 public:
  // `header_prefix` is put before each rule's header name: Triton's gRPC frontend expects
  // "triton-grpc-protocol-<key>"; HTTP uses none. A group may appear in one rule only.
  static Result<std::shared_ptr<const ApiAuth>> Create(const std::vector<std::string>& rules,
                                                       std::string header_prefix,
                                                       std::shared_ptr<TokenFile> tokens);

  Status Check(ApiGroup group, const HeaderSource& headers) const;
  // True when at least one group needs something from the caller.
  bool active() const;

 private:
  ApiAuth() = default;
  std::string prefix_;
  std::array<std::optional<ApiRestriction>, kApiGroupCount> rules_;
  std::shared_ptr<TokenFile> tokens_;
};

}  // namespace flowserve
