// Runs the biased-MF kernels (kernels/mf.h) for callers whose data lives on the host (the MF
// worker: rows pulled from the servers, gradients pushed back).
//
// Two ways in:
//   - BatchGradient / Predict: the caller's host arrays in and out, complete when the call
//     returns. Simple; on kCuda it copies the batch into the workspace's staging first.
//   - Stage -> fill the step's host arrays -> EnqueueGradient / EnqueuePredict -> Finish...: the
//     workspace hands out the host memory (pinned on kCuda), the caller decodes its batch straight
//     into it (the worker decodes its pulled rows there), and a step's device work is queued
//     without waiting, so a second step can be staged and queued while the first one's results
//     are read. This is the path of the MF model on CUDA.
// With ctx.deterministic the CUDA workspace builds each gradient step's segment plans on the
// host from the staged indices, uploads them and runs MfBatchGradientDeterministicCuda (no float
// atomics: the same bits on every run on the same GPU model).
//
// kCpu: Stage hands out plain host memory; EnqueueGradient / EnqueuePredict run MfBatchGradient /
// MfPredict with the context given to Create at once (the bits and Status of the CPU kernels,
// split over the context's helper thread when it has one); BatchGradient / Predict forward the
// caller's pointers to them unchanged (no copies).
//
// kCuda, per staged step, with two streams: the context's stream (compute) and a copy stream the
// workspace owns. One packed upload of the step's inputs [user_index | item_index | ratings |
// plan | user rows | item rows] on the copy stream; the compute stream waits for it (event),
// runs the kernel and makes one packed download of [squared-error sum | user grads | item grads]
// (or the predictions), so that the next step's upload never queues behind this download.
// Finish waits for the download's event only. Each staged step has its own pinned host buffers
// and device buffers (a slot); a slot is handed out again only once its last download finished,
// the step was released and no Frame still holds its gradients (gradients_owner), so the host
// never overwrites memory that a queued copy or a transport still reads. Slots grow (pinned and
// device memory, geometrically) and are freed by the destructor, or after it by the last holder
// of their gradients. Results match the CPU to float rounding, not bitwise (the CUDA kernels sum
// with atomics, or in the deterministic mode in another order than the CPU's). The workspace uses
// the CUDA device that was current when it was created and makes it current on the calling thread
// at each call.
//
// Thread-compatible: one workspace and its steps serve one thread at a time (create one per
// worker thread). Only gradients_owner() may be released on another thread.
#pragma once

#include <cstdint>
#include <memory>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/mf.h"

namespace tessera::kernels {

// The sizes of one staged step.
struct MfStageShape {
  int64_t num_samples = 0;
  int dim = 0;             // factors; rows have dim + 1 floats (bias last)
  int64_t num_users = 0;   // rows in the user block
  int64_t num_items = 0;   // rows in the item block
  int64_t plan_bytes = 0;  // extra plan bytes uploaded with the batch (reserved; 0: none)
};

// The scalars of a step (MfBatch's): mu and the regularisation.
struct MfStepScalars {
  float global_mean = 0.f;
  float l2 = 0.f;
  float l2_bias = 0.f;
};

// One step's host memory, handed out by MfDeviceWorkspace::Stage (pinned on kCuda). The caller
// writes the inputs before Enqueue*, reads the outputs after Finish*. Destroying it releases
// the slot (a step still queued is waited for before the slot is reused). REQUIRES: destroyed
// before its workspace.
class MfStagedStep {
 public:
  virtual ~MfStagedStep() = default;
  MfStagedStep(const MfStagedStep&) = delete;
  MfStagedStep& operator=(const MfStagedStep&) = delete;

  const MfStageShape& shape() const { return shape_; }
  int32_t* user_index() const { return user_index_; }  // num_samples, in [0, num_users)
  int32_t* item_index() const { return item_index_; }  // num_samples, in [0, num_items)
  float* ratings() const { return ratings_; }          // num_samples (gradient only)
  void* plan() const { return plan_; }                 // plan_bytes (null when 0)
  // The user rows then the item rows, contiguous: (num_users + num_items) x (dim + 1) floats,
  // the layout of a pull of the two tables (table after table, unique-key order).
  float* rows() const { return rows_; }
  float* user_rows() const { return rows_; }
  float* item_rows() const { return rows_ + num_user_floats(); }
  // After FinishGradient: the user gradients then the item gradients, laid out as rows().
  float* gradients() const { return gradients_; }
  // After FinishPredict: num_samples predictions.
  float* predictions() const { return predictions_; }
  // Keeps gradients() from being reused while held (copies may go to other threads): wrap the
  // gradients in a Frame with it to push them without a copy.
  const std::shared_ptr<const void>& gradients_owner() const { return gradients_owner_; }

  // The MfBatch over this step's host arrays with `scalars`.
  MfBatch HostBatch(const MfStepScalars& scalars) const;
  int64_t num_user_floats() const { return shape_.num_users * (shape_.dim + 1); }
  int64_t num_row_floats() const {
    return (shape_.num_users + shape_.num_items) * (shape_.dim + 1);
  }

 protected:
  MfStagedStep() = default;

  MfStageShape shape_;
  int32_t* user_index_ = nullptr;
  int32_t* item_index_ = nullptr;
  float* ratings_ = nullptr;
  void* plan_ = nullptr;
  float* rows_ = nullptr;
  float* gradients_ = nullptr;
  float* predictions_ = nullptr;
  std::shared_ptr<const void> gradients_owner_;
};

class MfDeviceWorkspace {
 public:
  // kCpu: always OK. kCuda: FailedPrecondition with CheckCudaAvailable's reason when no device
  // can be used (or the build has no CUDA); InvalidArgument for a kCuda context without a stream
  // (make it with DeviceResources); Internal when the copy stream cannot be created. The
  // workspace keeps a copy of ctx: REQUIRES that ctx's resources (helper, scratch, stream)
  // outlive the workspace.
  static StatusOr<std::unique_ptr<MfDeviceWorkspace>> Create(const DeviceContext& ctx);

  virtual ~MfDeviceWorkspace() = default;
  MfDeviceWorkspace(const MfDeviceWorkspace&) = delete;
  MfDeviceWorkspace& operator=(const MfDeviceWorkspace&) = delete;

  virtual Device device() const = 0;

  // Makes the first slot large enough for a batch of these sizes (kCpu: no-op). Optional: Stage
  // grows slots itself. InvalidArgument for negative sizes or dim <= 0; allocation errors as
  // for Stage.
  virtual Status Reserve(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) = 0;

  // A step's host memory for a batch of `shape` (contents unspecified). InvalidArgument for
  // negative sizes, dim <= 0 or sizes whose bytes overflow; kCuda: FailedPrecondition naming the
  // bytes needed and free when the batch does not fit in pinned or device memory, or when more
  // than 16 steps are staged at once; Internal with the CUDA error string for another failure
  // (of the allocation, or of an earlier step of the slot).
  virtual StatusOr<std::unique_ptr<MfStagedStep>> Stage(const MfStageShape& shape) = 0;

  // Queues the gradient of the step's batch. The indices are checked on the host first (the CPU
  // kernels' InvalidArgument, nothing queued). REQUIRES: `step` came from this workspace and is
  // not queued already. kCuda: Internal for a failed copy or launch.
  virtual Status EnqueueGradient(MfStagedStep* step, const MfStepScalars& scalars) = 0;
  // Waits for the step's gradient: gradients() and *sq_error_sum (may be null) are then
  // complete. Returns the step's error, if any (kCuda: a kernel fault surfaces here).
  virtual Status FinishGradient(MfStagedStep* step, double* sq_error_sum) = 0;

  // As EnqueueGradient / FinishGradient for MfPredict (ratings are not read).
  virtual Status EnqueuePredict(MfStagedStep* step, const MfStepScalars& scalars) = 0;
  virtual Status FinishPredict(MfStagedStep* step) = 0;

  // MfBatchGradient with every pointer in `host_batch` and every output in host memory: same
  // outputs, same InvalidArgument cases (an out-of-range index included, with no output
  // written). kCuda: stages the batch, runs it and copies the outputs back; Internal with the
  // CUDA error string for a failed allocation, copy, launch or sync (outputs then unspecified).
  // *known_finite (may be null) is set true only when the kernels vouch for the gradients (kCpu:
  // every error finite, which the squared-error sum says; kernels/mf.h); false says nothing
  // (kCuda: the caller scans the outputs).
  virtual Status BatchGradient(const MfBatch& host_batch, float* host_user_grads,
                               float* host_item_grads, double* sq_error_sum,
                               bool* known_finite) = 0;

  // MfPredict on host memory; errors as for BatchGradient.
  virtual Status Predict(const MfBatch& host_batch, float* host_predictions) = 0;

 protected:
  MfDeviceWorkspace() = default;
};

namespace internal {
// Reserve's argument check, shared by both workspaces.
Status ValidateMfReserveArgs(int64_t num_samples, int dim, int64_t num_users, int64_t num_items);
// Stage's argument check (Reserve's plus plan_bytes >= 0).
Status ValidateMfStageShape(const MfStageShape& shape);
// InvalidArgument naming the first sample whose index is out of range (the CPU kernels' check
// and message), for host batches.
Status CheckMfHostIndices(const MfBatch& b);
#if TESSERA_WITH_CUDA
// The kCuda workspace (kernels/mf_device_cuda.cu); Create calls it after CheckCudaAvailable.
StatusOr<std::unique_ptr<MfDeviceWorkspace>> CreateMfCudaWorkspace(const DeviceContext& ctx);
#endif
}  // namespace internal

}  // namespace tessera::kernels
