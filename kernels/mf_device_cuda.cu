// The kCuda MfDeviceWorkspace (kernels/mf_device.h): staged steps in pinned host slots, one packed
// upload and one packed download per step, the upload on the workspace's copy stream and the
// kernel and download on the context's stream (DeviceResources owns it), ordered by events.
//
// Why the download is on the compute stream rather than on the copy stream: a single copy
// stream would serialise step n+1's upload behind step n's download, which waits for step n's
// kernel, so the next upload could not run under the current kernel. With uploads alone on the
// copy stream, step n+1's upload proceeds while step n computes and downloads (an H100 has
// separate copy engines for each direction), and step n+1's kernel waits only for its own upload
// (cudaStreamWaitEvent) and, being on the same stream, for step n's kernel and download.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda_util.cuh"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "kernels/mf_math.h"
#include "kernels/segments.h"

namespace tessera::kernels {
namespace {

// Sections of a slot's buffers start at multiples of this (coalesced device reads, and the
// gradients stay 64-byte aligned for a Frame).
constexpr size_t kAlign = 256;
// More steps staged at once than this is a caller that leaks them (the MF model holds at most
// three: the step computing, the one being pulled, and a push still in flight).
constexpr size_t kMaxSlots = 16;

size_t AlignUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// cuda::CudaStatus with the workspace named: "MfDeviceWorkspace: <what>: <CUDA's error>".
Status CudaStatus(cudaError_t err, const std::string& what) {
  return cuda::CudaStatus(err, "MfDeviceWorkspace: " + what);
}

// Byte offsets of one step's sections. Input (uploaded in one copy of in_bytes):
// [user_index | item_index | ratings | plan | user rows, item rows]. Output (downloaded in one
// copy of out_bytes): [squared-error sum | gradients] or [unused | predictions].
struct Layout {
  size_t user_index = 0, item_index = 0, ratings = 0, plan = 0, rows = 0, in_bytes = 0;
  size_t results = kAlign, gradient_bytes = 0, prediction_bytes = 0;

  explicit Layout(const MfStageShape& s) {
    // Stage validated the counts (ValidateMfStageShape), so none of this overflows.
    const size_t n = static_cast<size_t>(s.num_samples);
    const size_t row_floats =
        static_cast<size_t>(s.num_users + s.num_items) * static_cast<size_t>(s.dim + 1);
    item_index = AlignUp(n * sizeof(int32_t));
    ratings = item_index + AlignUp(n * sizeof(int32_t));
    plan = ratings + AlignUp(n * sizeof(float));
    rows = plan + AlignUp(static_cast<size_t>(s.plan_bytes));
    in_bytes = rows + row_floats * sizeof(float);
    gradient_bytes = results + row_floats * sizeof(float);
    prediction_bytes = results + n * sizeof(float);
  }
  size_t out_capacity() const { return std::max(gradient_bytes, prediction_bytes); }
};

// A pinned host buffer and a device buffer of the same capacity, grown geometrically.
class StagingPair {
 public:
  StagingPair() = default;
  StagingPair(const StagingPair&) = delete;
  StagingPair& operator=(const StagingPair&) = delete;
  ~StagingPair() { Free(); }

  unsigned char* host() const { return host_; }
  unsigned char* device() const { return device_; }

  // REQUIRES: no queued copy or kernel uses the buffers (cudaFree / cudaFreeHost would wait for
  // the device anyway, but a stream could still be queued to use the old pointers).
  Status Reserve(size_t bytes, const char* name) {
    if (bytes <= capacity_) return OkStatus();
    Free();
    // Geometric growth first; when that does not fit, exactly what this step needs.
    const size_t grown = std::max(bytes, capacity_ + capacity_ / 2);
    for (size_t target : {grown, bytes}) {
      void* host = nullptr;
      cudaError_t err = cudaHostAlloc(&host, target, cudaHostAllocDefault);
      if (err == cudaSuccess) {
        void* device = nullptr;
        err = cudaMalloc(&device, target);
        if (err == cudaSuccess) {
          host_ = static_cast<unsigned char*>(host);
          device_ = static_cast<unsigned char*>(device);
          capacity_ = target;
          return OkStatus();
        }
        (void)cudaFreeHost(host);
      }
      if (err != cudaErrorMemoryAllocation) {
        return CudaStatus(err, "allocate " + std::to_string(target) + " bytes for " + name);
      }
      (void)cudaGetLastError();  // the failed allocation is not a launch error of a later call
      if (target == bytes) break;
    }
    size_t free_bytes = 0, total_bytes = 0;
    (void)cudaMemGetInfo(&free_bytes, &total_bytes);
    return Status::FailedPrecondition(
        "MfDeviceWorkspace: the batch does not fit in device memory: its " + std::string(name) +
        " need " + std::to_string(bytes) + " bytes (pinned and on the device), the device has " +
        std::to_string(free_bytes) + " of " + std::to_string(total_bytes) +
        " bytes free; use smaller batches");
  }

 private:
  void Free() {
    if (host_ != nullptr) (void)cudaFreeHost(host_);
    if (device_ != nullptr) (void)cudaFree(device_);
    host_ = device_ = nullptr;
    capacity_ = 0;
  }

  unsigned char* host_ = nullptr;
  unsigned char* device_ = nullptr;
  size_t capacity_ = 0;
};

// One step's buffers and events. Shared by the workspace and, through the deleter of a step's
// gradients_owner, by whoever still holds the gradients (possibly another thread), so a Frame
// that outlives the workspace keeps its memory valid.
struct Slot {
  ~Slot() {
    if (uploaded != nullptr) (void)cudaEventDestroy(uploaded);
    if (downloaded != nullptr) (void)cudaEventDestroy(downloaded);
  }

  StagingPair in, out;
  cudaEvent_t uploaded = nullptr;    // the packed upload finished (copy stream)
  cudaEvent_t downloaded = nullptr;  // the kernel and packed download finished (compute stream)
  bool leased = false;               // a MfStagedStep uses it (workspace thread only)
  std::atomic<bool> gradients_held{false};  // a gradients_owner copy is alive (any thread)
};

class CudaStagedStep final : public MfStagedStep {
 public:
  CudaStagedStep(std::shared_ptr<Slot> slot, const MfStageShape& shape)
      : slot_(std::move(slot)), layout_(shape) {
    shape_ = shape;
    unsigned char* in = slot_->in.host();
    unsigned char* out = slot_->out.host();
    user_index_ = reinterpret_cast<int32_t*>(in + layout_.user_index);
    item_index_ = reinterpret_cast<int32_t*>(in + layout_.item_index);
    ratings_ = reinterpret_cast<float*>(in + layout_.ratings);
    plan_ = shape.plan_bytes > 0 ? in + layout_.plan : nullptr;
    rows_ = reinterpret_cast<float*>(in + layout_.rows);
    gradients_ = reinterpret_cast<float*>(out + layout_.results);
    predictions_ = gradients_;
    slot_->leased = true;
    slot_->gradients_held.store(true, std::memory_order_relaxed);
    // The release pairs with the acquire in CudaMfWorkspace::FindFreeSlot: every read of the
    // gradients by the holder happens before the slot is written again.
    std::shared_ptr<Slot> keep = slot_;
    gradients_owner_ = std::shared_ptr<const void>(gradients_, [keep](const void*) {
      keep->gradients_held.store(false, std::memory_order_release);
    });
  }
  ~CudaStagedStep() override { slot_->leased = false; }

  Slot& slot() const { return *slot_; }
  const Layout& layout() const { return layout_; }
  // The batch over the device copy of the inputs.
  MfBatch DeviceBatch(const MfStepScalars& scalars) const {
    MfBatch d = HostBatch(scalars);
    unsigned char* in = slot_->in.device();
    d.user_index = reinterpret_cast<const int32_t*>(in + layout_.user_index);
    d.item_index = reinterpret_cast<const int32_t*>(in + layout_.item_index);
    d.ratings = reinterpret_cast<const float*>(in + layout_.ratings);
    d.user_rows = reinterpret_cast<const float*>(in + layout_.rows);
    d.item_rows = d.user_rows + num_user_floats();
    return d;
  }
  float* device_gradients() const {
    return reinterpret_cast<float*>(slot_->out.device() + layout_.results);
  }
  double* device_sq_error() const { return reinterpret_cast<double*>(slot_->out.device()); }
  double host_sq_error() const { return *reinterpret_cast<const double*>(slot_->out.host()); }

  enum class Queued { kNone, kGradient, kPredict };
  Queued queued = Queued::kNone;
  bool want_sq_error = false;

 private:
  std::shared_ptr<Slot> slot_;
  const Layout layout_;
};

class CudaMfWorkspace final : public MfDeviceWorkspace {
 public:
  CudaMfWorkspace(int device, cudaStream_t compute, cudaStream_t copy, bool deterministic)
      : device_(device), compute_(compute), copy_(copy), deterministic_(deterministic) {}

  ~CudaMfWorkspace() override {
    // Steps may have been dropped while queued: let their work finish before the slots can be
    // freed. The compute stream is the context's (DeviceResources destroys it).
    (void)cudaStreamSynchronize(copy_);
    (void)cudaStreamSynchronize(compute_);
    internal::DestroyCudaStream(copy_);
    (void)cudaFree(d_errors_);
    // Slots free their memory once the last holder of their gradients lets go.
  }

  Device device() const override { return Device::kCuda; }

  Status Reserve(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) override {
    TS_RETURN_IF_ERROR(internal::ValidateMfReserveArgs(num_samples, dim, num_users, num_items));
    MfStageShape shape;
    shape.num_samples = num_samples;
    shape.dim = dim;
    shape.num_users = num_users;
    shape.num_items = num_items;
    return Stage(shape).status();  // the step is released at once; its slot keeps the memory
  }

  StatusOr<std::unique_ptr<MfStagedStep>> Stage(const MfStageShape& shape) override {
    TS_RETURN_IF_ERROR(internal::ValidateMfStageShape(shape));
    TS_RETURN_IF_ERROR(UseDevice());
    TS_ASSIGN_OR_RETURN(std::shared_ptr<Slot> slot, FindFreeSlot());
    const Layout layout(shape);
    TS_RETURN_IF_ERROR(slot->in.Reserve(layout.in_bytes, "staged MF inputs"));
    TS_RETURN_IF_ERROR(slot->out.Reserve(layout.out_capacity(), "staged MF outputs"));
    return std::unique_ptr<MfStagedStep>(new CudaStagedStep(std::move(slot), shape));
  }

  Status EnqueueGradient(MfStagedStep* step, const MfStepScalars& scalars) override {
    CudaStagedStep* s = static_cast<CudaStagedStep*>(step);
    TS_RETURN_IF_ERROR(CheckNotQueued(*s));
    TS_RETURN_IF_ERROR(internal::CheckMfHostIndices(s->HostBatch(scalars)));
    TS_RETURN_IF_ERROR(UseDevice());
    s->want_sq_error = true;
    TS_RETURN_IF_ERROR(SyncIfFailed(Enqueue(*s, scalars, /*gradient=*/true)));
    s->queued = CudaStagedStep::Queued::kGradient;
    return OkStatus();
  }

  Status FinishGradient(MfStagedStep* step, double* sq_error_sum) override {
    CudaStagedStep* s = static_cast<CudaStagedStep*>(step);
    TS_RETURN_IF_ERROR(Finish(s, CudaStagedStep::Queued::kGradient));
    if (sq_error_sum != nullptr) *sq_error_sum = s->host_sq_error();
    return OkStatus();
  }

  Status EnqueuePredict(MfStagedStep* step, const MfStepScalars& scalars) override {
    CudaStagedStep* s = static_cast<CudaStagedStep*>(step);
    TS_RETURN_IF_ERROR(CheckNotQueued(*s));
    TS_RETURN_IF_ERROR(internal::CheckMfHostIndices(s->HostBatch(scalars)));
    TS_RETURN_IF_ERROR(UseDevice());
    TS_RETURN_IF_ERROR(SyncIfFailed(Enqueue(*s, scalars, /*gradient=*/false)));
    s->queued = CudaStagedStep::Queued::kPredict;
    return OkStatus();
  }

  Status FinishPredict(MfStagedStep* step) override {
    return Finish(static_cast<CudaStagedStep*>(step), CudaStagedStep::Queued::kPredict);
  }

  Status BatchGradient(const MfBatch& host_batch, float* host_user_grads, float* host_item_grads,
                       double* sq_error_sum, bool* known_finite) override {
    const MfBatch& b = host_batch;
    if (known_finite != nullptr) *known_finite = false;
    TS_RETURN_IF_ERROR(internal::ValidateMfGradientArgs(b, host_user_grads, host_item_grads));
    TS_RETURN_IF_ERROR(internal::CheckMfHostIndices(b));
    const int64_t stride = MfRowStride(b.dim);
    if (b.num_samples == 0) {  // all-zero outputs, as the kernels write them; no device work
      std::fill_n(host_user_grads, b.num_users * stride, 0.0f);
      std::fill_n(host_item_grads, b.num_items * stride, 0.0f);
      if (sq_error_sum != nullptr) *sq_error_sum = 0.0;
      return OkStatus();
    }
    TS_ASSIGN_OR_RETURN(std::unique_ptr<MfStagedStep> step, StageCopyOf(b, /*ratings=*/true));
    TS_RETURN_IF_ERROR(EnqueueGradient(step.get(), ScalarsOf(b)));
    TS_RETURN_IF_ERROR(FinishGradient(step.get(), sq_error_sum));
    std::memcpy(host_user_grads, step->gradients(), step->num_user_floats() * sizeof(float));
    std::memcpy(host_item_grads, step->gradients() + step->num_user_floats(),
                (step->num_row_floats() - step->num_user_floats()) * sizeof(float));
    return OkStatus();
  }

  Status Predict(const MfBatch& host_batch, float* host_predictions) override {
    const MfBatch& b = host_batch;
    TS_RETURN_IF_ERROR(internal::ValidateMfPredictArgs(b, host_predictions));
    TS_RETURN_IF_ERROR(internal::CheckMfHostIndices(b));
    if (b.num_samples == 0) return OkStatus();
    TS_ASSIGN_OR_RETURN(std::unique_ptr<MfStagedStep> step, StageCopyOf(b, /*ratings=*/false));
    TS_RETURN_IF_ERROR(EnqueuePredict(step.get(), ScalarsOf(b)));
    TS_RETURN_IF_ERROR(FinishPredict(step.get()));
    std::memcpy(host_predictions, step->predictions(), b.num_samples * sizeof(float));
    return OkStatus();
  }

 private:
  static MfStepScalars ScalarsOf(const MfBatch& b) { return {b.global_mean, b.l2, b.l2_bias}; }

  // The buffers live on device_; make it current for this thread (cheap when it already is).
  Status UseDevice() {
    int current = -1;
    TS_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&current), "get current device"));
    if (current == device_) return OkStatus();
    return CudaStatus(cudaSetDevice(device_), "set device " + std::to_string(device_));
  }

  // A slot no step leases and no one holds the gradients of, after its last queued work
  // finished; a new one when all are busy.
  StatusOr<std::shared_ptr<Slot>> FindFreeSlot() {
    for (const std::shared_ptr<Slot>& slot : slots_) {
      if (slot->leased || slot->gradients_held.load(std::memory_order_acquire)) continue;
      // Normally long done; a step released while still queued is waited for here.
      TS_RETURN_IF_ERROR(
          CudaStatus(cudaEventSynchronize(slot->downloaded), "wait for a slot's last step"));
      TS_RETURN_IF_ERROR(
          CudaStatus(cudaEventSynchronize(slot->uploaded), "wait for a slot's last upload"));
      return slot;
    }
    if (slots_.size() >= kMaxSlots) {
      return Status::FailedPrecondition("MfDeviceWorkspace: more than " +
                                        std::to_string(kMaxSlots) + " steps staged at once");
    }
    auto slot = std::make_shared<Slot>();
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&slot->uploaded, cudaEventDisableTiming),
                                  "create an event"));
    TS_RETURN_IF_ERROR(CudaStatus(
        cudaEventCreateWithFlags(&slot->downloaded, cudaEventDisableTiming), "create an event"));
    // Recorded once so that the first wait on them returns at once.
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(slot->uploaded, copy_), "record an event"));
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(slot->downloaded, compute_), "record an event"));
    slots_.push_back(slot);
    return slot;
  }

  // A staged step holding a copy of a caller's host batch (BatchGradient / Predict).
  StatusOr<std::unique_ptr<MfStagedStep>> StageCopyOf(const MfBatch& b, bool ratings) {
    MfStageShape shape;
    shape.num_samples = b.num_samples;
    shape.dim = b.dim;
    shape.num_users = b.num_users;
    shape.num_items = b.num_items;
    TS_ASSIGN_OR_RETURN(std::unique_ptr<MfStagedStep> step, Stage(shape));
    const size_t n = static_cast<size_t>(b.num_samples);
    std::memcpy(step->user_index(), b.user_index, n * sizeof(int32_t));
    std::memcpy(step->item_index(), b.item_index, n * sizeof(int32_t));
    if (ratings) std::memcpy(step->ratings(), b.ratings, n * sizeof(float));
    if (b.num_users > 0) {
      std::memcpy(step->user_rows(), b.user_rows, step->num_user_floats() * sizeof(float));
    }
    if (b.num_items > 0) {
      std::memcpy(step->item_rows(), b.item_rows,
                  (step->num_row_floats() - step->num_user_floats()) * sizeof(float));
    }
    return step;
  }

  static Status CheckNotQueued(const CudaStagedStep& s) {
    if (s.queued == CudaStagedStep::Queued::kNone) return OkStatus();
    return Status::FailedPrecondition("MfDeviceWorkspace: the step is queued already");
  }

  // Upload (copy stream) -> kernel -> download (compute stream); see the file comment.
  Status Enqueue(const CudaStagedStep& s, const MfStepScalars& scalars, bool gradient) {
    Slot& slot = s.slot();
    const Layout& layout = s.layout();
    if (layout.in_bytes > 0) {
      TS_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(slot.in.device(), slot.in.host(),
                                                    layout.in_bytes, cudaMemcpyHostToDevice, copy_),
                                    "upload a step's inputs"));
    }
    TS_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(slot.uploaded, copy_), "record the upload"));
    TS_RETURN_IF_ERROR(
        CudaStatus(cudaStreamWaitEvent(compute_, slot.uploaded, 0), "wait for the upload"));
    const MfBatch d = s.DeviceBatch(scalars);
    size_t out_bytes = 0;
    if (gradient) {
      float* grads = s.device_gradients();
      if (deterministic_) {
        MfGradientPlan plan;
        TS_RETURN_IF_ERROR(EnqueuePlan(s, &plan));
        TS_RETURN_IF_ERROR(MfBatchGradientDeterministicCuda(
            d, plan, grads, grads + s.num_user_floats(), s.device_sq_error(), compute_));
      } else {
        TS_RETURN_IF_ERROR(MfBatchGradientCuda(d, grads, grads + s.num_user_floats(),
                                               s.device_sq_error(), compute_));
      }
      out_bytes = layout.gradient_bytes;
    } else if (d.num_samples > 0) {
      TS_RETURN_IF_ERROR(MfPredictCuda(d, s.device_gradients(), compute_));
      out_bytes = layout.prediction_bytes;
    }
    if (out_bytes > 0) {
      TS_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(slot.out.host(), slot.out.device(), out_bytes,
                                                    cudaMemcpyDeviceToHost, compute_),
                                    "download a step's results"));
    }
    return CudaStatus(cudaEventRecord(slot.downloaded, compute_), "record the download");
  }

  // Deterministic mode (kernels/segments.h): the step's two segment plans, built on the host
  // from its staged indices and queued for upload on the compute stream (pageable copies: the
  // host plans may be rebuilt for the next step as soon as this returns), and the per-sample
  // residual scratch. The device plans and scratch are shared by the steps, which the compute
  // stream runs one after another.
  Status EnqueuePlan(const CudaStagedStep& s, MfGradientPlan* plan) {
    const int64_t n = s.shape().num_samples;
    TS_RETURN_IF_ERROR(user_plan_.Build(s.user_index(), n, s.shape().num_users));
    TS_RETURN_IF_ERROR(item_plan_.Build(s.item_index(), n, s.shape().num_items));
    TS_RETURN_IF_ERROR(d_user_plan_.Upload(user_plan_, compute_));
    TS_RETURN_IF_ERROR(d_item_plan_.Upload(item_plan_, compute_));
    const size_t error_bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float);
    if (error_bytes > errors_capacity_) {
      (void)cudaFree(d_errors_);
      d_errors_ = nullptr;
      errors_capacity_ = 0;
      TS_RETURN_IF_ERROR(
          CudaStatus(cudaMalloc(&d_errors_, error_bytes), "allocate the residual scratch"));
      errors_capacity_ = error_bytes;
    }
    plan->users = d_user_plan_.view();
    plan->items = d_item_plan_.view();
    plan->errors = static_cast<float*>(d_errors_);
    return OkStatus();
  }

  // After a failure part-way through queueing, waits for both streams, so that no queued copy
  // still uses the slot when the error is returned.
  Status SyncIfFailed(Status enqueued) {
    if (enqueued.ok()) return enqueued;
    (void)cudaStreamSynchronize(copy_);
    (void)cudaStreamSynchronize(compute_);
    return enqueued;
  }

  Status Finish(CudaStagedStep* s, CudaStagedStep::Queued kind) {
    if (s->queued != kind) {
      return Status::FailedPrecondition(
          "MfDeviceWorkspace: Finish without a matching Enqueue of the step");
    }
    s->queued = CudaStagedStep::Queued::kNone;
    TS_RETURN_IF_ERROR(UseDevice());
    // A kernel fault of the step (or of anything before it on the stream) surfaces here.
    return CudaStatus(cudaEventSynchronize(s->slot().downloaded), "wait for a step's results");
  }

  const int device_;
  const cudaStream_t compute_;  // the context's; kernels and downloads
  const cudaStream_t copy_;     // owned; uploads
  std::vector<std::shared_ptr<Slot>> slots_;
  // Deterministic mode only (EnqueuePlan).
  const bool deterministic_;
  SegmentPlan user_plan_, item_plan_;
  DeviceSegments d_user_plan_, d_item_plan_;
  void* d_errors_ = nullptr;
  size_t errors_capacity_ = 0;
};

}  // namespace

namespace internal {

StatusOr<std::unique_ptr<MfDeviceWorkspace>> CreateMfCudaWorkspace(const DeviceContext& ctx) {
  cudaStream_t stream = ctx.stream;
  if (stream == nullptr) {
    return Status::InvalidArgument(
        "MfDeviceWorkspace: a CUDA context needs its stream (kernels::DeviceResources)");
  }
  int device = -1;
  TS_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "get current device"));
  TS_ASSIGN_OR_RETURN(cudaStream_t copy, CreateCudaStream());
  return std::unique_ptr<MfDeviceWorkspace>(
      new CudaMfWorkspace(device, stream, copy, ctx.deterministic));
}

}  // namespace internal
}  // namespace tessera::kernels
