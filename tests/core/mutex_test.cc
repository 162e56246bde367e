#include "core/mutex.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace tessera {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// A counter whose increments are a read, a yield and a write: without mutual exclusion two
// threads interleave between the read and the write and increments are lost.
class Counter {
 public:
  void Increment() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (inside_) ++overlaps_;
    inside_ = true;
    const int64_t seen = value_;
    std::this_thread::yield();
    value_ = seen + 1;
    inside_ = false;
  }
  int64_t value() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return value_;
  }
  int64_t overlaps() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return overlaps_;
  }

 private:
  Mutex mu_;
  int64_t value_ TS_GUARDED_BY(mu_) = 0;
  bool inside_ TS_GUARDED_BY(mu_) = false;
  int64_t overlaps_ TS_GUARDED_BY(mu_) = 0;
};

TEST(MutexTest, MutexLockExcludesOtherThreads) {
  constexpr int kThreads = 4;
  constexpr int kIncrements = 20000;
  Counter counter;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) counter.Increment();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.value(), int64_t{kThreads} * kIncrements);
  EXPECT_EQ(counter.overlaps(), 0);
}

TEST(MutexTest, MutexLockReleasesAtScopeEnd) {
  Mutex mu;
  int value = 0;
  {
    MutexLock lock(&mu);
    value = 1;
  }
  // A second thread can take the lock only if the first MutexLock let it go.
  std::thread other([&] {
    MutexLock lock(&mu);
    value = 2;
  });
  other.join();
  MutexLock lock(&mu);
  EXPECT_EQ(value, 2);
}

// A value that waiters watch: Set changes it under the lock and wakes every waiter.
class Watched {
 public:
  void Set(int v) TS_EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      value_ = v;
    }
    changed_.SignalAll();
  }
  // Waits until the value is at least `target` and returns the value it saw then.
  int WaitAtLeast(int target) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    changed_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return value_ >= target; });
    return value_;
  }
  // WaitFor's result, and the value seen when it returned.
  std::pair<bool, int> WaitAtLeastFor(int target, milliseconds timeout) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    const bool done =
        changed_.WaitFor(&mu_, timeout, [&]() TS_REQUIRES(mu_) { return value_ >= target; });
    return {done, value_};
  }
  int waiters_started() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return waiters_started_;
  }
  // Counts a waiter in (so a test can wait until every waiter has started) and waits like
  // WaitAtLeast.
  int CountAndWaitAtLeast(int target) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    ++waiters_started_;
    changed_.SignalAll();
    changed_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return value_ >= target; });
    return value_;
  }
  void WaitForWaiters(int n) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    changed_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return waiters_started_ >= n; });
  }

 private:
  Mutex mu_;
  CondVar changed_;
  int value_ TS_GUARDED_BY(mu_) = 0;
  int waiters_started_ TS_GUARDED_BY(mu_) = 0;
};

TEST(CondVarTest, WaitReturnsOnceThePredicateHolds) {
  Watched watched;
  int seen = -1;
  std::thread waiter([&] { seen = watched.WaitAtLeast(3); });
  // Wake-ups whose value does not satisfy the predicate must not end the wait.
  watched.Set(1);
  watched.Set(2);
  watched.Set(3);
  waiter.join();
  EXPECT_EQ(seen, 3);
}

TEST(CondVarTest, WaitDoesNotSleepWhenThePredicateAlreadyHolds) {
  Watched watched;
  watched.Set(5);
  EXPECT_EQ(watched.WaitAtLeast(5), 5);  // no other thread: a wait that slept would hang
}

TEST(CondVarTest, SignalAllWakesEveryWaiter) {
  constexpr int kWaiters = 3;
  Watched watched;
  std::vector<int> seen(kWaiters, -1);
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&, i] { seen[i] = watched.CountAndWaitAtLeast(1); });
  }
  watched.WaitForWaiters(kWaiters);
  watched.Set(1);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(seen, std::vector<int>(kWaiters, 1));
}

TEST(CondVarTest, WaitForReturnsTrueWhenWokenInTime) {
  Watched watched;
  std::pair<bool, int> result{false, -1};
  std::thread waiter([&] { result = watched.WaitAtLeastFor(1, std::chrono::minutes(5)); });
  watched.Set(1);
  waiter.join();
  EXPECT_TRUE(result.first);
  EXPECT_EQ(result.second, 1);
}

TEST(CondVarTest, WaitForGivesUpAfterTheTimeout) {
  Watched watched;
  const auto start = steady_clock::now();
  const auto [done, value] = watched.WaitAtLeastFor(1, milliseconds(30));
  const auto waited = steady_clock::now() - start;
  EXPECT_FALSE(done);
  EXPECT_EQ(value, 0);
  EXPECT_GE(waited, milliseconds(30));
  EXPECT_LT(waited, std::chrono::seconds(30));
}

TEST(CondVarTest, WaitForWithZeroTimeoutReportsThePredicate) {
  Watched watched;
  EXPECT_FALSE(watched.WaitAtLeastFor(1, milliseconds(0)).first);
  watched.Set(1);
  EXPECT_TRUE(watched.WaitAtLeastFor(1, milliseconds(0)).first);
}

}  // namespace
}  // namespace tessera
