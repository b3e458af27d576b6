#include "backends/python/packed_env.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

extern char** environ;

namespace flowserve::python {
namespace {

namespace fs = std::filesystem;

// Marks a folder whose unpacking finished: a folder without it is a crashed attempt.
constexpr const char* kCompleteMark = ".flowserve-unpacked";

std::string CacheRoot() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/flowserve-python-envs";
}

// Runs `tar -xzf archive -C into`; tar's own message on failure (GNU tar also refuses
// members that would land outside the folder).
Status Untar(const std::string& archive, const std::string& into) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return Internal(std::string("pipe: ") + strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::string a = archive, d = into;
  char tar[] = "tar", xzf[] = "-xzf", cdir[] = "-C";
  char* argv[] = {tar, xzf, a.data(), cdir, d.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, "tar", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(err_pipe[1]);
  if (rc != 0) {
    close(err_pipe[0]);
    return Unavailable(std::string("cannot run tar: ") + strerror(rc));
  }
  std::string output;
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (output.size() < 4096) output.append(buf, static_cast<size_t>(n));
  }
  close(err_pipe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
  // tar speaks in lines; the reason reads as one.
  std::string reason;
  for (size_t start = 0; start < output.size();) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    if (end > start) reason += (reason.empty() ? "" : "; ") + output.substr(start, end - start);
    start = end + 1;
  }
  return InvalidArgument("unpacking failed: " + (reason.empty() ? "tar failed" : reason));
}

}  // namespace

Result<std::string> UnpackedEnvironment(const std::string& archive) {
  struct stat st {};
  if (stat(archive.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return NotFound("EXECUTION_ENV_PATH '" + archive + "' is not a file");
  std::error_code ec;
  fs::path canonical = fs::canonical(archive, ec);
  if (ec) return NotFound("EXECUTION_ENV_PATH '" + archive + "': " + ec.message());
  // A changed archive (rebuilt in place) gets a folder of its own.
  std::string identity = canonical.string() + "|" + std::to_string(st.st_size) + "|" +
                         std::to_string(st.st_mtim.tv_sec) + "." +
                         std::to_string(st.st_mtim.tv_nsec);
  char key[17];
  std::snprintf(key, sizeof key, "%016zx", std::hash<std::string>{}(identity));
  fs::path root = CacheRoot();
  fs::path folder = root / key;
  if (fs::exists(folder / kCompleteMark, ec)) return folder.string();

  fs::create_directories(root, ec);
  if (ec) return Unavailable("cannot create " + root.string() + ": " + ec.message());
  // Unpacked beside its final place and renamed into it, so that servers or models
  // unpacking the same archive at once never see a half-written folder.
  static std::atomic<unsigned> attempt{0};
  fs::path scratch = root / (std::string(key) + ".tmp." + std::to_string(getpid()) + "." +
                             std::to_string(attempt.fetch_add(1)));
  fs::create_directories(scratch, ec);
  if (ec) return Unavailable("cannot create " + scratch.string() + ": " + ec.message());
  Status unpacked = Untar(canonical.string(), scratch.string());
  if (!unpacked.ok()) {
    fs::remove_all(scratch, ec);
    return Status(unpacked.code(), "EXECUTION_ENV_PATH '" + archive + "': " + unpacked.message());
  }
  std::ofstream(scratch / kCompleteMark) << canonical.string() << "\n";
  if (std::rename(scratch.c_str(), folder.c_str()) != 0) {
    fs::remove_all(scratch, ec);  // another unpacking of the same archive got there first
    if (!fs::exists(folder / kCompleteMark, ec))
      return Unavailable("EXECUTION_ENV_PATH '" + archive +
                         "': cannot move the unpacked folder to " + folder.string());
  }
  return folder.string();
}

}  // namespace flowserve::python
