// Where a kernel runs and what it may use. Every kernel entry point takes a DeviceContext and
// dispatches on it; for kCuda all pointers handed to the kernel are device memory and the work is
// queued on `stream` (nullptr: the legacy default stream). Keeps cuda_runtime.h out: the stream
// is opaque here.
//
// A context is a small value that borrows its resources (helper thread, scratch); the object
// that owns them, one per worker or per server shard thread, is kernels::DeviceResources
// (kernels/device_resources.h), created once and handed down. The kernel layer decides how a CPU
// step is split over the context's threads: entry points that split (ApplySparseUpdate,
// MfBatchGradient) give the same bits with and without a helper.
//
// Thread-compatible: a context with a helper or scratch serves one calling thread at a time (its
// helper runs one task at a time); copies of it share those resources.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/status.h"

struct CUstream_st;
struct cublasContext;  // what cublasHandle_t points to; keeps cublas_v2.h out of headers

namespace tessera {
class TwoWayFork;  // core/fork_join.h
}  // namespace tessera

namespace tessera::kernels {

enum class Device { kCpu, kCuda };

// Host scratch a kernel may use for the duration of one call (the split MF gradient's
// per-sample errors). It grows to the largest request and keeps that size, so steady-state calls
// allocate nothing. Thread-compatible.
class HostScratch {
 public:
  // At least `count` floats, valid until the next call; contents unspecified.
  float* Floats(size_t count);

 private:
  std::vector<float> floats_;
};

struct DeviceContext {
  Device device = Device::kCpu;          // where the kernel runs and where its pointers live
  struct CUstream_st* stream = nullptr;  // kCuda only: stream the work is queued on (not owned)
  // kCuda only: cuBLAS handle bound to `stream` (not owned), for the kernels that multiply
  // matrices; its math mode is the owner's (DeviceOptions::allow_tf32).
  struct cublasContext* cublas = nullptr;
  // kCpu only: a second compute thread (not owned), on which the splitting entry points run part
  // of a large enough step while the calling thread runs the rest. Null: one thread.
  TwoWayFork* helper = nullptr;
  // kCpu only: scratch of the splitting entry points (not owned). A split that needs scratch and
  // finds none runs on the calling thread alone.
  HostScratch* scratch = nullptr;
  // No float atomics in the reductions (kCuda: the scatter-adds of row gradients and the loss
  // sums run as segmented reductions in a fixed order, see kernels/segments.h), so that reruns
  // on the same device model give the same bits. kCpu kernels are deterministic either way.
  bool deterministic = false;
};

// "cpu" | "cuda"; anything else is InvalidArgument listing the choices.
StatusOr<Device> ParseDevice(const std::string& name);
// "cpu" | "cuda" ("unknown" for a value outside the enum).
const char* DeviceName(Device d);

// OK when a CUDA device can be used by this build. Otherwise FailedPrecondition with the reason:
// "built without CUDA support", or "no usable CUDA device: <CUDA error string>" / "... 0 devices".
// Thread-safe; initialises the CUDA runtime on first use.
Status CheckCudaAvailable();
// The CUDA devices this process can use (ordinals 0..n-1, after the runtime applied
// CUDA_VISIBLE_DEVICES), n >= 1; CheckCudaAvailable's FailedPrecondition where there is none.
StatusOr<int> CudaDeviceCount();
// What a worker's start-up line says about its device: "cuda:1 (NVIDIA H100 80GB HBM3,
// 79.1 GiB)". InvalidArgument for an ordinal outside [0, CudaDeviceCount()).
StatusOr<std::string> DescribeCudaDevice(int ordinal);

#if TESSERA_WITH_CUDA
namespace internal {
// Converts the error state after a kernel launch (cudaGetLastError) into a Status naming
// `what`. Used by the *_cuda.cu files; does not synchronise, so only launch errors are seen.
Status CudaLaunchStatus(const char* what);
// A non-blocking stream on the current device (no implicit ordering with the legacy default
// stream of unrelated code), for DeviceResources; DestroyCudaStream waits for its work first.
StatusOr<struct CUstream_st*> CreateCudaStream();
// Makes `ordinal` the calling thread's current device (cudaSetDevice); InvalidArgument naming the
// device count for an ordinal this process does not have.
Status SetCudaDevice(int ordinal);
void DestroyCudaStream(struct CUstream_st* stream);
}  // namespace internal
#endif

}  // namespace tessera::kernels
