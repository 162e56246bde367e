#include "kernels/device.h"

namespace tessera::kernels {

StatusOr<Device> ParseDevice(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  return Status::InvalidArgument("unknown device '" + name + "'; choices: cpu, cuda");
}

float* HostScratch::Floats(size_t count) {
  if (floats_.size() < count) floats_.resize(count);
  return floats_.data();
}

const char* DeviceName(Device d) {
  switch (d) {
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
  }
  return "unknown";
}

#if !TESSERA_WITH_CUDA
// With CUDA the definition lives in device_cuda.cu, which asks the runtime.
Status CheckCudaAvailable() { return Status::FailedPrecondition("built without CUDA support"); }
StatusOr<int> CudaDeviceCount() { return CheckCudaAvailable(); }
StatusOr<std::string> DescribeCudaDevice(int) { return CheckCudaAvailable(); }
#endif

}  // namespace tessera::kernels
