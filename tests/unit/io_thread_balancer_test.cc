// The rule that decides how many HTTP I/O threads take connections.
#include "frontends/http/io_thread_balancer.h"

#include <gtest/gtest.h>

namespace flowserve {
namespace {

using Sample = IoThreadBalancer::Sample;

int Next(int active, Sample s, int& quiet, int threads = 4) {
  return IoThreadBalancer::Decide(IoThreadBalancer::Policy{}, threads, active, s, quiet);
}

TEST(IoThreadBalancer, GrowsOnlyWhenBusyAndTheMachineHasAnIdleCore) {
  int quiet = 0;
  EXPECT_EQ(Next(1, {0.95, 0.95, 2.5}, quiet), 2);
  // Busy, but the cores are taken (the clients run here too): one thread stays.
  EXPECT_EQ(Next(1, {0.95, 0.95, 0.3}, quiet), 1);
  // An idle machine and a thread with little to do: no reason to spread.
  EXPECT_EQ(Next(1, {0.2, 0.2, 3.0}, quiet), 1);
  // Never beyond the threads there are.
  EXPECT_EQ(Next(4, {0.99, 3.9, 8.0}, quiet), 4);
  EXPECT_EQ(Next(2, {0.99, 1.9, 8.0}, quiet, 2), 2);
}

TEST(IoThreadBalancer, ShrinksAfterTenQuietTicksAndNotWhileTheRestWouldBeBusy) {
  int quiet = 0;
  // Two threads at 0.35 each would put 0.7 on one: keep both.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Next(2, {0.35, 0.7, 1.0}, quiet), 2);
  // Light load: one thread goes, after ten ticks in a row.
  for (int i = 0; i < 9; ++i) EXPECT_EQ(Next(2, {0.1, 0.2, 1.5}, quiet), 2);
  EXPECT_EQ(Next(2, {0.1, 0.2, 1.5}, quiet), 1);
  // A busy tick in between starts the count again.
  quiet = 0;
  for (int i = 0; i < 9; ++i) EXPECT_EQ(Next(3, {0.2, 0.5, 1.5}, quiet), 3);
  EXPECT_EQ(Next(3, {0.5, 1.0, 1.5}, quiet), 3);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(Next(3, {0.2, 0.5, 1.5}, quiet), 3);
  EXPECT_EQ(Next(3, {0.2, 0.5, 1.5}, quiet), 2);
  EXPECT_EQ(quiet, 0);
}

TEST(IoThreadBalancer, MeasuresRealThreads) {
  // With no clocks set it keeps one thread active, whatever it measures.
  IoThreadBalancer b(2, IoThreadBalancer::Policy{});
  EXPECT_EQ(b.active(), 1);
  EXPECT_EQ(b.Tick(), 1);
}

}  // namespace
}  // namespace flowserve
