#include "core/api_auth.h"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "common/logging.h"

namespace flowserve {

namespace {

constexpr std::array<std::string_view, kApiGroupCount> kGroupNames = {
    "health",           "metadata",   "inference", "shared-memory", "model-config",
    "model-repository", "statistics", "trace",     "logging"};

std::string_view Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Result<ApiGroupSet> ParseGroupList(std::string_view list) {
  ApiGroupSet set = 0;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view name = Trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    auto g = ParseApiGroup(name);
    if (!g) {
      return InvalidArgument("unknown API group '" + std::string(name) +
                             "'; known groups: " + ApiGroupNames());
    }
    set |= GroupBit(*g);
  }
  if (set == 0) return InvalidArgument("no API group given; known groups: " + ApiGroupNames());
  return set;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The token of an Authorization value: "Bearer <token>" (scheme case-insensitive) or the
// bare token, as managed platforms send either.
std::string_view BearerToken(std::string_view value) {
  value = Trim(value);
  constexpr std::string_view kBearer = "bearer ";
  if (value.size() > kBearer.size() && Lower(value.substr(0, kBearer.size())) == kBearer) {
    value = Trim(value.substr(kBearer.size()));
  }
  return value;
}

}  // namespace

std::string_view ApiGroupName(ApiGroup group) { return kGroupNames[static_cast<size_t>(group)]; }

std::optional<ApiGroup> ParseApiGroup(std::string_view name) {
  for (size_t i = 0; i < kGroupNames.size(); ++i) {
    if (kGroupNames[i] == name) return static_cast<ApiGroup>(i);
  }
  return std::nullopt;
}

std::string ApiGroupNames() {
  std::string out;
  for (auto n : kGroupNames) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

Result<ApiRestriction> ParseApiRestriction(std::string_view spec) {
  const std::string expected = "expected <group>[,<group>...]:<header>=<value>";
  size_t colon = spec.find(':');
  size_t eq = colon == std::string_view::npos ? colon : spec.find('=', colon + 1);
  if (colon == std::string_view::npos || eq == std::string_view::npos) {
    return InvalidArgument(expected);
  }
  ApiRestriction r;
  auto groups = ParseGroupList(spec.substr(0, colon));
  if (!groups.ok()) return groups.status();
  r.groups = *groups;
  r.header = Lower(Trim(spec.substr(colon + 1, eq - colon - 1)));
  r.value = std::string(spec.substr(eq + 1));
  if (r.header.empty()) return InvalidArgument("empty header name; " + expected);
  for (char c : r.header) {
    // An RFC 9110 token: anything else could never arrive as a header name.
    if (!(std::isalnum(static_cast<unsigned char>(c)) ||
          std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos)) {
      return InvalidArgument("header name '" + r.header + "' has a character not allowed in one");
    }
  }
  if (r.value.empty()) return InvalidArgument("empty header value; " + expected);
  return r;
}

bool ConstantTimeEquals(std::string_view given, std::string_view expected) {
  if (expected.empty()) return given.empty();
  volatile unsigned char diff = given.size() != expected.size() ? 1 : 0;
  unsigned char acc = 0;
  for (size_t i = 0; i < given.size(); ++i) {
    acc |= static_cast<unsigned char>(given[i]) ^
           static_cast<unsigned char>(expected[i % expected.size()]);
  }
  diff = diff | acc;
  return diff == 0;
}

// ---- token file -----------------------------------------------------------------------

Result<std::vector<TokenFile::Entry>> TokenFile::Parse(const std::string& text) {
  std::vector<Entry> entries;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string_view l = Trim(line);
    if (l.empty() || l.front() == '#') continue;
    size_t space = l.find_first_of(" \t");
    Entry e;
    e.token = std::string(l.substr(0, space));
    e.groups = kAllApiGroups;
    if (space != std::string_view::npos) {
      auto groups = ParseGroupList(Trim(l.substr(space)));
      if (!groups.ok()) {
        return InvalidArgument("line " + std::to_string(number) + ": " + groups.status().message());
      }
      e.groups = *groups;
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

std::optional<TokenFile::FileId> TokenFile::Stat(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  FileId id;
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  id.size = static_cast<int64_t>(st.st_size);
  id.inode = static_cast<uint64_t>(st.st_ino);
  return id;
}

Result<std::shared_ptr<TokenFile>> TokenFile::Open(const std::string& path) {
  std::shared_ptr<TokenFile> file(new TokenFile(path));
  FS_RETURN_IF_ERROR(file->Reload());
  file->next_check_ms_.store(NowMs() + 1000, std::memory_order_relaxed);
  return file;
}

Status TokenFile::Reload() {
  // Stat first: a change landing between stat and read is seen again at the next check.
  auto id = Stat(path_);
  std::ifstream in(path_, std::ios::binary);
  if (!id || !in) {
    return InvalidArgument("cannot read the auth token file '" + path_ + "'");
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto entries = Parse(text.str());
  std::lock_guard<std::mutex> lock(mu_);
  loaded_id_ = *id;  // a bad file is not retried until it changes again
  if (!entries.ok()) {
    return InvalidArgument("auth token file '" + path_ + "': " + entries.status().message());
  }
  entries_ = std::make_shared<const std::vector<Entry>>(std::move(entries).value());
  return Status::Ok();
}

void TokenFile::ReloadIfChanged(int64_t min_interval_ms) {
  int64_t now = NowMs();
  int64_t due = next_check_ms_.load(std::memory_order_relaxed);
  if (now < due) return;
  // One caller per interval does the stat; the others go on with the tokens they have.
  if (!next_check_ms_.compare_exchange_strong(due, now + min_interval_ms,
                                              std::memory_order_relaxed)) {
    return;
  }
  auto id = Stat(path_);
  if (!id) return;  // mid-rotation (removed before the new one is renamed in): keep the old
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (*id == loaded_id_) return;
  }
  Status st = Reload();
  if (st.ok()) {
    FS_LOG_INFO("auth token file '{}' changed: {} token(s) loaded", path_, size());
  } else {
    FS_LOG_WARNING("{}; keeping the tokens loaded before", st.message());
  }
}

std::optional<ApiGroupSet> TokenFile::GroupsOf(std::string_view token) const {
  std::shared_ptr<const std::vector<Entry>> entries;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries = entries_;
  }
  bool found = false;
  ApiGroupSet groups = 0;
  for (const Entry& e : *entries) {
    // No early exit: every entry costs the same whether or not an earlier one matched.
    bool match = ConstantTimeEquals(token, e.token);
    found |= match;
    groups |= match ? e.groups : 0;
  }
  if (!found) return std::nullopt;
  return groups;
}

size_t TokenFile::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_ ? entries_->size() : 0;
}

// ---- rules ----------------------------------------------------------------------------

Result<std::shared_ptr<const ApiAuth>> ApiAuth::Create(const std::vector<std::string>& rules,
                                                       std::string header_prefix,
                                                       std::shared_ptr<TokenFile> tokens) {
  std::shared_ptr<ApiAuth> auth(new ApiAuth());
  auth->prefix_ = Lower(header_prefix);
  auth->tokens_ = std::move(tokens);
  for (const auto& spec : rules) {
    auto r = ParseApiRestriction(spec);
    if (!r.ok()) return r.status();
    for (size_t i = 0; i < kApiGroupCount; ++i) {
      if ((r->groups & (1u << i)) == 0) continue;
      if (auth->rules_[i]) {
        return InvalidArgument("API group '" + std::string(kGroupNames[i]) +
                               "' is restricted more than once; a group may appear in one "
                               "rule only");
      }
      auth->rules_[i] = *r;
    }
  }
  return std::shared_ptr<const ApiAuth>(std::move(auth));
}

bool ApiAuth::active() const {
  if (tokens_) return true;
  for (const auto& r : rules_) {
    if (r) return true;
  }
  return false;
}

Status ApiAuth::Check(ApiGroup group, const HeaderSource& headers) const {
  const std::string_view name = ApiGroupName(group);
  if (const auto& rule = rules_[static_cast<size_t>(group)]) {
    const std::string full = prefix_ + rule->header;
    std::string_view got = headers.Get(full);
    // gRPC clients written for this server may send the key without Triton's prefix.
    if (got.empty() && !prefix_.empty()) got = headers.Get(rule->header);
    if (!got.empty() && ConstantTimeEquals(got, rule->value)) return Status::Ok();
    return Status(StatusCode::kPermissionDenied, "API group '" + std::string(name) +
                                                     "' is restricted: expecting header '" + full +
                                                     "' with the configured value");
  }
  if (!tokens_ || group == ApiGroup::kHealth) return Status::Ok();
  tokens_->ReloadIfChanged();
  std::string_view token = BearerToken(headers.Get("authorization"));
  if (token.empty()) {
    return Status(StatusCode::kUnauthenticated,
                  "API group '" + std::string(name) +
                      "' requires a token: send 'Authorization: Bearer <token>'");
  }
  auto groups = tokens_->GroupsOf(token);
  if (!groups) {
    return Status(StatusCode::kUnauthenticated,
                  "the token in the 'Authorization' header is not valid");
  }
  if ((*groups & GroupBit(group)) == 0) {
    return Status(StatusCode::kPermissionDenied,
                  "the token in the 'Authorization' header does "
                  "not open API group '" +
                      std::string(name) + "'");
  }
  return Status::Ok();
}

}  // namespace flowserve
