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
#include <condition_variable>
#include <mutex>
#include <thread>

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
  void Start(void (*fn)(void*), void* arg);
  void Wait();
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  void (*fn_)(void*) = nullptr;  // GUARDED_BY(mu_) for the hand-over; read by the helper
  void* arg_ = nullptr;
  std::atomic<uint64_t> posted_{0};    // tasks handed to the helper
  std::atomic<uint64_t> finished_{0};  // tasks the helper has finished
  std::atomic<bool> sleeping_{false};  // the helper waits on cv_ (a post must notify)
  std::atomic<bool> caller_waiting_{false};
  bool stop_ = false;  // GUARDED_BY(mu_)
  std::thread helper_;
};

}  // namespace tessera
