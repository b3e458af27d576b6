// The waiting pieces the I/O and instance threads share: AdaptiveSpin, the lone-client
// hint, WakeBatch.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/adaptive_spin.h"
#include "common/client_activity.h"
#include "common/wake_batch.h"

namespace flowserve {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

TEST(AdaptiveSpin, StopsAsSoonAsDone) {
  AdaptiveSpin spin(microseconds(1'000'000));
  int calls = 0;
  const auto start = steady_clock::now();
  EXPECT_TRUE(spin.Spin([&] { return ++calls == 3; }));
  EXPECT_EQ(calls, 3);
  EXPECT_LT(steady_clock::now() - start, milliseconds(500));
}

TEST(AdaptiveSpin, GivesUpAfterItsBudget) {
  AdaptiveSpin spin(microseconds(2000));
  const auto start = steady_clock::now();
  EXPECT_FALSE(spin.Spin([] { return false; }));
  EXPECT_GE(steady_clock::now() - start, microseconds(2000));
}

TEST(AdaptiveSpin, ZeroBudgetNeverPolls) {
  AdaptiveSpin spin(microseconds(0));
  int calls = 0;
  EXPECT_FALSE(spin.Spin([&] { return ++calls > 0; }));
  EXPECT_EQ(calls, 0);
}

// Several clients in the last moment: what the server looks like under load.
void SeveralClients() {
  NoteRequestFrom(1);
  NoteRequestFrom(2);
}

// Runs `body` while another busy thread shares the calling thread's CPU, so the kernel
// must take the core away from a spinner to run the other one.
template <class Body>
void WithCpuContended(Body body) {
  cpu_set_t saved;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
  std::atomic<bool> stop{false};
  std::thread hog([&] {
    pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    while (!stop.load(std::memory_order_relaxed)) {
    }
  });
  body();
  stop = true;
  hog.join();
  pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
}

TEST(AdaptiveSpin, BacksOffAfterTheCoreWasTakenAway) {
  WithCpuContended([] {
    // A time slice on a CPU shared by two busy threads is a few milliseconds.
    AdaptiveSpin spin(microseconds(200'000));
    int calls = 0;
    SeveralClients();
    EXPECT_FALSE(spin.Spin([&] { return ++calls < 0; }));
    EXPECT_GT(calls, 0);
    const int before = calls;
    SeveralClients();
    EXPECT_FALSE(spin.Spin([&] { return ++calls < 0; }));
    EXPECT_EQ(calls, before) << "the spin after a contended one polled instead of backing off";
  });
}

TEST(AdaptiveSpin, KeepsSpinningForALoneClient) {
  WithCpuContended([] {
    AdaptiveSpin spin(microseconds(50'000));
    NoteRequestFrom(7);
    std::this_thread::sleep_for(milliseconds(30));  // older than the mixed-clients window
    ASSERT_TRUE(LoneClient());
    int calls = 0;
    EXPECT_FALSE(spin.Spin([&] { return ++calls < 0; }));
    const int before = calls;
    NoteRequestFrom(7);
    EXPECT_FALSE(spin.Spin([&] { return ++calls < 0; }));
    EXPECT_GT(calls, before);
  });
}

TEST(ClientActivity, SeveralClientsThenOneAgain) {
  SeveralClients();
  EXPECT_FALSE(LoneClient());
  const auto start = steady_clock::now();
  while (!LoneClient() && steady_clock::now() - start < milliseconds(2000)) {
    NoteRequestFrom(2);
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_TRUE(LoneClient()) << "one client alone for 2 s still counts as several";
}

TEST(WakeBatch, NotifiesOnceTheOutermostScopeEnds) {
  auto cv = std::make_shared<std::condition_variable>();
  std::mutex mu;
  bool waiting = false;
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    waiting = true;
    cv->wait(lock);  // no predicate: any wake-up counts
    woke = true;
  });
  while (true) {  // seen under the lock: the waiter has released it inside wait()
    std::lock_guard<std::mutex> lock(mu);
    if (waiting) break;
  }
  {
    WakeBatch outer;
    {
      WakeBatch inner;
      WakeBatch::NotifyOne(cv);
      WakeBatch::NotifyOne(cv);
    }
    std::this_thread::sleep_for(milliseconds(50));
    EXPECT_FALSE(woke.load()) << "woken before the outermost scope ended";
  }
  waiter.join();
  EXPECT_TRUE(woke.load());
}

TEST(WakeBatch, NotifiesAtOnceOutsideAScope) {
  auto cv = std::make_shared<std::condition_variable>();
  std::mutex mu;
  std::unique_lock<std::mutex> lock(mu);
  std::thread notifier([&] {
    std::lock_guard<std::mutex> l(mu);  // runs once the main thread waits
    WakeBatch::NotifyOne(cv);
  });
  EXPECT_EQ(cv->wait_for(lock, std::chrono::seconds(10)), std::cv_status::no_timeout);
  lock.unlock();
  notifier.join();
}

}  // namespace
}  // namespace flowserve
