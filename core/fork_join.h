// TwoWayFork: runs two tasks at once, one on the caller's thread and one on a helper thread that
// lives as long as the object, for splitting one step's work (e.g. an MF batch gradient) over two
// cores without starting a thread per step.
//
// Handing a task over costs a condition-variable wake-up (tens of microseconds on a VM), so the
// helper polls for 20 microseconds after each task before it sleeps (and the caller as long for
// the helper's part): a second Run right after the first (two phases of one step) then starts at
// once, and an idle helper costs no CPU.
//
// Thread-compatible: one caller at a time.
#pragma once

#include <atomic>
#include <thread>

#include "core/mutex.h"

namespace tessera {

class TwoWayFork {
 public:
  TwoWayFork();
  ~TwoWayFork();
  TwoWayFork(const TwoWayFork&) = delete;
  TwoWayFork& operator=(const TwoWayFork&) = delete;

  // Runs `helper_task()` on the helper thread and `own_task()` on the calling thread; returns
  // when both have returned. The tasks must not throw.
  template <typename Own, typename Helper>
  void Run(Own&& own_task, Helper&& helper_task) {
    Start(&Invoke<Helper>, &helper_task);
    own_task();
    Wait();
  }

 private:
  template <typename F>
  static void Invoke(void* f) {
    (*static_cast<F*>(f))();
  }
  void Start(void (*fn)(void*), void* arg) TS_EXCLUDES(mu_);
  void Wait() TS_EXCLUDES(mu_);
  void Loop() TS_EXCLUDES(mu_);

  Mutex mu_;
  CondVar cv_;
  void (*fn_)(void*) TS_GUARDED_BY(mu_) = nullptr;  // the task handed over, read by the helper
  void* arg_ TS_GUARDED_BY(mu_) = nullptr;
  std::atomic<uint64_t> posted_{0};    // tasks handed to the helper
  std::atomic<uint64_t> finished_{0};  // tasks the helper has finished
  std::atomic<bool> sleeping_{false};  // the helper waits on cv_ (a post must notify)
  std::atomic<bool> caller_waiting_{false};
  bool stop_ TS_GUARDED_BY(mu_) = false;
  std::thread helper_;
};

}  // namespace tessera
