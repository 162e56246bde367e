// Mutex, MutexLock and CondVar: std::mutex and std::condition_variable with the thread-safety
// annotations of core/thread_annotations.h, so Clang's -Wthread-safety (a CI stage) checks every
// TS_GUARDED_BY member against the lock that guards it. Use these instead of bare std::mutex.
//
//   Mutex mu_;
//   int64_t pending_ TS_GUARDED_BY(mu_) = 0;
//   CondVar changed_;
//   ...
//   MutexLock lock(&mu_);
//   changed_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return pending_ == 0; });
//
// (A predicate that reads guarded members says TS_REQUIRES(mu_): the analysis checks a lambda on
// its own and cannot see that the wait holds the lock while it runs.)
//
// Thread-safe, as the std types they wrap.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "core/thread_annotations.h"

namespace tessera {

class TS_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() TS_ACQUIRE() { mu_.lock(); }
  void Unlock() TS_RELEASE() { mu_.unlock(); }
  // Tells the analysis that the caller holds the lock (no run-time check).
  void AssertHeld() const TS_ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` from construction to destruction.
class TS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) TS_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() TS_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable; each wait names the Mutex it releases while it sleeps (as absl's), so
// the analysis sees which lock the caller must hold. Use one Mutex for every wait on a CondVar.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Waits until `done()` is true; `done` runs with `mu` held.
  template <typename Predicate>
  void Wait(Mutex* mu, Predicate done) TS_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock, done);
    lock.release();  // the caller still holds the mutex
  }
  // Like Wait, but gives up after `timeout`; returns done()'s last value.
  template <typename Rep, typename Period, typename Predicate>
  bool WaitFor(Mutex* mu, std::chrono::duration<Rep, Period> timeout, Predicate done)
      TS_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool result = cv_.wait_for(lock, timeout, done);
    lock.release();
    return result;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace tessera
