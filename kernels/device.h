// Where a kernel runs. Every kernel entry point takes a DeviceContext and dispatches on it; for
// kCuda all pointers handed to the kernel are device memory and the work is queued on `stream`
// (nullptr: the legacy default stream). Keeps cuda_runtime.h out: the stream is opaque here.
#pragma once

#include <string>

#include "core/status.h"

struct CUstream_st;

namespace tessera::kernels {

enum class Device { kCpu, kCuda };

struct DeviceContext {
  Device device = Device::kCpu;          // where the kernel runs and where its pointers live
  struct CUstream_st* stream = nullptr;  // kCuda only: stream the work is queued on (not owned)
};

// "cpu" | "cuda"; anything else is InvalidArgument listing the choices.
StatusOr<Device> ParseDevice(const std::string& name);
// "cpu" | "cuda" ("unknown" for a value outside the enum).
const char* DeviceName(Device d);

// OK when a CUDA device can be used by this build. Otherwise FailedPrecondition with the reason:
// "built without CUDA support", or "no usable CUDA device: <CUDA error string>" / "... 0 devices".
// Thread-safe; initialises the CUDA runtime on first use.
Status CheckCudaAvailable();

#if TESSERA_WITH_CUDA
namespace internal {
// Converts the error state after a kernel launch (cudaGetLastError) into a Status naming
// `what`. Used by the *_cuda.cu files; does not synchronise, so only launch errors are seen.
Status CudaLaunchStatus(const char* what);
}  // namespace internal
#endif

}  // namespace tessera::kernels
