// What the two halves of tessera_bench gpu share (gpu_bench_cuda.cu: the kernel table,
// gpu_bench_steps.cu: the worker steps): the device's description and peaks, device arrays,
// seeded random inputs and the two timers. Included by .cu files only.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/benches.h"
#include "core/status.h"
#include "kernels/cuda_util.cuh"
#include "kernels/random_math.h"

namespace tessera::bench::internal {

using kernels::cuda::CudaStatus;

struct DeviceInfo {
  std::string name;
  bool emulated = false;
  int major = 0, minor = 0;
  int sms = 0;
  double sm_clock_hz = 0, memory_clock_hz = 0;
  int bus_bits = 0;
  int fp32_lanes = 0;
  double peak_bytes_per_s = 0;
  double peak_flops = 0;
};

inline int Fp32LanesPerSm(int major, int minor) {
  if (major == 6) return minor == 0 ? 64 : 128;
  if (major == 7) return 64;
  if (major == 8 && minor == 0) return 64;
  return 128;  // 8.6, 8.9, 9.0 and later
}

inline StatusOr<DeviceInfo> QueryDevice() {
  DeviceInfo info;
  int device = 0;
  TS_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "cudaGetDevice"));
  cudaDeviceProp prop;
  TS_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, device), "properties"));
  info.name = prop.name;
  info.emulated = info.name.find("emulated") != std::string::npos;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sms = prop.multiProcessorCount;
  info.bus_bits = prop.memoryBusWidth;
  int sm_khz = 0, memory_khz = 0;
  TS_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, device), "SM clock"));
  TS_RETURN_IF_ERROR(CudaStatus(
      cudaDeviceGetAttribute(&memory_khz, cudaDevAttrMemoryClockRate, device), "memory clock"));
  info.sm_clock_hz = sm_khz * 1e3;
  info.memory_clock_hz = memory_khz * 1e3;
  info.fp32_lanes = Fp32LanesPerSm(info.major, info.minor);
  info.peak_bytes_per_s = 2.0 * info.memory_clock_hz * info.bus_bits / 8.0;
  info.peak_flops = static_cast<double>(info.sms) * info.sm_clock_hz * info.fp32_lanes * 2.0;
  return info;
}

// A device array filled from a host vector (or zeroed); freed on scope exit.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    if (count_ > 0 && cudaMalloc(&data_, count_ * sizeof(T)) == cudaSuccess) {
      (void)cudaMemset(data_, 0, count_ * sizeof(T));
    }
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (data_ != nullptr) {
      (void)cudaMemcpy(data_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice);
    }
  }
  ~DeviceArray() { (void)cudaFree(data_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return data_; }
  bool ok() const { return count_ == 0 || data_ != nullptr; }

 private:
  size_t count_;
  T* data_ = nullptr;
};

// Random values from a fixed seed (SplitMix64), so every run measures the same inputs.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return state_ = kernels::SplitMix64(state_); }
  int32_t Index(int64_t bound) {
    return static_cast<int32_t>(Next() % static_cast<uint64_t>(bound));
  }
  float Uniform(float scale) {
    return scale * (static_cast<float>(Next() >> 40) / static_cast<float>(1 << 24) - 0.5f);
  }
  std::vector<int32_t> Indices(size_t n, int64_t bound) {
    std::vector<int32_t> v(n);
    for (int32_t& x : v) x = Index(bound);
    return v;
  }
  std::vector<float> Floats(size_t n, float scale) {
    std::vector<float> v(n);
    for (float& x : v) x = Uniform(scale);
    return v;
  }

 private:
  uint64_t state_;
};

// Seconds per call of `queue` (which queues one call's work on `stream`), from CUDA events over
// enough back-to-back calls to fill about `seconds`; one sample per repetition.
inline StatusOr<Samples> TimeOnDevice(cudaStream_t stream, const std::function<Status()>& queue,
                                      double seconds, int reps) {
  cudaEvent_t start = nullptr, stop = nullptr;
  TS_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&start), "create event"));
  TS_RETURN_IF_ERROR(CudaStatus(cudaEventCreate(&stop), "create event"));
  std::unique_ptr<CUevent_st, void (*)(cudaEvent_t)> start_owner(
      start, [](cudaEvent_t e) { (void)cudaEventDestroy(e); });
  std::unique_ptr<CUevent_st, void (*)(cudaEvent_t)> stop_owner(
      stop, [](cudaEvent_t e) { (void)cudaEventDestroy(e); });
  auto run = [&](int calls, double* ms) -> Status {
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(start, stream), "record"));
    for (int c = 0; c < calls; ++c) TS_RETURN_IF_ERROR(queue());
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(stop, stream), "record"));
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventSynchronize(stop), "synchronise"));
    float elapsed = 0;
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventElapsedTime(&elapsed, start, stop), "elapsed time"));
    *ms = elapsed;
    return OkStatus();
  };
  double ms = 0;
  TS_RETURN_IF_ERROR(run(1, &ms));  // warm-up, and the size of one call
  const int calls = static_cast<int>(std::clamp(seconds * 1e3 / std::max(ms, 1e-3), 1.0, 2000.0));
  Samples per_call;
  for (int r = 0; r < reps; ++r) {
    TS_RETURN_IF_ERROR(run(calls, &ms));
    per_call.Add(ms * 1e-3 / calls);
  }
  return per_call;
}

// Seconds per call of a host-driven step (which returns when its work is done), wall clock.
inline StatusOr<Samples> TimeOnHost(const std::function<Status()>& step, double seconds, int reps) {
  TS_RETURN_IF_ERROR(step());  // warm-up
  Samples per_call;
  for (int r = 0; r < reps; ++r) {
    int64_t calls = 0;
    const auto start = Clock::now();
    do {
      TS_RETURN_IF_ERROR(step());
      ++calls;
    } while (SecondsSince(start) < seconds);
    per_call.Add(SecondsSince(start) / static_cast<double>(calls));
  }
  return per_call;
}

// The MF and DeepFM worker steps on the device next to the CPU (gpu_bench_steps.cu).
bool RunStepComparison(const DeviceInfo& dev, const GpuBenchOptions& o, int shrink,
                       JsonLines* json);

}  // namespace tessera::bench::internal
