// A closable multi-producer multi-consumer FIFO. Pop blocks until an item arrives or the queue is
// closed and drained. Thread-safe.
#pragma once

#include <chrono>
#include <deque>
#include <optional>

#include "core/mutex.h"

namespace tessera {

template <typename T>
class BlockingQueue {
 public:
  // Returns false (and drops the item) once the queue is closed.
  bool Push(T item) TS_EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      if (closed_) return false;
      items_.push_back(std::move(item));
    }
    ready_.Signal();
    return true;
  }
  // The next item, or nullopt once closed and empty.
  std::optional<T> Pop() TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    ready_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return closed_ || !items_.empty(); });
    return TakeLocked();
  }
  // Like Pop, but gives up after `timeout` (nullopt).
  std::optional<T> PopFor(std::chrono::milliseconds timeout) TS_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    ready_.WaitFor(&mu_, timeout, [&]() TS_REQUIRES(mu_) { return closed_ || !items_.empty(); });
    return TakeLocked();
  }
  void Close() TS_EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      closed_ = true;
    }
    ready_.SignalAll();
  }

 private:
  std::optional<T> TakeLocked() TS_REQUIRES(mu_) {
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  Mutex mu_;
  CondVar ready_;
  std::deque<T> items_ TS_GUARDED_BY(mu_);
  bool closed_ TS_GUARDED_BY(mu_) = false;
};

}  // namespace tessera
