// Device parsing and the CUDA availability check (kernels/device.h), in every build.
#include "kernels/device.h"

#include <gtest/gtest.h>

#include <string>

namespace tessera::kernels {
namespace {

TEST(DeviceTest, ParseDeviceAcceptsCpuAndCuda) {
  auto cpu = ParseDevice("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(*cpu, Device::kCpu);
  auto cuda = ParseDevice("cuda");
  ASSERT_TRUE(cuda.ok());
  EXPECT_EQ(*cuda, Device::kCuda);
  EXPECT_STREQ(DeviceName(Device::kCpu), "cpu");
  EXPECT_STREQ(DeviceName(Device::kCuda), "cuda");
}

TEST(DeviceTest, ParseDeviceRejectsUnknownNameAndListsChoices) {
  for (const std::string name : {"gpu", "", "CPU", "cuda0"}) {
    auto d = ParseDevice(name);
    ASSERT_FALSE(d.ok()) << name;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("cpu, cuda"), std::string::npos) << d.status().message();
  }
}

TEST(DeviceTest, CheckCudaAvailableIsOkOrFailedPreconditionWithReason) {
  Status s = CheckCudaAvailable();
  if (s.ok()) GTEST_SKIP() << "a CUDA device is usable here";
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  const std::string& m = s.message();
  EXPECT_TRUE(m.rfind("built without CUDA support", 0) == 0 ||
              (m.rfind("no usable CUDA device: ", 0) == 0 &&
               m.size() > std::string("no usable CUDA device: ").size()))
      << m;
#if !TESSERA_WITH_CUDA
  EXPECT_EQ(m, "built without CUDA support");
#endif
}

}  // namespace
}  // namespace tessera::kernels
