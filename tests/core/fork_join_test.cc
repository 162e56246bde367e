// TwoWayFork runs its two tasks at the same time, finishes both before Run returns, and hands
// over many tasks in a row, whether the helper is polling or asleep.
#include "core/fork_join.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace tessera {
namespace {

using std::chrono::steady_clock;

// Spins until `flag` is set or two seconds pass; returns whether it was set.
bool AwaitFlag(const std::atomic<bool>& flag) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(2);
  while (!flag.load()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(TwoWayForkTest, RunsBothTasksAtTheSameTime) {
  TwoWayFork fork;
  // Each task waits for the other to start: only concurrent tasks can both see the other's flag.
  std::atomic<bool> own_started{false}, helper_started{false};
  bool own_saw = false, helper_saw = false;
  std::thread::id helper_id;
  fork.Run(
      [&] {
        own_started = true;
        own_saw = AwaitFlag(helper_started);
      },
      [&] {
        helper_id = std::this_thread::get_id();
        helper_started = true;
        helper_saw = AwaitFlag(own_started);
      });
  EXPECT_TRUE(own_saw);
  EXPECT_TRUE(helper_saw);
  EXPECT_NE(helper_id, std::this_thread::get_id());
}

TEST(TwoWayForkTest, BothTasksHaveFinishedWhenRunReturns) {
  TwoWayFork fork;
  int64_t own_sum = 0, helper_sum = 0;
  for (int round = 1; round <= 2000; ++round) {
    fork.Run([&] { own_sum += round; },
             [&] {
               if (round % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
               helper_sum += round;
             });
    // The helper's write is visible here: Run waited for it.
    ASSERT_EQ(helper_sum, own_sum) << "round " << round;
  }
  EXPECT_EQ(helper_sum, 2000 * 2001 / 2);
}

TEST(TwoWayForkTest, WakesAnAsleepHelperAndStopsWhileAsleep) {
  TwoWayFork fork;
  int runs = 0;
  for (int i = 0; i < 3; ++i) {
    // Long enough for the helper to stop polling and sleep.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    fork.Run([] {}, [&] { ++runs; });
  }
  EXPECT_EQ(runs, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // The destructor joins the sleeping helper (a hang here fails on the ctest timeout).
}

}  // namespace
}  // namespace tessera
