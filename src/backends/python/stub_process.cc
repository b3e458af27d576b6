#include "backends/python/stub_process.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

namespace flowserve {
namespace python {
namespace {

constexpr size_t kHeaderSize = 8;  // u32 payload length, u32 JSON length (little-endian)
constexpr int kMaxFds = 16;

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

}  // namespace

Mapping::~Mapping() {
  if (base_ != nullptr && size_ > 0) munmap(base_, size_);
}

Result<std::shared_ptr<Mapping>> CreateSegment(size_t size, int* fd_out) {
  int fd = memfd_create("flowserve-python", MFD_CLOEXEC);
  if (fd < 0) return Internal(Errno("memfd_create"));
  UniqueFd fd_guard(fd);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return Internal(Errno("ftruncate"));
  char* base = nullptr;
  if (size > 0) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return Internal(Errno("mmap"));
    base = static_cast<char*>(p);
  }
  *fd_out = fd_guard.release();
  return std::make_shared<Mapping>(base, size);
}

Result<std::shared_ptr<Mapping>> MapSegment(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Internal(Errno("fstat"));
  size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return std::make_shared<Mapping>(nullptr, 0);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Internal(Errno("mmap"));
  return std::make_shared<Mapping>(static_cast<char*>(p), size);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

Status Channel::Send(std::string_view json, std::span<const Chunk> tail, std::span<const int> fds) {
  size_t tail_len = 0;
  for (const auto& c : tail) tail_len += c.size;
  char header[kHeaderSize];
  PutU32(header, static_cast<uint32_t>(json.size() + tail_len));
  PutU32(header + 4, static_cast<uint32_t>(json.size()));

  std::vector<iovec> iov;
  iov.reserve(2 + tail.size());
  iov.push_back({header, kHeaderSize});
  iov.push_back({const_cast<char*>(json.data()), json.size()});
  for (const auto& c : tail)
    if (c.size > 0) iov.push_back({const_cast<void*>(c.data), c.size});

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  if (!fds.empty()) {
    if (fds.size() > kMaxFds) return Internal("too many descriptors for one frame");
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  }

  std::lock_guard<std::mutex> lock(send_mu_);
  size_t idx = 0;
  while (idx < iov.size()) {
    msg.msg_iov = iov.data() + idx;
    msg.msg_iovlen = iov.size() - idx;
    ssize_t n = sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Unavailable(Errno("sending to the Python process"));
    }
    // The descriptors went with the first bytes.
    msg.msg_control = nullptr;
    msg.msg_controllen = 0;
    size_t left = static_cast<size_t>(n);
    while (idx < iov.size() && left >= iov[idx].iov_len) left -= iov[idx++].iov_len;
    if (idx < iov.size()) {
      iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + left;
      iov[idx].iov_len -= left;
    }
  }
  return Status::Ok();
}

Status Channel::WaitReadable(int pidfd,
                             std::optional<std::chrono::steady_clock::time_point> deadline) const {
  // A process that exited with nothing left to read ends the wait at once (its socket
  // may outlive it in a grandchild).
  for (;;) {
    pollfd pfd[2] = {{fd_.get(), POLLIN, 0}, {pidfd, POLLIN, 0}};
    int timeout = -1;
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int r = poll(pfd, pidfd >= 0 ? 2 : 1, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Internal(Errno("poll"));
    }
    if (r == 0) return Status(StatusCode::kDeadlineExceeded, "timed out");
    if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) return Status::Ok();
    if (pfd[1].revents) return Unavailable("the Python process exited");
  }
}

Status Channel::Receive(Frame& frame, int pidfd,
                        std::optional<std::chrono::steady_clock::time_point> deadline,
                        bool* none_yet) {
  if (none_yet != nullptr) *none_yet = false;
  // Reads without waiting first: mostly the frame is there (the loop saw the socket
  // readable, a spin did, or it came behind the previous one), and a poll before every
  // read was one more system call per batch. The wait comes only when a read finds
  // nothing.
  char header[kHeaderSize];
  size_t got = 0;
  frame.fds.clear();
  while (got < kHeaderSize) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    iovec iov{header + got, kHeaderSize - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (got == 0 && none_yet != nullptr) {
          *none_yet = true;
          return Status::Ok();
        }
        FS_RETURN_IF_ERROR(WaitReadable(pidfd, deadline));
        continue;
      }
      return Unavailable(Errno("reading from the Python process"));
    }
    if (n == 0) return Unavailable("the Python process closed its control socket");
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
        frame.fds.emplace_back(fd);
      }
    }
    got += static_cast<size_t>(n);
  }
  size_t total = GetU32(header);
  size_t json_len = GetU32(header + 4);
  if (json_len > total) return Internal("malformed frame from the Python process");
  frame.payload = std::shared_ptr<char[]>(new char[total > 0 ? total : 1]);
  frame.json_len = json_len;
  frame.tail_len = total - json_len;
  size_t pos = 0;
  while (pos < total) {
    ssize_t n = recv(fd_.get(), frame.payload.get() + pos, total - pos, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Unavailable(Errno("reading from the Python process"));
    }
    if (n == 0) return Unavailable("the Python process closed its control socket");
    pos += static_cast<size_t>(n);
  }
  return Status::Ok();
}

void Channel::Shutdown() { shutdown(fd_.get(), SHUT_RDWR); }

bool Channel::Readable() const {
  pollfd pfd{fd_.get(), POLLIN, 0};
  return poll(&pfd, 1, 0) > 0;
}

Result<std::unique_ptr<StubProcess>> StubProcess::Spawn(const std::string& python,
                                                        const std::string& stub_path) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Internal(Errno("socketpair"));
  // Everything the child needs is prepared before fork: after it, only async-signal-safe
  // calls are allowed (the server has many threads).
  std::string fd_arg = "3";
  std::vector<char*> argv = {const_cast<char*>(python.c_str()), const_cast<char*>("-u"),
                             const_cast<char*>(stub_path.c_str()), fd_arg.data(), nullptr};
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return Internal(Errno("fork"));
  }
  if (pid == 0) {
    // Killed when the thread that forked it (the instance's supervisor) goes away,
    // including when the whole server is SIGKILLed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (sv[1] == 3) {
      fcntl(3, F_SETFD, 0);
    } else if (dup2(sv[1], 3) < 0) {
      _exit(127);
    }
    syscall(SYS_close_range, 4U, ~0U, 0U);
    // The forking thread may block signals (the server handles them on one thread);
    // the mask survives exec, so reset it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    execv(python.c_str(), argv.data());
    _exit(127);
  }
  close(sv[1]);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    Status st = Internal(Errno("pidfd_open"));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close(sv[0]);
    return st;
  }
  return std::unique_ptr<StubProcess>(new StubProcess(pid, pidfd, sv[0]));
}

StubProcess::~StubProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

void StubProcess::Kill() {
  if (!reaped_) kill(pid_, SIGKILL);
}

bool StubProcess::Exited() const {
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  return poll(&pfd, 1, 0) > 0;
}

std::string StubProcess::WaitAndDescribe(bool reap) {
  if (reaped_) return "exited";
  siginfo_t info{};
  int flags = WEXITED | (reap ? 0 : WNOWAIT);
  while (waitid(P_PID, static_cast<id_t>(pid_), &info, flags) < 0) {
    if (errno != EINTR) return "exited (" + Errno("waitid") + ")";
  }
  if (reap) reaped_ = true;
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  return "was killed by signal " + std::to_string(info.si_status) + " (" +
         strsignal(info.si_status) + ")";
}

bool StubProcess::StopWithin(std::chrono::milliseconds timeout) {
  if (reaped_) return true;
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool exited = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    int r = poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r < 0 && errno == EINTR) continue;
    exited = r > 0;
    break;
  }
  if (!exited) kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return exited;
}

std::string ModuleDirectory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&ModuleDirectory), &info) == 0 || info.dli_fname == nullptr)
    return ".";
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

}  // namespace python
}  // namespace flowserve
