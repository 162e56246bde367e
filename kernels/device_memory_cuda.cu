// The kCuda halves of kernels/device_memory.h: cudaMalloc / cudaMallocHost, async copies and
// fills on the caller's stream, and the stream sync.
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda_util.cuh"
#include "kernels/device_memory.h"

namespace tessera::kernels::internal {

Status CudaAllocate(size_t bytes, bool pinned_host, const char* name, void** out) {
  *out = nullptr;
  const cudaError_t err = pinned_host ? cudaMallocHost(out, bytes) : cudaMalloc(out, bytes);
  if (err == cudaSuccess) return OkStatus();
  *out = nullptr;
  (void)cudaGetLastError();  // an out-of-memory error is not sticky; later calls start clean
  size_t free_bytes = 0, total_bytes = 0;
  std::string free_text;
  if (!pinned_host && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    free_text =
        " (" + std::to_string(free_bytes) + " of " + std::to_string(total_bytes) + " bytes free)";
  }
  std::string message = std::string(name) + " does not fit: allocate " + std::to_string(bytes) +
                        " bytes of " + (pinned_host ? "pinned host" : "cuda device") + " memory" +
                        free_text + ": " + cudaGetErrorString(err);
  // Out of memory is the job's size against the machine (exit status 2), not a bug.
  if (err == cudaErrorMemoryAllocation) return Status::FailedPrecondition(std::move(message));
  return Status::Internal(std::move(message));
}

void CudaRelease(void* memory, bool pinned_host) {
  if (pinned_host) {
    (void)cudaFreeHost(memory);
  } else {
    (void)cudaFree(memory);
  }
}

Status CudaCopy(void* dst, const void* src, size_t bytes, CopyKind kind, cudaStream_t stream) {
  cudaMemcpyKind cuda_kind = cudaMemcpyDeviceToDevice;
  const char* what = "copy device -> device";
  if (kind == CopyKind::kHostToDevice) {
    cuda_kind = cudaMemcpyHostToDevice;
    what = "copy host -> device";
  } else if (kind == CopyKind::kDeviceToHost) {
    cuda_kind = cudaMemcpyDeviceToHost;
    what = "copy device -> host";
  }
  return cuda::CudaStatus(cudaMemcpyAsync(dst, src, bytes, cuda_kind, stream),
                          std::string(what) + " (" + std::to_string(bytes) + " bytes)");
}

Status CudaFillZeros(void* dst, size_t bytes, cudaStream_t stream) {
  return cuda::CudaStatus(cudaMemsetAsync(dst, 0, bytes, stream), "zero device memory");
}

Status CudaSync(cudaStream_t stream) {
  return cuda::CudaStatus(cudaStreamSynchronize(stream), "synchronise the CUDA stream");
}

}  // namespace tessera::kernels::internal
