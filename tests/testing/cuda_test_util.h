// Helpers shared by the CUDA-vs-CPU tests (label gpu): skip without a usable device, compare a
// GPU result with the CPU's within a tolerance, check CUDA calls, and an RAII device buffer (the
// last two only in a build with CUDA). Test-only code: a failed CUDA call fails the test (gtest
// assertions), it does not return a Status.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/device.h"

// Skips the test, with the reason, when no CUDA device can be used.
#define TS_SKIP_WITHOUT_CUDA_DEVICE()                                         \
  do {                                                                        \
    ::tessera::Status cuda_status = ::tessera::kernels::CheckCudaAvailable(); \
    if (!cuda_status.ok()) GTEST_SKIP() << cuda_status.message();             \
  } while (0)

namespace tessera::testing {

// Asserts gpu[k] within tol * (1 + |cpu[k]|) of cpu[k] for every k (GPU sums with atomics or in
// another order are not bit-identical to the CPU's); `what` names the array in failures.
inline void ExpectClose(const std::vector<float>& gpu, const std::vector<float>& cpu, float tol,
                        const std::string& what = "") {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (size_t k = 0; k < cpu.size(); ++k) {
    ASSERT_NEAR(gpu[k], cpu[k], tol * (1.0f + std::fabs(cpu[k]))) << what << " element " << k;
  }
}

}  // namespace tessera::testing

#if TESSERA_WITH_CUDA

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#define TS_ASSERT_CUDA_OK(expr)                                                        \
  do {                                                                                 \
    cudaError_t cuda_err = (expr);                                                     \
    ASSERT_EQ(cuda_err, cudaSuccess) << #expr << ": " << cudaGetErrorString(cuda_err); \
  } while (0)

namespace tessera::testing {

// Device buffer of `size` elements, optionally copied from a host vector; freed on scope exit.
template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(size_t size) : size_(size) {
    if (size_ > 0) {
      EXPECT_EQ(cudaMalloc(&data_, size_ * sizeof(T)), cudaSuccess);
    }
  }
  explicit DeviceVector(const std::vector<T>& host) : DeviceVector(host.size()) {
    if (size_ == 0) return;
    EXPECT_EQ(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceVector() { cudaFree(data_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;

  T* data() const { return data_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(size_);
    if (size_ > 0) {
      EXPECT_EQ(cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
    return host;
  }

 private:
  size_t size_ = 0;
  T* data_ = nullptr;
};

}  // namespace tessera::testing

#endif  // TESSERA_WITH_CUDA
