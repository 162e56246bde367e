#include <cuda_runtime.h>

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

namespace internal {

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
