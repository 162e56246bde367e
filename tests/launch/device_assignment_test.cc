// The device rules of launch/device_assignment.h, without a GPU: the inputs stand for the CUDA
// runtime's answers and the launcher's local ranks.
#include "launch/device_assignment.h"

#include <gtest/gtest.h>

namespace tessera::launch {
namespace {

using kernels::Device;

DeviceAssignmentInput Host(DeviceChoice choice, int visible_devices, int workers_on_host,
                           int local_index) {
  DeviceAssignmentInput in;
  in.choice = choice;
  in.visible_devices = visible_devices;
  if (visible_devices == 0) in.unavailable_reason = "no usable CUDA device: 0 devices";
  in.workers_on_host = workers_on_host;
  in.local_index = local_index;
  return in;
}

TEST(DeviceAssignmentTest, EachWorkerTakesTheDeviceOfItsLocalIndex) {
  for (int local = 0; local < 4; ++local) {
    auto a = AssignDevice(Host(DeviceChoice::kCuda, 4, 4, local));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_EQ(a->device, Device::kCuda);
    EXPECT_EQ(a->cuda_device, local);
    EXPECT_EQ(a->note, "");
  }
}

TEST(DeviceAssignmentTest, FewerWorkersThanDevicesUseTheFirstOnes) {
  auto a = AssignDevice(Host(DeviceChoice::kCuda, 8, 2, 1));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->cuda_device, 1);
}

TEST(DeviceAssignmentTest, DeviceListMapsLocalIndexToOrdinal) {
  DeviceAssignmentInput in = Host(DeviceChoice::kCuda, 4, 2, 0);
  in.devices = {3, 1};
  auto first = AssignDevice(in);
  in.local_index = 1;
  auto second = AssignDevice(in);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->cuda_device, 3);
  EXPECT_EQ(second->cuda_device, 1);
}

TEST(DeviceAssignmentTest, MoreWorkersThanDevicesIsOneLineNamingTheCounts) {
  auto a = AssignDevice(Host(DeviceChoice::kCuda, 1, 2, 0));
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = a.status().message();
  EXPECT_NE(m.find("2 workers on this host but only 1 CUDA device"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  // Every worker of the host gets the same error, whatever its index.
  EXPECT_EQ(AssignDevice(Host(DeviceChoice::kCuda, 1, 2, 1)).status().message(), m);
}

TEST(DeviceAssignmentTest, MoreWorkersThanListedDevicesNamesTheList) {
  DeviceAssignmentInput in = Host(DeviceChoice::kCuda, 4, 3, 0);
  in.devices = {0, 2};
  in.cuda_visible_devices = "4,5,6,7";
  auto a = AssignDevice(in);
  ASSERT_FALSE(a.ok());
  const std::string& m = a.status().message();
  EXPECT_NE(m.find("3 workers on this host but only 2 CUDA devices (--devices 0,2)"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("CUDA_VISIBLE_DEVICES=4,5,6,7"), std::string::npos) << m;
}

TEST(DeviceAssignmentTest, ListedOrdinalBeyondTheVisibleDevicesIsAnError) {
  DeviceAssignmentInput in = Host(DeviceChoice::kCuda, 2, 1, 0);
  in.devices = {2};
  auto a = AssignDevice(in);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("device 2 does not exist; this host has 2 CUDA devices"),
            std::string::npos)
      << a.status().message();
}

TEST(DeviceAssignmentTest, CudaWithoutADeviceIsFailedPreconditionWithTheReason) {
  DeviceAssignmentInput in = Host(DeviceChoice::kCuda, 0, 1, 0);
  in.unavailable_reason = "no usable CUDA device: CUDA driver version is insufficient";
  auto a = AssignDevice(in);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.status().message(),
            "--device cuda: no usable CUDA device: CUDA driver version is insufficient");
}

TEST(DeviceAssignmentTest, AutoPicksCudaWhenADeviceIsUsableAndSaysSo) {
  DeviceAssignmentInput in = Host(DeviceChoice::kAuto, 2, 2, 1);
  in.cuda_visible_devices = "2,3";
  auto a = AssignDevice(in);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->device, Device::kCuda);
  EXPECT_EQ(a->cuda_device, 1);
  EXPECT_EQ(a->note, "--device auto chose cuda; CUDA_VISIBLE_DEVICES=2,3");
}

TEST(DeviceAssignmentTest, AutoFallsBackToCpuWithTheReason) {
  auto a = AssignDevice(Host(DeviceChoice::kAuto, 0, 3, 2));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->device, Device::kCpu);
  EXPECT_EQ(a->note, "--device auto chose cpu (no usable CUDA device: 0 devices)");
}

TEST(DeviceAssignmentTest, AutoWithTooFewDevicesIsStillAnError) {
  EXPECT_EQ(AssignDevice(Host(DeviceChoice::kAuto, 1, 2, 0)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(DeviceAssignmentTest, CpuIgnoresTheDevices) {
  auto a = AssignDevice(Host(DeviceChoice::kCpu, 0, 64, 63));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->device, Device::kCpu);
  EXPECT_EQ(a->note, "");
}

TEST(DeviceAssignmentTest, VisibleDevicesVariableIsReported) {
  DeviceAssignmentInput in = Host(DeviceChoice::kCuda, 2, 1, 0);
  in.cuda_visible_devices = "5,7";
  auto a = AssignDevice(in);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->cuda_device, 0);  // the runtime's ordinal, not the physical GPU 5
  EXPECT_EQ(a->note, "CUDA_VISIBLE_DEVICES=5,7");
}

TEST(DeviceAssignmentTest, ParsesTheDeviceChoices) {
  EXPECT_EQ(*ParseDeviceChoice("cpu"), DeviceChoice::kCpu);
  EXPECT_EQ(*ParseDeviceChoice("cuda"), DeviceChoice::kCuda);
  EXPECT_EQ(*ParseDeviceChoice("auto"), DeviceChoice::kAuto);
  auto bad = ParseDeviceChoice("gpu");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cpu, cuda, auto"), std::string::npos);
}

TEST(DeviceAssignmentTest, ParsesDeviceLists) {
  EXPECT_EQ(*ParseDeviceList("0"), std::vector<int>({0}));
  EXPECT_EQ(*ParseDeviceList("3,1,2"), std::vector<int>({3, 1, 2}));
  for (const char* bad : {"", ",", "0,", ",1", "1,,2", "a", "1.5", "-1", "0,1,0", "2x"}) {
    auto parsed = ParseDeviceList(bad);
    EXPECT_FALSE(parsed.ok()) << "'" << bad << "'";
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseDeviceList("0,1,0").status().message().find("lists device 0 twice"),
            std::string::npos);
}

TEST(PlanWorkerThreadsTest, ShareTheMasksCpusAmongTheHostsWorkers) {
  struct Case {
    int cpus, workers_on_host, compute_threads;  // the plan's input
    int gemm, compute;                           // what it must give
    const char* what;
  };
  const Case cases[] = {
      {2, 1, 2, 2, 2, "two CPUs, one worker: both for the products, MF's two compute threads"},
      {2, 2, 2, 1, 1, "two workers on two CPUs: one each, no second compute thread to fight"},
      {16, 4, 1, 4, 1, "Slurm's --cpus-per-task 16, 4 workers; --compute-threads 1 stays 1"},
      {2, 8, 2, 1, 1, "more workers than CPUs: never below one thread"},
      {0, 0, 2, 1, 1, "nonsensical counts: one thread"},
  };
  for (const Case& c : cases) {
    const WorkerThreads t = PlanWorkerThreads(c.cpus, c.workers_on_host, c.compute_threads);
    EXPECT_EQ(t.gemm, c.gemm) << c.what;
    EXPECT_EQ(t.compute, c.compute) << c.what;
  }
}

}  // namespace
}  // namespace tessera::launch
