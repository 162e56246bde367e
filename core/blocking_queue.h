// A closable multi-producer multi-consumer FIFO. Pop blocks until an item arrives or the queue is
// closed and drained. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

namespace tessera {

template <typename T>
class BlockingQueue {
 public:
  // Returns false (and drops the item) once the queue is closed.
  bool Push(T item) {
    {
      std::lock_guard lock(mu_);
      if (closed_) return false;
      items_.push_back(std::move(item));
    }
    ready_.notify_one();
    return true;
  }
  // The next item, or nullopt once closed and empty.
  std::optional<T> Pop() {
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return closed_ || !items_.empty(); });
    return TakeLocked();
  }
  // Like Pop, but gives up after `timeout` (nullopt).
  std::optional<T> PopFor(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    ready_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
    return TakeLocked();
  }
  void Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    ready_.notify_all();
  }

 private:
  std::optional<T> TakeLocked() {
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<T> items_;  // GUARDED_BY(mu_)
  bool closed_ = false;  // GUARDED_BY(mu_)
};

}  // namespace tessera
