// DeviceResources on a CUDA device (label gpu; skipped without a usable device, run on the
// emulated device): the device it is given becomes the creating thread's current device, one this
// process does not have is refused with the count, and the worker's device line names it.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <string>

#include "kernels/device_resources.h"
#include "tests/testing/cuda_test_util.h"

namespace tessera::kernels {
namespace {

TEST(DeviceResourcesCudaTest, CreateMakesItsDeviceCurrentOnTheCallingThread) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  StatusOr<int> count = CudaDeviceCount();
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  const int last = *count - 1;
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  DeviceOptions options;
  options.device = Device::kCuda;
  options.cuda_device = last;
  auto resources = DeviceResources::Create(options);
  ASSERT_TRUE(resources.ok()) << resources.status().ToString();
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, last);
  EXPECT_NE((*resources)->context().stream, nullptr);
}

TEST(DeviceResourcesCudaTest, ADeviceThisProcessDoesNotHaveIsInvalidArgumentNamingTheCount) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  StatusOr<int> count = CudaDeviceCount();
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  for (int bad : {-1, *count}) {
    DeviceOptions options;
    options.device = Device::kCuda;
    options.cuda_device = bad;
    auto resources = DeviceResources::Create(options);
    ASSERT_FALSE(resources.ok()) << bad;
    EXPECT_EQ(resources.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(resources.status().message(), "CUDA device " + std::to_string(bad) +
                                                " does not exist (" + std::to_string(*count) +
                                                " devices)");
  }
}

TEST(DeviceResourcesCudaTest, DeviceLineNamesOrdinalNameAndMemory) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  StatusOr<std::string> line = DescribeCudaDevice(0);
  ASSERT_TRUE(line.ok()) << line.status().ToString();
  cudaDeviceProp properties;
  ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
  EXPECT_EQ(line->rfind("cuda:0 (" + std::string(properties.name) + ", ", 0), 0u) << *line;
  EXPECT_EQ(line->substr(line->size() - 5), " GiB)") << *line;
  EXPECT_EQ(DescribeCudaDevice(*CudaDeviceCount()).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::kernels
