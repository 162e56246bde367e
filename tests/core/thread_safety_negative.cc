// Lock mistakes that Clang's thread-safety analysis must reject: scripts/thread-safety-check.sh
// compiles this file once per TS_NEGATIVE_CASE and fails unless each case is an error of
// -Wthread-safety, and once without a case, which must compile (so the errors come from the
// mistakes, not from a broken file). Not part of any CMake target.
#include "core/mutex.h"

#ifndef TS_NEGATIVE_CASE
#define TS_NEGATIVE_CASE 0
#endif

namespace tessera {

class Account {
 public:
  void Deposit(int amount) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    AddLocked(amount);
    changed_.SignalAll();
  }
  int WaitForAtLeast(int amount) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    changed_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return balance_ >= amount; });
    return balance_;
  }

#if TS_NEGATIVE_CASE == 1
  // Reads a guarded member without its lock.
  int UnlockedRead() { return balance_; }
#elif TS_NEGATIVE_CASE == 2
  // Writes a guarded member without its lock.
  void UnlockedWrite() { balance_ = 0; }
#elif TS_NEGATIVE_CASE == 3
  // Calls a TS_REQUIRES helper without the lock.
  void UnlockedHelper() { AddLocked(1); }
#elif TS_NEGATIVE_CASE == 4
  // Waits on a CondVar without holding the mutex the wait releases.
  void UnlockedWait() {
    changed_.Wait(&mu_, [] { return true; });
  }
#elif TS_NEGATIVE_CASE == 5
  // Returns with the lock still held.
  void LeakedLock() { mu_.Lock(); }
#elif TS_NEGATIVE_CASE == 6
  // Calls a function that takes the lock itself while holding it (a self-deadlock).
  void DoubleLock() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    Deposit(1);
  }
#elif TS_NEGATIVE_CASE == 7
  // A wait predicate without TS_REQUIRES reads a guarded member: the analysis checks a lambda on
  // its own, so the predicate must say that it runs with the lock held.
  void UnannotatedPredicate() {
    MutexLock lock(&mu_);
    changed_.Wait(&mu_, [&] { return balance_ > 0; });
  }
#endif

 private:
  void AddLocked(int amount) TS_REQUIRES(mu_) { balance_ += amount; }

  Mutex mu_;
  CondVar changed_;
  int balance_ TS_GUARDED_BY(mu_) = 0;
};

}  // namespace tessera
