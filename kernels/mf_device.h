// Runs the biased-MF kernels (kernels/mf.h) on HOST inputs and outputs, for callers whose data
// lives on the host (the MF worker: rows pulled from the servers, gradients pushed back).
//
// kCpu: a pass-through; every call forwards the caller's pointers unchanged to MfBatchGradient /
// MfPredict with the context given to Create (no copies; MfBatchGradientCpu's bits and Status,
// split over the context's helper thread when it has one: see MfBatchGradient).
// kCuda: the workspace queues its work on the context's stream and owns growable device buffers. A
// call validates the host batch (including the index values, as the CPU kernels do), copies
// indices, ratings and the user/item rows host -> device, launches MfBatchGradientCuda /
// MfPredictCuda, copies the outputs device -> host and then SYNCHRONISES ITS STREAM, so the host
// outputs are complete and the host inputs are free for reuse when the call returns. That sync is
// the workspace's job; the kernels themselves never sync. Device memory is allocated only in
// Reserve, which a call also runs for its own batch before queueing any work, never inside the
// kernels; buffers only grow, geometrically, and are freed by the destructor. The workspace uses
// the CUDA device that was current when it was created and makes it current on the calling thread
// at each call. Results match the CPU to float rounding, not bitwise (the CUDA kernels sum with
// atomics; see MfBatchGradientCuda). With ctx.deterministic the workspace also builds the
// batch's segment plans on the host, uploads them and runs MfBatchGradientDeterministicCuda
// (no atomics: the same bits on every run on the same GPU model).
//
// Thread-compatible: one workspace serves one thread at a time; create one per worker thread.
#pragma once

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/mf.h"

namespace tessera::kernels {

class MfDeviceWorkspace {
 public:
  // kCpu: always OK. kCuda: FailedPrecondition with CheckCudaAvailable's reason when no device
  // can be used (or the build has no CUDA); InvalidArgument for a kCuda context without a stream
  // (make it with DeviceResources). The workspace keeps a copy of ctx: REQUIRES that ctx's
  // resources (helper, scratch, stream) outlive the workspace.
  static StatusOr<std::unique_ptr<MfDeviceWorkspace>> Create(const DeviceContext& ctx);

  virtual ~MfDeviceWorkspace() = default;
  MfDeviceWorkspace(const MfDeviceWorkspace&) = delete;
  MfDeviceWorkspace& operator=(const MfDeviceWorkspace&) = delete;

  virtual Device device() const = 0;

  // Makes the device buffers large enough for a batch of these sizes (kCpu: no-op). Optional:
  // every call reserves for its own batch. InvalidArgument for negative sizes or dim <= 0;
  // Internal (with the CUDA error string) when an allocation fails.
  virtual Status Reserve(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) = 0;

  // MfBatchGradient with every pointer in `host_batch` and every output in host memory: same
  // outputs, same InvalidArgument cases (an out-of-range index included, with no output
  // written). kCuda: Internal with the CUDA error string for a failed allocation, copy, launch
  // or sync; the outputs are then unspecified.
  virtual Status BatchGradient(const MfBatch& host_batch, float* host_user_grads,
                               float* host_item_grads, double* sq_error_sum) = 0;

  // MfPredict on host memory; errors as for BatchGradient.
  virtual Status Predict(const MfBatch& host_batch, float* host_predictions) = 0;

 protected:
  MfDeviceWorkspace() = default;
};

namespace internal {
// Reserve's argument check, shared by both workspaces.
Status ValidateMfReserveArgs(int64_t num_samples, int dim, int64_t num_users, int64_t num_items);
#if TESSERA_WITH_CUDA
// The kCuda workspace (kernels/mf_device_cuda.cu); Create calls it after CheckCudaAvailable.
StatusOr<std::unique_ptr<MfDeviceWorkspace>> CreateMfCudaWorkspace(const DeviceContext& ctx);
#endif
}  // namespace internal

}  // namespace tessera::kernels
