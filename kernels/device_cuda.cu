#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kernels/device.h"

namespace tessera::kernels {
namespace {

// Empty kernel whose attributes tell whether this binary holds code the device can run
// (cudaErrorNoKernelImageForDevice on an architecture we did not compile for).
__global__ void ProbeKernel() {}

Status NoDevice(cudaError_t err) {
  return Status::FailedPrecondition(std::string("no usable CUDA device: ") +
                                    cudaGetErrorString(err));
}

}  // namespace

Status CheckCudaAvailable() {
  int num_devices = 0;
  cudaError_t err = cudaGetDeviceCount(&num_devices);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the non-sticky error so later calls start clean
    return NoDevice(err);
  }
  if (num_devices == 0) return Status::FailedPrecondition("no usable CUDA device: 0 devices");
  cudaFuncAttributes attributes;
  err = cudaFuncGetAttributes(&attributes, ProbeKernel);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return NoDevice(err);
  }
  return OkStatus();
}

StatusOr<int> CudaDeviceCount() {
  TS_RETURN_IF_ERROR(CheckCudaAvailable());
  int num_devices = 0;
  if (cudaError_t err = cudaGetDeviceCount(&num_devices); err != cudaSuccess) {
    cudaGetLastError();
    return NoDevice(err);
  }
  return num_devices;
}

StatusOr<std::string> DescribeCudaDevice(int ordinal) {
  TS_ASSIGN_OR_RETURN(const int num_devices, CudaDeviceCount());
  if (ordinal < 0 || ordinal >= num_devices) {
    return Status::InvalidArgument("CUDA device " + std::to_string(ordinal) + " does not exist (" +
                                   std::to_string(num_devices) + " devices)");
  }
  cudaDeviceProp properties;
  if (cudaError_t err = cudaGetDeviceProperties(&properties, ordinal); err != cudaSuccess) {
    cudaGetLastError();
    return Status::Internal("properties of CUDA device " + std::to_string(ordinal) + ": " +
                            cudaGetErrorString(err));
  }
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.1f GiB",
                static_cast<double>(properties.totalGlobalMem) / (1 << 30));
  return "cuda:" + std::to_string(ordinal) + " (" + properties.name + ", " + memory + ")";
}

namespace internal {

Status SetCudaDevice(int ordinal) {
  TS_ASSIGN_OR_RETURN(const int num_devices, CudaDeviceCount());
  if (ordinal < 0 || ordinal >= num_devices) {
    return Status::InvalidArgument("CUDA device " + std::to_string(ordinal) + " does not exist (" +
                                   std::to_string(num_devices) + " devices)");
  }
  if (cudaError_t err = cudaSetDevice(ordinal); err != cudaSuccess) {
    cudaGetLastError();
    return Status::Internal("cudaSetDevice(" + std::to_string(ordinal) +
                            "): " + cudaGetErrorString(err));
  }
  return OkStatus();
}

Status CudaLaunchStatus(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return OkStatus();
  return Status::Internal(std::string(what) + ": CUDA launch failed: " + cudaGetErrorString(err));
}

StatusOr<cudaStream_t> CreateCudaStream() {
  cudaStream_t stream = nullptr;
  const cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    return Status::Internal(std::string("create a CUDA stream: ") + cudaGetErrorString(err));
  }
  return stream;
}

void DestroyCudaStream(cudaStream_t stream) {
  (void)cudaStreamSynchronize(stream);
  (void)cudaStreamDestroy(stream);
}

}  // namespace internal
}  // namespace tessera::kernels
