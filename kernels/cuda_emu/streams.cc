// The emulated streams and events (include/cuda_runtime.h): queues of host closures that run, in
// order, on whichever host thread waits for them.
#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime_internal.h"

struct CUstream_st {
  int device = 0;
  bool blocking = true;  // cudaStreamDefault: ordered after the legacy default stream's work
  std::mutex queue_mu;
  std::deque<std::function<cudaError_t()>> ops;  // guarded by queue_mu
  uint64_t enqueued = 0;                         // guarded by queue_mu
  cudaError_t pending = cudaSuccess;             // guarded by queue_mu: first error of its work
  std::recursive_mutex exec_mu;                  // held while running ops, in order
  std::atomic<uint64_t> executed{0};
};

struct CUevent_st {
  std::mutex mu;
  std::shared_ptr<CUstream_st> stream;  // guarded by mu; null: complete
  uint64_t seq = 0;                     // guarded by mu: complete once stream executed seq ops
  bool recorded = false;                // guarded by mu
  // Written by the recording op (in stream order), read after the event completed.
  std::chrono::steady_clock::time_point time;
};

namespace cuda_emu::internal {
namespace {

struct StreamRegistry {
  std::mutex mu;
  std::map<CUstream_st*, std::shared_ptr<CUstream_st>> streams;  // guarded by mu
};

StreamRegistry& stream_registry() {
  static StreamRegistry* r = new StreamRegistry;  // never destroyed, like the allocation table
  return *r;
}

// First error of work this thread ran on the legacy default stream, for its next synchronisation.
thread_local cudaError_t t_legacy_error = cudaSuccess;

cudaError_t Fail(cudaError_t error) {
  SetLastError(error);
  return error;
}

std::shared_ptr<CUstream_st> Lookup(cudaStream_t stream) {
  StreamRegistry& r = stream_registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.streams.find(stream);
  return it == r.streams.end() ? nullptr : it->second;
}

// Runs `stream`'s ops until `target` of them have run.
void RunTo(CUstream_st* s, uint64_t target) {
  if (s->executed.load() >= target) return;
  std::lock_guard<std::recursive_mutex> exec(s->exec_mu);
  while (s->executed.load() < target) {
    std::function<cudaError_t()> op;
    {
      std::lock_guard<std::mutex> lock(s->queue_mu);
      op = std::move(s->ops.front());
      s->ops.pop_front();
    }
    const cudaError_t error = op();
    if (error != cudaSuccess) {
      std::lock_guard<std::mutex> lock(s->queue_mu);
      if (s->pending == cudaSuccess) s->pending = error;
    }
    s->executed.fetch_add(1);
  }
}

cudaError_t RunAllAndTakeError(CUstream_st* s) {
  uint64_t target = 0;
  {
    std::lock_guard<std::mutex> lock(s->queue_mu);
    target = s->enqueued;
  }
  RunTo(s, target);
  std::lock_guard<std::mutex> lock(s->queue_mu);
  const cudaError_t error = s->pending;
  s->pending = cudaSuccess;
  return error;
}

}  // namespace

// Drains the streams of `device` (blocking ones only, or all); returns the first error found.
cudaError_t DrainDevice(int device, bool blocking_only) {
  std::vector<std::shared_ptr<CUstream_st>> streams;
  {
    StreamRegistry& r = stream_registry();
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& entry : r.streams) {
      if (entry.second->device == device && (entry.second->blocking || !blocking_only)) {
        streams.push_back(entry.second);
      }
    }
  }
  cudaError_t first = cudaSuccess;
  for (const auto& s : streams) {
    const cudaError_t error = RunAllAndTakeError(s.get());
    if (first == cudaSuccess) first = error;
  }
  return first;
}

cudaError_t Enqueue(cudaStream_t stream, std::function<cudaError_t()> op) {
  if (stream == nullptr) {
    const cudaError_t drained = DrainDevice(CurrentDevice(), /*blocking_only=*/true);
    const cudaError_t error = op();
    if (error != cudaSuccess && t_legacy_error == cudaSuccess) t_legacy_error = error;
    return error != cudaSuccess ? error : drained;
  }
  std::shared_ptr<CUstream_st> s = Lookup(stream);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(s->queue_mu);
  s->ops.push_back(std::move(op));
  ++s->enqueued;
  return cudaSuccess;
}

// The legacy default stream's pending error of this thread, cleared.
cudaError_t TakeLegacyError() {
  const cudaError_t error = t_legacy_error;
  t_legacy_error = cudaSuccess;
  return error;
}

cudaError_t Drain(cudaStream_t stream) {
  if (stream == nullptr) {
    const cudaError_t drained = DrainDevice(CurrentDevice(), /*blocking_only=*/true);
    const cudaError_t legacy = TakeLegacyError();
    return drained != cudaSuccess ? drained : legacy;
  }
  std::shared_ptr<CUstream_st> s = Lookup(stream);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  return RunAllAndTakeError(s.get());
}

}  // namespace cuda_emu::internal

using cuda_emu::internal::Fail;

// ---- Streams ----

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (stream == nullptr) return Fail(cudaErrorInvalidValue);
  if (!cuda_emu::internal::HaveDevice()) return Fail(cudaErrorNoDevice);
  auto s = std::make_shared<CUstream_st>();
  s->device = cuda_emu::internal::CurrentDevice();
  s->blocking = (flags & cudaStreamNonBlocking) == 0;
  auto& r = cuda_emu::internal::stream_registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.streams[s.get()] = s;
  *stream = s.get();
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::shared_ptr<CUstream_st> s = cuda_emu::internal::Lookup(stream);
  if (s == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  // Work queued before the destroy still completes.
  (void)cuda_emu::internal::RunAllAndTakeError(s.get());
  auto& r = cuda_emu::internal::stream_registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.streams.erase(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  const cudaError_t error = cuda_emu::internal::Drain(stream);
  return error != cudaSuccess ? Fail(error) : cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  // The emulated device is never busy: a query runs the queued work and reports it done.
  return cudaStreamSynchronize(stream);
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (fn == nullptr) return Fail(cudaErrorInvalidValue);
  return cuda_emu::internal::Enqueue(stream, [fn, user_data]() {
    fn(user_data);
    return cudaSuccess;
  });
}

// ---- Events ----

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int /*flags*/) {
  if (event == nullptr) return Fail(cudaErrorInvalidValue);
  *event = new CUevent_st;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (event == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  if (stream == nullptr) {
    const cudaError_t drained = cuda_emu::internal::Drain(nullptr);
    std::lock_guard<std::mutex> lock(event->mu);
    event->stream = nullptr;
    event->recorded = true;
    event->time = std::chrono::steady_clock::now();
    return drained;
  }
  std::shared_ptr<CUstream_st> s = cuda_emu::internal::Lookup(stream);
  if (s == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> event_lock(event->mu);
  std::lock_guard<std::mutex> lock(s->queue_mu);
  s->ops.push_back([event]() {
    event->time = std::chrono::steady_clock::now();
    return cudaSuccess;
  });
  event->seq = ++s->enqueued;
  event->stream = s;
  event->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (event == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  std::shared_ptr<CUstream_st> s;
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(event->mu);
    s = event->stream;
    seq = event->seq;
  }
  if (s != nullptr) cuda_emu::internal::RunTo(s.get(), seq);
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int /*flags*/) {
  if (event == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  std::shared_ptr<CUstream_st> target;
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(event->mu);
    target = event->stream;
    seq = event->seq;
  }
  if (target == nullptr) return cudaSuccess;  // never recorded, or recorded complete
  // Work queued on `stream` after this call runs only once the event's work has run.
  return cuda_emu::internal::Enqueue(stream, [target, seq]() {
    cuda_emu::internal::RunTo(target.get(), seq);
    return cudaSuccess;
  });
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (ms == nullptr || start == nullptr || end == nullptr) return Fail(cudaErrorInvalidValue);
  for (cudaEvent_t e : {start, end}) {
    std::lock_guard<std::mutex> lock(e->mu);
    if (!e->recorded) return Fail(cudaErrorInvalidResourceHandle);
    if (e->stream != nullptr && e->stream->executed.load() < e->seq) {
      return Fail(cudaErrorNotReady);
    }
  }
  *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (event == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  // The recording op refers to the event: let it run first.
  (void)cudaEventSynchronize(event);
  delete event;
  return cudaSuccess;
}
