// The keep-alive HTTP listener over real loopback sockets: answers from other threads,
// keep-alive, zero-copy chunks, oversized bodies, and a Stop() that lets an answer in
// progress be written.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/readiness_watch.h"
#include "common/shareable_buffer.h"
#include "common/wake_batch.h"
#include "frontends/http/http_listener.h"

namespace flowserve {
namespace {

class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { close(fd_); }
  bool connected() const { return connected_; }

  void Send(const std::string& s) { ASSERT_EQ(write(fd_, s.data(), s.size()), (ssize_t)s.size()); }
  // A small send buffer keeps a large body from being parked in the kernel at once, so
  // the client is still sending when the server answers (as over a real network).
  void SetSendBuffer(int bytes) { setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes)); }
  // All of `s`, however long the server takes to read it; false (errno set) when the
  // connection broke first. MSG_NOSIGNAL: a reset peer must fail the test, not kill it.
  bool SendAll(const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      ssize_t n = send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one response (head + Content-Length body); "" when the peer closed first.
  std::string ReadResponse() {
    for (;;) {
      size_t end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t cl = buf_.find("Content-Length: ");
        size_t len = cl < end ? std::stoul(buf_.substr(cl + 16)) : 0;
        if (buf_.size() >= end + 4 + len) {
          std::string r = buf_.substr(0, end + 4 + len);
          buf_.erase(0, end + 4 + len);
          return r;
        }
      }
      char tmp[4096];
      ssize_t n = read(fd_, tmp, sizeof(tmp));
      if (n <= 0) return "";
      buf_.append(tmp, n);
    }
  }
  bool PeerClosed() {
    char c;
    return read(fd_, &c, 1) == 0;
  }

 private:
  int fd_;
  bool connected_ = false;
  std::string buf_;
};

std::string Get(const std::string& path) { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"; }

TEST(HttpListener, AnswersFromAnotherThreadWithKeepAlive) {
  auto listener =
      HttpListener::Start("127.0.0.1", 0, 2, [](const HttpRequest& req, HttpRespond respond) {
        std::string body = std::string(req.method()) + " " + std::string(req.path()) +
                           " q=" + std::string(req.query()) +
                           " h=" + std::string(req.header("x-test")) + " b=" + *req.body();
        std::thread([body, respond = std::move(respond)] {
          HttpReply r;
          r.content_type = "text/plain";
          r.body = body;
          r.headers.emplace_back("X-Answer", "1");
          respond(std::move(r));
        }).detach();
      });
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  ASSERT_GT((*listener)->port(), 0);
  Client c((*listener)->port());
  ASSERT_TRUE(c.connected());
  c.Send("POST /a/b?x=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\nContent-Length: 5\r\n\r\nhello");
  std::string r = c.ReadResponse();
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("X-Answer: 1\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("Content-Type: text/plain\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("\r\n\r\nPOST /a/b q=x=1 h=yes b=hello"), std::string::npos) << r;
  // Same connection, second request.
  c.Send(Get("/again"));
  r = c.ReadResponse();
  EXPECT_NE(r.find("GET /again"), std::string::npos) << r;
  // Pipelined requests are answered in order.
  c.Send(Get("/p1") + Get("/p2"));
  EXPECT_NE(c.ReadResponse().find("GET /p1"), std::string::npos);
  EXPECT_NE(c.ReadResponse().find("GET /p2"), std::string::npos);
}

TEST(HttpListener, ChunksAndInlineAnswers) {
  auto payload = std::make_shared<std::string>("0123456789");
  auto listener =
      HttpListener::Start("127.0.0.1", 0, 1, [payload](const HttpRequest&, HttpRespond respond) {
        HttpReply r;
        r.body = std::string(2000, 'j');  // larger than the inline-with-head limit
        r.chunks.push_back({payload->data(), 4, payload});
        r.chunks.push_back({payload->data() + 6, 4, payload});
        respond(std::move(r));  // on the I/O thread, inside the handler
      });
  ASSERT_TRUE(listener.ok());
  Client c((*listener)->port());
  for (int i = 0; i < 3; ++i) {
    c.Send(Get("/"));
    std::string r = c.ReadResponse();
    EXPECT_NE(r.find("Content-Length: 2008\r\n"), std::string::npos) << r;
    EXPECT_EQ(r.substr(r.size() - 8), "01236789");
  }
}

// A readiness callback runs on the I/O thread inside the loop's turn: the requests its
// answers let in share the turn's deferred work (a model's turn batch) rather than each
// waking an instance thread, and that work runs after the callback, on the same thread.
TEST(HttpListener, ReadinessCallbacksRunInsideTheLoopsTurn) {
  struct Seen {
    std::mutex mu;
    std::vector<std::string> events;
    void Add(std::string e) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(std::move(e));
    }
  };
  auto seen = std::make_shared<Seen>();
  auto listener =
      HttpListener::Start("127.0.0.1", 0, 1, [seen](const HttpRequest&, HttpRespond respond) {
        ReadinessWatch* watch = ThreadReadinessWatch();
        int fds[2];
        if (watch == nullptr || pipe(fds) != 0) {
          HttpReply r;
          r.status = 500;
          return respond(std::move(r));
        }
        const auto loop_thread = std::this_thread::get_id();
        watch->WhenReadable(fds[0], [seen, fds, loop_thread, respond = std::move(respond)] {
          close(fds[0]);
          close(fds[1]);
          const bool here = std::this_thread::get_id() == loop_thread;
          seen->Add(std::string("ready in_turn=") + (WakeBatch::InScope() ? "1" : "0") +
                    " here=" + (here ? "1" : "0"));
          WakeBatch::AtEnd(seen.get(), [seen, loop_thread] {
            seen->Add(std::string("turn end here=") +
                      (std::this_thread::get_id() == loop_thread ? "1" : "0"));
          });
          seen->Add("after AtEnd");
          HttpReply r;
          r.body = "ok";
          respond(std::move(r));
        });
        std::thread([w = fds[1]] {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          (void)!write(w, "x", 1);
        }).detach();
      });
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  Client c((*listener)->port());
  ASSERT_TRUE(c.connected());
  c.Send(Get("/wait"));
  const std::string r = c.ReadResponse();
  ASSERT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  // The reply is written inside the callback; the turn's end may follow a moment later.
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard<std::mutex> lock(seen->mu);
      if (seen->events.size() >= 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::lock_guard<std::mutex> lock(seen->mu);
  EXPECT_EQ(seen->events,
            (std::vector<std::string>{"ready in_turn=1 here=1", "after AtEnd", "turn end here=1"}));
}

// A request that comes while the previous answer is still being computed elsewhere is
// read once that answer is written: its readiness event was taken while no read was
// queued, and the socket must not be taken for empty then (an answer written turns after
// its request's read skips the read attempt only when the socket has had no news).
TEST(HttpListener, RequestSentWhileTheAnswerIsPendingIsRead) {
  auto listener =
      HttpListener::Start("127.0.0.1", 0, 1, [](const HttpRequest& req, HttpRespond respond) {
        std::string path(req.path());
        auto answer = [path, respond = std::move(respond)]() mutable {
          HttpReply r;
          r.body = path;
          respond(std::move(r));
        };
        if (path.rfind("/slow", 0) != 0) return answer();
        std::thread([answer = std::move(answer)]() mutable {
          std::this_thread::sleep_for(std::chrono::milliseconds(60));
          answer();
        }).detach();
      });
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  Client c((*listener)->port());
  ASSERT_TRUE(c.connected());
  for (const char* next : {"/fast", "/slow2"}) {
    c.Send(Get("/slow"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // read, answer pending
    c.Send(Get(next));
    std::string r = c.ReadResponse();
    EXPECT_NE(r.find("\r\n\r\n/slow"), std::string::npos) << r;
    r = c.ReadResponse();  // "" after SO_RCVTIMEO if the request was never read
    EXPECT_NE(r.find(std::string("\r\n\r\n") + next), std::string::npos) << next << ": " << r;
  }
  // And the plain sequence the skipped read serves: the next request after the answer.
  for (int i = 0; i < 5; ++i) {
    c.Send(Get("/slow" + std::to_string(i)));
    EXPECT_NE(c.ReadResponse().find("/slow" + std::to_string(i)), std::string::npos) << i;
  }
}

// Requests that arrive in pieces (header split mid-line, body split, one piece ending a
// request and starting the next) are read whole, on a keep-alive connection answered
// inline (its next read waits for epoll without trying first) and on one answered from
// another thread (which reads on by itself); so is a request of exactly the first read's
// size, and a long run of plain keep-alive requests.
TEST(HttpListener, RequestsInPiecesAreReadWhole) {
  for (bool inline_answer : {true, false}) {
    SCOPED_TRACE(inline_answer ? "inline" : "from another thread");
    auto listener = HttpListener::Start(
        "127.0.0.1", 0, 1, [inline_answer](const HttpRequest& req, HttpRespond respond) {
          HttpReply r;
          r.content_type = "text/plain";
          r.body = std::string(req.path()) + " " + std::to_string(req.body()->size()) + " " +
                   req.body()->substr(0, 8) + "|" +
                   req.body()->substr(req.body()->size() > 8 ? req.body()->size() - 8 : 0);
          if (inline_answer) return respond(std::move(r));
          std::thread([r = std::move(r), respond = std::move(respond)]() mutable {
            respond(std::move(r));
          }).detach();
        });
    ASSERT_TRUE(listener.ok()) << listener.status().message();
    Client c((*listener)->port());
    ASSERT_TRUE(c.connected());
    auto post = [](const std::string& path, const std::string& body) {
      return "POST " + path +
             " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
             body;
    };
    auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); };
    const std::string a = post("/a", "abcdefgh-0123456789-ABCDEFGH");
    const std::string b = post("/b", std::string(3000, 'b') + "12345678");
    // Header split inside a field line, then inside the blank line, then the body in two.
    c.Send(a.substr(0, 20));
    pause();
    c.Send(a.substr(20, a.find("\r\n\r\n") + 2 - 20));
    pause();
    c.Send(a.substr(a.find("\r\n\r\n") + 2, 10));
    pause();
    c.Send(a.substr(a.find("\r\n\r\n") + 12));
    EXPECT_NE(c.ReadResponse().find("\r\n\r\n/a 28 abcdefgh|ABCDEFGH"), std::string::npos);
    // The end of one request and the start of the next in one piece.
    c.Send(b.substr(0, 1500));
    pause();
    c.Send(b.substr(1500) + a.substr(0, 30));
    pause();
    c.Send(a.substr(30));
    EXPECT_NE(c.ReadResponse().find("\r\n\r\n/b 3008 bbbbbbbb|12345678"), std::string::npos);
    EXPECT_NE(c.ReadResponse().find("\r\n\r\n/a 28 abcdefgh|ABCDEFGH"), std::string::npos);
    // Exactly the size of the first read (8 KiB): the socket may hold more after it.
    const size_t head_size = post("/x", std::string(1000, 'x')).size() - 1000;  // 4 digits
    const std::string exact = post("/x", std::string(8192 - head_size - 4, 'x') + "tail");
    ASSERT_EQ(exact.size(), 8192u);
    c.Send(exact);
    EXPECT_NE(c.ReadResponse().find("|xxxxtail"), std::string::npos);
    c.Send(exact + a);
    EXPECT_NE(c.ReadResponse().find("|xxxxtail"), std::string::npos);
    EXPECT_NE(c.ReadResponse().find("/a 28"), std::string::npos);
    for (int i = 0; i < 300; ++i) {
      c.Send(post("/k" + std::to_string(i), "body"));
      std::string r = c.ReadResponse();
      ASSERT_NE(r.find("\r\n\r\n/k" + std::to_string(i) + " 4 body|body"), std::string::npos) << r;
    }
  }
}

// Bodies from 64 KiB on are read into shareable memory (a backend's process maps it),
// straight from the socket: whole when they come in pieces, with a pipelined request
// behind them, after 100-continue, NUL-terminated like any body; smaller ones are not.
TEST(HttpListener, LargeBodiesAreReadIntoShareableMemory) {
  auto listener =
      HttpListener::Start("127.0.0.1", 0, 1, [](const HttpRequest& req, HttpRespond respond) {
        const char* d = req.body_data();
        const size_t n = req.body_size();
        HttpReply r;
        r.content_type = "text/plain";
        r.body = std::string(req.path()) + " " + std::to_string(n) + " " +
                 std::string(d, std::min<size_t>(n, 8)) + "|" +
                 std::string(d + (n > 8 ? n - 8 : 0), std::min<size_t>(n, 8)) +
                 (FindShareable(d, n) ? " shared" : " heap") + (d[n] == '\0' ? " nul" : " no-nul") +
                 (*req.body() == std::string(d, n) ? " same" : " differs");
        respond(std::move(r));
      });
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  Client c((*listener)->port());
  ASSERT_TRUE(c.connected());
  auto post = [](const std::string& path, const std::string& body, const std::string& extra = "") {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + extra +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  auto pause = [] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); };
  std::string big(100'000, 'q');
  big.replace(0, 8, "BEGIN---");
  big.replace(big.size() - 8, 8, "----END.");
  const std::string a = post("/big", big);
  const std::string small = post("/small", "0123456789abcdef");
  // The header and the body's start in one piece, the rest and the next request in another.
  c.Send(a.substr(0, 5000));
  pause();
  ASSERT_TRUE(c.SendAll(a.substr(5000) + small));
  EXPECT_NE(c.ReadResponse().find("\r\n\r\n/big 100000 BEGIN---|----END. shared nul same"),
            std::string::npos);
  EXPECT_NE(c.ReadResponse().find("/small 16 01234567|89abcdef heap nul same"), std::string::npos);
  // The threshold, and one byte under it.
  ASSERT_TRUE(c.SendAll(post("/at", std::string(65536, 'a'))));
  EXPECT_NE(c.ReadResponse().find("/at 65536 aaaaaaaa|aaaaaaaa shared nul same"),
            std::string::npos);
  ASSERT_TRUE(c.SendAll(post("/under", std::string(65535, 'u'))));
  EXPECT_NE(c.ReadResponse().find("/under 65535 uuuuuuuu|uuuuuuuu heap nul same"),
            std::string::npos);
  // Expect: 100-continue: the body follows the interim answer.
  const std::string head = post("/cont", "", "Expect: 100-continue\r\n");
  c.Send(head.substr(0, head.find("Content-Length")) + "Content-Length: 100000\r\n\r\n");
  EXPECT_NE(c.ReadResponse().find("100 Continue"), std::string::npos);
  ASSERT_TRUE(c.SendAll(big));
  EXPECT_NE(c.ReadResponse().find("/cont 100000 BEGIN---|----END. shared nul same"),
            std::string::npos);
  // A client that stops half way and closes: the connection goes, the listener serves on.
  {
    Client quitter((*listener)->port());
    quitter.Send(a.substr(0, 50'000));
  }
  Client d((*listener)->port());
  ASSERT_TRUE(d.SendAll(a));
  EXPECT_NE(d.ReadResponse().find("/big 100000 BEGIN---|----END. shared"), std::string::npos);
}

// A large body read straight into shareable memory is under the request timeout too, and
// its size limit: a client that stalls half way gets 408, one announcing too much 413.
TEST(HttpListener, LargeBodyReadsTimeOutAndRespectTheLimit) {
  HttpListenerOptions options;
  options.address = "127.0.0.1";
  options.request_timeout_ms = 300;
  options.max_body_size = 1 << 20;
  auto listener = HttpListener::Start(options, [](const HttpRequest& req, HttpRespond respond) {
    HttpReply r;
    r.body = std::to_string(req.body_size());
    respond(std::move(r));
  });
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  const std::string head = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n";
  Client slow((*listener)->port());
  ASSERT_TRUE(slow.SendAll(head + std::string(100'000, 's')));
  std::string r = slow.ReadResponse();
  EXPECT_EQ(r.rfind("HTTP/1.1 408", 0), 0u) << r;
  Client big((*listener)->port());
  big.Send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
  r = big.ReadResponse();
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  Client ok((*listener)->port());  // and the listener serves on
  ASSERT_TRUE(ok.SendAll(head + std::string(200'000, 'o')));
  r = ok.ReadResponse();
  EXPECT_NE(r.find("\r\n\r\n200000"), std::string::npos) << r;
}

TEST(HttpListener, OversizedBodyIs413AndConnectionCloses) {
  HttpListenerOptions o;
  o.address = "127.0.0.1";
  o.max_body_size = 100;
  auto listener =
      HttpListener::Start(o, [](const HttpRequest&, HttpRespond respond) { respond(HttpReply{}); });
  ASSERT_TRUE(listener.ok());
  Client c((*listener)->port());
  c.Send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'x'));
  std::string r = c.ReadResponse();
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  EXPECT_NE(r.find("limit of 100 bytes"), std::string::npos) << r;
  EXPECT_TRUE(c.PeerClosed());

  Client g((*listener)->port());
  g.Send("GARBAGE\r\n\r\n");
  r = g.ReadResponse();
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
}

// A client that writes its whole request before reading (as most do) must read the early
// answer: closing with its body unread would reset the connection and lose the answer.
TEST(HttpListener, EarlyAnswerIsReadByAClientThatWritesTheWholeBodyFirst) {
  HttpListenerOptions o;
  o.address = "127.0.0.1";
  o.max_body_size = 64 << 10;
  o.precheck = [](const HttpRequest& req) -> std::optional<HttpReply> {
    if (req.path() != "/locked") return std::nullopt;
    HttpReply r;
    r.status = 403;
    return r;
  };
  auto listener =
      HttpListener::Start(o, [](const HttpRequest&, HttpRespond respond) { respond(HttpReply{}); });
  ASSERT_TRUE(listener.ok());
  auto request = [](const std::string& path, size_t size) {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(size) +
           "\r\n\r\n" + std::string(size, 'x');
  };
  const std::pair<std::string, std::string> cases[] = {
      {request("/open", 1 << 20), "HTTP/1.1 413"},      // over the limit
      {request("/locked", 60 << 10), "HTTP/1.1 403"}};  // refused on the header
  for (const auto& [req, want] : cases) {
    for (int i = 0; i < 10; ++i) {
      Client c((*listener)->port());
      ASSERT_TRUE(c.connected());
      if (i % 2) c.SetSendBuffer(16 << 10);
      ASSERT_TRUE(c.SendAll(req)) << want << " run " << i << ": " << strerror(errno);
      std::string r = c.ReadResponse();
      EXPECT_EQ(r.rfind(want, 0), 0u) << "run " << i << ": " << r;
      EXPECT_TRUE(c.PeerClosed());
    }
  }
}

TEST(HttpListener, HttpOneZeroClosesUnlessKeepAlive) {
  auto listener = HttpListener::Start(
      "127.0.0.1", 0, 1, [](const HttpRequest&, HttpRespond respond) { respond(HttpReply{}); });
  ASSERT_TRUE(listener.ok());
  Client c((*listener)->port());
  c.Send("GET / HTTP/1.0\r\n\r\n");
  std::string r = c.ReadResponse();
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  EXPECT_TRUE(c.PeerClosed());
}

TEST(HttpListener, StopWritesTheAnswerInProgressAndClosesIdleConnections) {
  std::atomic<bool> got{false};
  HttpRespond pending;
  std::mutex mu;
  auto listener =
      HttpListener::Start("127.0.0.1", 0, 2, [&](const HttpRequest&, HttpRespond respond) {
        std::lock_guard<std::mutex> lock(mu);
        pending = std::move(respond);
        got = true;
      });
  ASSERT_TRUE(listener.ok());
  Client idle((*listener)->port());
  Client busy((*listener)->port());
  busy.Send(Get("/slow"));
  while (!got) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread answer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard<std::mutex> lock(mu);
    HttpReply r;
    r.body = "late";
    pending(std::move(r));
  });
  auto t0 = std::chrono::steady_clock::now();
  (*listener)->Stop();
  auto waited = std::chrono::steady_clock::now() - t0;
  answer.join();
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_TRUE(idle.PeerClosed());
  std::string r = busy.ReadResponse();
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  EXPECT_EQ(r.substr(r.size() - 4), "late");
  // An answer after Stop() is dropped, not a crash.
  (*listener).reset();
  std::lock_guard<std::mutex> lock(mu);
  pending(HttpReply{});
}

TEST(HttpListener, BadAddressAndPortInUse) {
  auto bad = HttpListener::Start("not-an-ip", 0, 1, [](const HttpRequest&, HttpRespond) {});
  EXPECT_FALSE(bad.ok());
  auto first = HttpListener::Start("127.0.0.1", 0, 1, [](const HttpRequest&, HttpRespond) {});
  ASSERT_TRUE(first.ok());
  auto second =
      HttpListener::Start("127.0.0.1", (*first)->port(), 1, [](const HttpRequest&, HttpRespond) {});
  EXPECT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("bind"), std::string::npos);
}

// The second I/O thread joins when the first is busy, connections move to it between
// requests and keep being answered, and they move back once the load is gone. The
// handler burns CPU on the I/O thread itself; the machine's idle CPU is not asked for
// (idle_cores_to_grow < 0), so the test does not depend on what else the machine runs.
TEST(HttpListener, ConnectionsMoveBetweenIoThreadsWithTheLoad) {
  std::mutex mu;
  std::map<std::thread::id, int> thread_index;
  HttpListenerOptions options;
  options.address = "127.0.0.1";
  options.threads = 2;
  options.io_balance.busy_to_grow = 0.3;
  options.io_balance.idle_cores_to_grow = -1;
  options.io_balance.quiet_ticks_to_shrink = 3;
  auto listener = HttpListener::Start(options, [&](const HttpRequest& req, HttpRespond respond) {
    int index = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      index = thread_index.emplace(std::this_thread::get_id(), thread_index.size()).first->second;
    }
    if (req.path() == "/burn") {
      timespec start{}, now{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
      do {
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
      } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
               2000000L);
    }
    HttpReply r;
    r.body = std::string(req.path()) + " on " + std::to_string(index);
    respond(std::move(r));
  });
  ASSERT_TRUE(listener.ok()) << listener.status().message();
  const int port = (*listener)->port();

  // Four keep-alive connections, each asking in turn until both threads have answered.
  constexpr int kConnections = 4;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<Client>(port));
    ASSERT_TRUE(clients.back()->connected());
  }
  std::atomic<bool> both{false};
  std::atomic<int> wrong{0};
  std::vector<std::thread> load;
  for (int i = 0; i < kConnections; ++i) {
    load.emplace_back([&, i] {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!both.load() && std::chrono::steady_clock::now() < until) {
        clients[i]->Send(Get("/burn"));
        const std::string r = clients[i]->ReadResponse();
        if (r.find("\r\n\r\n/burn on ") == std::string::npos) {
          ++wrong;
          return;
        }
        if (r.find("/burn on 1") != std::string::npos) both = true;
      }
    });
  }
  for (auto& t : load) t.join();
  EXPECT_EQ(wrong.load(), 0);
  ASSERT_TRUE(both.load()) << "the second I/O thread never answered under load";

  // Load gone: the second thread leaves, and each connection, answered once more where it
  // is, is answered by the first from then on.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  for (auto& c : clients) {
    c->Send(Get("/idle"));
    EXPECT_NE(c->ReadResponse().find("\r\n\r\n/idle on "), std::string::npos);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (auto& c : clients) {
    c->Send(Get("/after"));
    const std::string r = c->ReadResponse();
    EXPECT_NE(r.find("\r\n\r\n/after on 0"), std::string::npos) << r;
  }
}

}  // namespace
}  // namespace flowserve
