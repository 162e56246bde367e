// The emulated CUDA runtime: devices, memory, lazy streams, events and errors (see
// include/cuda_runtime.h for the model). The emulator depends on nothing else in Tessera, so that
// it stays a drop-in for the toolkit's headers; its locks are plain std::mutex.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu/cuda_emu.h"
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

constexpr uint64_t kDefaultSeed = 0x5eed5eed5eedULL;

struct Allocation {
  size_t bytes = 0;
  int device = -1;  // -1: pinned host memory
};

struct Registry {
  std::mutex mu;
  std::map<uintptr_t, Allocation> allocations;  // by start address
  std::vector<size_t> used;                     // device memory in use, per device
  std::map<CUstream_st*, std::shared_ptr<CUstream_st>> streams;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: streams may outlive static destructors
  return *r;
}

int EnvInt(const char* name, int fallback, int lo, int hi) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (*end != '\0' || parsed < lo || parsed > hi) {
    std::fprintf(stderr, "cuda_emu: ignoring %s=%s (want an integer in [%d, %d]); using %d\n", name,
                 value, lo, hi, fallback);
    return fallback;
  }
  return static_cast<int>(parsed);
}

int DeviceCount() {
  static const int count = EnvInt("TESSERA_CUDA_EMU_DEVICES", 1, 0, 64);
  return count;
}

size_t DeviceBytes() {
  static const size_t bytes =
      static_cast<size_t>(EnvInt("TESSERA_CUDA_EMU_MEMORY_MB", 8192, 1, 1 << 20)) << 20;
  return bytes;
}

std::atomic<uint64_t> g_seed{0};
std::atomic<uint64_t> g_seed_generation{0};
std::atomic<int64_t> g_faults{0};

thread_local int t_device = 0;
thread_local cudaError_t t_last_error = cudaSuccess;
// First error of work this thread ran on the legacy default stream, for its next synchronisation.
thread_local cudaError_t t_legacy_error = cudaSuccess;
thread_local uint64_t t_launches = 0;
thread_local uint64_t t_seed_generation = 0;

uint64_t BaseSeed() {
  static const uint64_t from_env = [] {
    const char* value = std::getenv("TESSERA_CUDA_EMU_SEED");
    return value != nullptr ? std::strtoull(value, nullptr, 0) : kDefaultSeed;
  }();
  const uint64_t set = g_seed.load();
  return set != 0 ? set : from_env;
}

uint64_t Mix(uint64_t x) {  // SplitMix64's finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

cudaError_t Fail(cudaError_t error) {
  t_last_error = error;
  return error;
}

std::shared_ptr<CUstream_st> Lookup(cudaStream_t stream) {
  Registry& r = registry();
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

// Drains the streams of `device` (blocking ones only, or all); returns the first error found.
cudaError_t DrainDevice(int device, bool blocking_only) {
  std::vector<std::shared_ptr<CUstream_st>> streams;
  {
    Registry& r = registry();
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

enum class Space { kPageable, kPinned, kDevice };

// Where [ptr, ptr + bytes) lives; kPageable when no allocation holds it. *partial: the range
// starts inside an allocation but runs past its end.
Space Classify(const void* ptr, size_t bytes, bool* partial) {
  *partial = false;
  const uintptr_t p = reinterpret_cast<uintptr_t>(ptr);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.allocations.upper_bound(p);
  if (it == r.allocations.begin()) return Space::kPageable;
  --it;
  if (p >= it->first + it->second.bytes) return Space::kPageable;
  if (p + bytes > it->first + it->second.bytes) *partial = true;
  return it->second.device >= 0 ? Space::kDevice : Space::kPinned;
}

void* AlignedAlloc(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  return std::aligned_alloc(256, rounded);
}

cudaError_t CheckDevicePointer(const void* ptr, size_t bytes, const char* what) {
  bool partial = false;
  if (Classify(ptr, bytes, &partial) == Space::kDevice && !partial) return cudaSuccess;
  std::fprintf(stderr, "cuda_emu: %s: [%p, +%zu bytes) is not inside one device allocation\n", what,
               ptr, bytes);
  return cudaErrorInvalidValue;
}

cudaError_t CheckHostPointer(const void* ptr, size_t bytes, const char* what) {
  bool partial = false;
  if (Classify(ptr, bytes, &partial) != Space::kDevice) return cudaSuccess;
  std::fprintf(stderr, "cuda_emu: %s: %p is device memory where host memory was expected\n", what,
               ptr);
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t Enqueue(cudaStream_t stream, std::function<cudaError_t()> op) {
  if (stream == nullptr) {
    const cudaError_t drained = DrainDevice(t_device, /*blocking_only=*/true);
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
    const cudaError_t drained = DrainDevice(t_device, /*blocking_only=*/true);
    const cudaError_t legacy = TakeLegacyError();
    return drained != cudaSuccess ? drained : legacy;
  }
  std::shared_ptr<CUstream_st> s = Lookup(stream);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  return RunAllAndTakeError(s.get());
}

bool IsDeviceRange(const void* ptr, size_t bytes) {
  bool partial = false;
  return Classify(ptr, bytes, &partial) == Space::kDevice && !partial;
}

void SetLastError(cudaError_t error) { t_last_error = error; }
int CurrentDevice() { return t_device; }
bool HaveDevice() { return DeviceCount() > 0; }

void ReportFault(const std::string& message) {
  g_faults.fetch_add(1);
  std::fprintf(stderr, "cuda_emu: %s\n", message.c_str());
}

uint64_t NextLaunchSeed() {
  const uint64_t generation = g_seed_generation.load();
  if (t_seed_generation != generation) {  // SetScheduleSeed restarts every thread's sequence
    t_seed_generation = generation;
    t_launches = 0;
  }
  return Mix(BaseSeed() ^ Mix(++t_launches));
}

cudaError_t FuncGetAttributes(cudaFuncAttributes* attributes, const void* func) {
  if (attributes == nullptr || func == nullptr) return Fail(cudaErrorInvalidValue);
  if (!HaveDevice()) return Fail(cudaErrorNoDevice);
  *attributes = cudaFuncAttributes{0, 1024, 32};
  return cudaSuccess;
}

}  // namespace cuda_emu::internal

namespace cuda_emu {

void SetScheduleSeed(uint64_t seed) {
  internal::g_seed.store(seed == 0 ? 1 : seed);
  internal::g_seed_generation.fetch_add(1);
}

int64_t KernelFaults() { return internal::g_faults.load(); }

}  // namespace cuda_emu

using cuda_emu::internal::Fail;
using cuda_emu::internal::registry;
using cuda_emu::internal::t_device;
using cuda_emu::internal::t_last_error;

// ---- Errors ----

cudaError_t cudaGetLastError() {
  const cudaError_t error = t_last_error;
  t_last_error = cudaSuccess;
  return error;
}

cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoKernelImageForDevice:
      return "cudaErrorNoKernelImageForDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInitializationError:
      return "initialization error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorNoKernelImageForDevice:
      return "no kernel image is available for the device";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure (the emulator's report is on stderr)";
  }
  return "unknown error";
}

// ---- Devices ----

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return Fail(cudaErrorInvalidValue);
  *count = cuda_emu::internal::DeviceCount();
  return *count > 0 ? cudaSuccess : Fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  const int count = cuda_emu::internal::DeviceCount();
  if (count == 0) return Fail(cudaErrorNoDevice);
  if (device < 0 || device >= count) return Fail(cudaErrorInvalidDevice);
  t_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return Fail(cudaErrorInvalidValue);
  if (!cuda_emu::internal::HaveDevice()) return Fail(cudaErrorNoDevice);
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return Fail(cudaErrorInvalidValue);
  if (device < 0 || device >= cuda_emu::internal::DeviceCount()) {
    return Fail(cudaErrorInvalidDevice);
  }
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "Tessera emulated CUDA device %d (cuda_emu)",
                device);
  prop->totalGlobalMem = cuda_emu::internal::DeviceBytes();
  prop->sharedMemPerBlock = 48 << 10;
  prop->regsPerBlock = 65536;
  prop->warpSize = warpSize;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 8;
  prop->minor = 0;
  prop->multiProcessorCount = 2;
  prop->concurrentKernels = 1;
  prop->pciBusID = device;
  prop->asyncEngineCount = 1;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 64;
  prop->l2CacheSize = 1 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return Fail(cudaErrorInvalidValue);
  cudaDeviceProp prop;
  if (cudaError_t e = cudaGetDeviceProperties(&prop, device); e != cudaSuccess) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = prop.maxThreadsPerBlock;
      break;
    case cudaDevAttrWarpSize:
      *value = prop.warpSize;
      break;
    case cudaDevAttrClockRate:
      *value = 1000000;
      break;  // kHz
    case cudaDevAttrMemoryClockRate:
      *value = 1000000;
      break;  // kHz
    case cudaDevAttrMultiProcessorCount:
      *value = prop.multiProcessorCount;
      break;
    case cudaDevAttrGlobalMemoryBusWidth:
      *value = prop.memoryBusWidth;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = prop.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = prop.minor;
      break;
    default:
      return Fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return Fail(cudaErrorInvalidValue);
  if (!cuda_emu::internal::HaveDevice()) return Fail(cudaErrorNoDevice);
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.used.resize(cuda_emu::internal::DeviceCount(), 0);
  *total_bytes = cuda_emu::internal::DeviceBytes();
  *free_bytes = *total_bytes - r.used[t_device];
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  if (!cuda_emu::internal::HaveDevice()) return Fail(cudaErrorNoDevice);
  cudaError_t error = cuda_emu::internal::DrainDevice(t_device, /*blocking_only=*/false);
  const cudaError_t legacy = cuda_emu::internal::TakeLegacyError();
  if (error == cudaSuccess) error = legacy;
  return error != cudaSuccess ? Fail(error) : cudaSuccess;
}

// ---- Memory ----

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return Fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (!cuda_emu::internal::HaveDevice()) return Fail(cudaErrorNoDevice);
  if (bytes == 0) return cudaSuccess;
  auto& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    r.used.resize(cuda_emu::internal::DeviceCount(), 0);
    if (bytes > cuda_emu::internal::DeviceBytes() - r.used[t_device]) {
      return Fail(cudaErrorMemoryAllocation);
    }
    r.used[t_device] += bytes;
  }
  void* p = cuda_emu::internal::AlignedAlloc(bytes);
  if (p == nullptr) {
    std::lock_guard<std::mutex> lock(r.mu);
    r.used[t_device] -= bytes;
    return Fail(cudaErrorMemoryAllocation);
  }
  std::memset(p, 0xff, bytes);  // uninitialised device memory: a NaN in every float
  std::lock_guard<std::mutex> lock(r.mu);
  r.allocations[reinterpret_cast<uintptr_t>(p)] = {bytes, t_device};
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& r = registry();
  int device = -1;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.allocations.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == r.allocations.end() || it->second.device < 0) return Fail(cudaErrorInvalidValue);
    device = it->second.device;
  }
  // cudaFree waits for the device: nothing queued may still use the memory.
  (void)cuda_emu::internal::DrainDevice(device, /*blocking_only=*/false);
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.allocations.find(reinterpret_cast<uintptr_t>(ptr));
  r.used[device] -= it->second.bytes;
  r.allocations.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int /*flags*/) {
  if (ptr == nullptr) return Fail(cudaErrorInvalidValue);
  *ptr = cuda_emu::internal::AlignedAlloc(bytes);
  if (*ptr == nullptr) return Fail(cudaErrorMemoryAllocation);
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.allocations[reinterpret_cast<uintptr_t>(*ptr)] = {std::max<size_t>(bytes, 1), -1};
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  return cudaHostAlloc(ptr, bytes, cudaHostAllocDefault);
}

cudaError_t cudaFreeHost(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.allocations.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == r.allocations.end() || it->second.device >= 0) return Fail(cudaErrorInvalidValue);
  }
  // Like cudaFree, waits for queued copies that may still use the buffer.
  if (cuda_emu::internal::HaveDevice()) {
    (void)cuda_emu::internal::DrainDevice(t_device, /*blocking_only=*/false);
  }
  std::lock_guard<std::mutex> lock(r.mu);
  r.allocations.erase(reinterpret_cast<uintptr_t>(ptr));
  std::free(ptr);
  return cudaSuccess;
}

namespace cuda_emu::internal {
namespace {

// Checks the two sides of a copy against its kind (cudaMemcpyDefault: inferred).
cudaError_t CheckCopy(void* dst, const void* src, size_t bytes, cudaMemcpyKind* kind) {
  bool partial = false;
  const bool dst_device = Classify(dst, bytes, &partial) == Space::kDevice;
  const bool src_device = Classify(src, bytes, &partial) == Space::kDevice;
  if (*kind == cudaMemcpyDefault) {
    *kind = dst_device ? (src_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                       : (src_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  switch (*kind) {
    case cudaMemcpyHostToDevice:
      if (cudaError_t e = CheckDevicePointer(dst, bytes, "cudaMemcpy host->device destination");
          e != cudaSuccess) {
        return e;
      }
      return CheckHostPointer(src, bytes, "cudaMemcpy host->device source");
    case cudaMemcpyDeviceToHost:
      if (cudaError_t e = CheckDevicePointer(src, bytes, "cudaMemcpy device->host source");
          e != cudaSuccess) {
        return e;
      }
      return CheckHostPointer(dst, bytes, "cudaMemcpy device->host destination");
    case cudaMemcpyDeviceToDevice:
      if (cudaError_t e = CheckDevicePointer(src, bytes, "cudaMemcpy device->device source");
          e != cudaSuccess) {
        return e;
      }
      return CheckDevicePointer(dst, bytes, "cudaMemcpy device->device destination");
    case cudaMemcpyHostToHost:
      return cudaSuccess;
    default:
      return cudaErrorInvalidMemcpyDirection;
  }
}

bool IsPinned(const void* ptr, size_t bytes) {
  bool partial = false;
  return Classify(ptr, bytes, &partial) == Space::kPinned && !partial;
}

}  // namespace
}  // namespace cuda_emu::internal

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (bytes == 0) return cudaSuccess;
  if (cudaError_t e = cuda_emu::internal::CheckCopy(dst, src, bytes, &kind); e != cudaSuccess) {
    return Fail(e);
  }
  // The legacy default stream: after the device's blocking streams, then at once.
  const cudaError_t drained = cuda_emu::internal::Drain(nullptr);
  std::memmove(dst, src, bytes);
  return drained != cudaSuccess ? Fail(drained) : cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (cudaError_t e = cuda_emu::internal::CheckCopy(dst, src, bytes, &kind); e != cudaSuccess) {
    return Fail(e);
  }
  if (kind == cudaMemcpyDeviceToHost && !cuda_emu::internal::IsPinned(dst, bytes)) {
    // To pageable memory the copy is synchronous: wait for the stream, then copy.
    const cudaError_t drained = cuda_emu::internal::Drain(stream);
    std::memcpy(dst, src, bytes);
    return drained != cudaSuccess ? Fail(drained) : cudaSuccess;
  }
  if (kind == cudaMemcpyHostToDevice && !cuda_emu::internal::IsPinned(src, bytes)) {
    // From pageable memory the source is staged when the call is made.
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
    return cuda_emu::internal::Enqueue(stream, [dst, staged]() {
      std::memcpy(dst, staged->data(), staged->size());
      return cudaSuccess;
    });
  }
  return cuda_emu::internal::Enqueue(stream, [dst, src, bytes]() {
    std::memmove(dst, src, bytes);
    return cudaSuccess;
  });
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (cudaError_t e = cuda_emu::internal::CheckDevicePointer(ptr, bytes, "cudaMemset");
      e != cudaSuccess) {
    return Fail(e);
  }
  const cudaError_t drained = cuda_emu::internal::Drain(nullptr);
  std::memset(ptr, value, bytes);
  return drained != cudaSuccess ? Fail(drained) : cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (cudaError_t e = cuda_emu::internal::CheckDevicePointer(ptr, bytes, "cudaMemsetAsync");
      e != cudaSuccess) {
    return Fail(e);
  }
  return cuda_emu::internal::Enqueue(stream, [ptr, value, bytes]() {
    std::memset(ptr, value, bytes);
    return cudaSuccess;
  });
}

// ---- Streams ----

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (stream == nullptr) return Fail(cudaErrorInvalidValue);
  if (!cuda_emu::internal::HaveDevice()) return Fail(cudaErrorNoDevice);
  auto s = std::make_shared<CUstream_st>();
  s->device = t_device;
  s->blocking = (flags & cudaStreamNonBlocking) == 0;
  auto& r = registry();
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
  auto& r = registry();
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
