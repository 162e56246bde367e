// The emulated CUDA runtime: devices, memory, copies and errors (see include/cuda_runtime.h for
// the model; streams and events are in streams.cc). The emulator depends on nothing else in
// Tessera, so that it stays a drop-in for the toolkit's headers; its locks are plain std::mutex.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu/cuda_emu.h"
#include "runtime_internal.h"

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
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: memory may be freed by static destructors
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
