// DeviceResources: the compute resources of one worker, or of one server shard thread, created
// once by that role and handed down to its models and kernels as a DeviceContext (faiss's
// GpuResources plays this part). It owns what the context borrows:
//   kCpu   the helper compute thread (cpu_threads 2: a TwoWayFork, core/fork_join.h), the
//          host scratch of the kernels that split a step over the two threads, and the thread
//          count of the dense layers' matrix products (gemm_threads);
//   kCuda  the stream every kernel of the context is queued on (non-blocking, on device
//          options.cuda_device); workspaces that stage host data (kernels::MfDeviceWorkspace) use
//          it too; and one cuBLAS handle bound to that stream, in full-FP32 math unless
//          DeviceOptions::allow_tf32 (the dense layers of the CTR models multiply through it).
//          Create makes that device current on the calling thread (cudaSetDevice), so the thread
//          that creates the resources is the one that must use them.
// The kernel layer, not the role, decides how a CPU step is split (see the splitting entry
// points: ApplySparseUpdate in sparse_optimizer.h, MfBatchGradient in mf.h); with one thread or
// two the results are the same bits.
//
// Thread-compatible: one thread (the role's compute thread) uses the context at a time. The
// context() and everything it points to stay valid as long as the DeviceResources lives:
// REQUIRES that it outlives every copy of its context (a model keeping one, a workspace).
#pragma once

#include <memory>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::kernels {

struct DeviceOptions {
  Device device = Device::kCpu;  // where the kernels of this context run
  int cpu_threads = 1;           // kCpu: compute threads, 1 or 2 (caller + helper); kCuda: unused
  // kCpu: threads of the dense layers' matrix products (kernels/gemm_cpu.h), set on the thread
  // that creates the resources, the one that uses them; 0 leaves that thread's count as it is.
  int gemm_threads = 0;
  bool deterministic = false;  // copied into DeviceContext::deterministic
  int cuda_device = 0;         // kCuda: the device ordinal (launch/device_assignment.h)
  // kCuda: let cuBLAS run FP32 products on TF32 tensor cores (CUBLAS_TF32_TENSOR_OP_MATH: about
  // 10 mantissa bits per product). Default: CUBLAS_DEFAULT_MATH, full FP32. kCpu: unused.
  bool allow_tf32 = false;
};

class DeviceResources {
 public:
  // InvalidArgument for cpu_threads outside [1, 2] or an unknown device; kCuda:
  // FailedPrecondition with CheckCudaAvailable's reason where no CUDA device can be used,
  // InvalidArgument for a cuda_device this process does not have; FailedPrecondition when the
  // helper thread of cpu_threads 2 cannot be started (a thread or memory limit).
  static StatusOr<std::unique_ptr<DeviceResources>> Create(const DeviceOptions& options);
  ~DeviceResources();
  DeviceResources(const DeviceResources&) = delete;
  DeviceResources& operator=(const DeviceResources&) = delete;

  const DeviceContext& context() const { return context_; }
  // The helper compute thread (kCpu with cpu_threads 2), else null. For a role's own non-kernel
  // work split the same way (the server's row copies); kernels take it from context().
  TwoWayFork* helper() const { return context_.helper; }

 private:
  DeviceResources() = default;

  std::unique_ptr<TwoWayFork> helper_;
  HostScratch scratch_;
  struct CUstream_st* stream_ = nullptr;    // kCuda: owned, destroyed after its work finished
  struct cublasContext* cublas_ = nullptr;  // kCuda: owned, bound to stream_, destroyed first
  DeviceContext context_;                   // points at helper_, scratch_, stream_ and cublas_
};

#if TESSERA_WITH_CUDA
namespace internal {
// A cuBLAS handle on the current device bound to `stream`, in CUBLAS_TF32_TENSOR_OP_MATH when
// allow_tf32 and CUBLAS_DEFAULT_MATH otherwise (kernels/device_resources_cuda.cu). Internal with
// cuBLAS's status string on failure.
StatusOr<struct cublasContext*> CreateCublasHandle(struct CUstream_st* stream, bool allow_tf32);
void DestroyCublasHandle(struct cublasContext* cublas);
}  // namespace internal
#endif

}  // namespace tessera::kernels
