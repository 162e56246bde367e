// The kCuda MfDeviceWorkspace: host batch -> device buffers -> MF kernels -> host outputs, all
// queued on the context's stream (DeviceResources owns it), with one cudaStreamSynchronize at the
// end of each call. Host memory is the caller's (pageable); cudaMemcpyAsync from/to pageable memory
// is staged by the driver, which is correct but not overlapped with compute. Pinned staging would
// add a host memcpy per call and is left out until a profile asks for it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "kernels/cuda_util.cuh"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "kernels/mf_math.h"
#include "kernels/segments.h"

namespace tessera::kernels {
namespace {

// cuda::CudaStatus with the workspace named: "MfDeviceWorkspace: <what>: <CUDA's error>".
Status CudaStatus(cudaError_t err, const std::string& what) {
  return cuda::CudaStatus(err, "MfDeviceWorkspace: " + what);
}

// count * elem_bytes, or InvalidArgument when it does not fit in size_t.
Status Bytes(int64_t count, size_t elem_bytes, const char* what, size_t* bytes) {
  if (count < 0 || static_cast<uint64_t>(count) > std::numeric_limits<size_t>::max() / elem_bytes) {
    return Status::InvalidArgument("MfDeviceWorkspace: " + std::string(what) + " of " +
                                   std::to_string(count) + " elements is too large");
  }
  *bytes = static_cast<size_t>(count) * elem_bytes;
  return OkStatus();
}

// The index values are on the host here, so check them as the CPU kernels do (same message)
// instead of letting the CUDA kernels skip bad samples silently.
Status CheckHostIndices(const MfBatch& b) {
  for (int64_t s = 0; s < b.num_samples; ++s) {
    const int32_t u = b.user_index[s];
    const int32_t i = b.item_index[s];
    if (u < 0 || u >= b.num_users || i < 0 || i >= b.num_items) {
      return Status::InvalidArgument(
          "MfBatch: sample " + std::to_string(s) + " has user_index " + std::to_string(u) +
          " (num_users " + std::to_string(b.num_users) + "), item_index " + std::to_string(i) +
          " (num_items " + std::to_string(b.num_items) + ")");
    }
  }
  return OkStatus();
}

// A cudaMalloc'd buffer that only grows. Growing frees the old buffer first (cudaFree waits for
// the device, which is idle between workspace calls) and over-allocates by half so that a slowly
// growing batch size reallocates O(log) times.
class DeviceBuffer {
 public:
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  explicit DeviceBuffer(const char* name) : name_(name) {}
  ~DeviceBuffer() { (void)cudaFree(data_); }

  template <typename T>
  T* get() const {
    return static_cast<T*>(data_);
  }

  Status Reserve(size_t bytes) {
    if (bytes <= capacity_) return OkStatus();
    const size_t grown = capacity_ + capacity_ / 2;
    const size_t target = std::max(bytes, grown);
    TS_RETURN_IF_ERROR(CudaStatus(cudaFree(data_), std::string("free ") + name_));
    data_ = nullptr;
    capacity_ = 0;
    TS_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&data_, target),
                                  "allocate " + std::to_string(target) + " bytes for " + name_));
    capacity_ = target;
    return OkStatus();
  }

 private:
  const char* name_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Sizes of one batch's buffers in bytes.
struct BatchBytes {
  size_t samples_i32 = 0;  // one index array
  size_t samples_f32 = 0;  // ratings or predictions
  size_t user_rows = 0;    // user rows or user gradients
  size_t item_rows = 0;
};

Status ComputeBytes(int64_t num_samples, int dim, int64_t num_users, int64_t num_items,
                    BatchBytes* out) {
  const size_t row_bytes = static_cast<size_t>(MfRowStride(dim)) * sizeof(float);
  TS_RETURN_IF_ERROR(Bytes(num_samples, sizeof(int32_t), "index array", &out->samples_i32));
  TS_RETURN_IF_ERROR(Bytes(num_samples, sizeof(float), "rating array", &out->samples_f32));
  TS_RETURN_IF_ERROR(Bytes(num_users, row_bytes, "user row block", &out->user_rows));
  TS_RETURN_IF_ERROR(Bytes(num_items, row_bytes, "item row block", &out->item_rows));
  return OkStatus();
}

class CudaMfWorkspace final : public MfDeviceWorkspace {
 public:
  CudaMfWorkspace(int device, cudaStream_t stream, bool deterministic)
      : device_(device), stream_(stream), deterministic_(deterministic) {}

  ~CudaMfWorkspace() override {
    // Nothing is in flight between calls; the sync only guards a call that failed mid-way. The
    // stream is the context's (DeviceResources destroys it).
    (void)cudaStreamSynchronize(stream_);
    // The DeviceBuffer members free their memory after this body.
  }

  Device device() const override { return Device::kCuda; }

  Status Reserve(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) override {
    TS_RETURN_IF_ERROR(internal::ValidateMfReserveArgs(num_samples, dim, num_users, num_items));
    BatchBytes bytes;
    TS_RETURN_IF_ERROR(ComputeBytes(num_samples, dim, num_users, num_items, &bytes));
    TS_RETURN_IF_ERROR(UseDevice());
    TS_RETURN_IF_ERROR(ReserveInputs(bytes, /*with_ratings=*/true));
    TS_RETURN_IF_ERROR(ReserveGradients(bytes));
    return predictions_.Reserve(bytes.samples_f32);
  }

  Status BatchGradient(const MfBatch& host_batch, float* host_user_grads, float* host_item_grads,
                       double* sq_error_sum) override {
    const MfBatch& b = host_batch;
    TS_RETURN_IF_ERROR(internal::ValidateMfGradientArgs(b, host_user_grads, host_item_grads));
    TS_RETURN_IF_ERROR(CheckHostIndices(b));
    const int64_t stride = MfRowStride(b.dim);
    if (b.num_samples == 0) {  // all-zero outputs, as the kernels write them; no device work
      std::fill_n(host_user_grads, b.num_users * stride, 0.0f);
      std::fill_n(host_item_grads, b.num_items * stride, 0.0f);
      if (sq_error_sum != nullptr) *sq_error_sum = 0.0;
      return OkStatus();
    }
    BatchBytes bytes;
    TS_RETURN_IF_ERROR(ComputeBytes(b.num_samples, b.dim, b.num_users, b.num_items, &bytes));
    TS_RETURN_IF_ERROR(UseDevice());
    TS_RETURN_IF_ERROR(ReserveInputs(bytes, /*with_ratings=*/true));
    TS_RETURN_IF_ERROR(ReserveGradients(bytes));
    return SyncAfter(EnqueueGradient(b, bytes, host_user_grads, host_item_grads, sq_error_sum));
  }

  Status Predict(const MfBatch& host_batch, float* host_predictions) override {
    const MfBatch& b = host_batch;
    TS_RETURN_IF_ERROR(internal::ValidateMfPredictArgs(b, host_predictions));
    TS_RETURN_IF_ERROR(CheckHostIndices(b));
    if (b.num_samples == 0) return OkStatus();
    BatchBytes bytes;
    TS_RETURN_IF_ERROR(ComputeBytes(b.num_samples, b.dim, b.num_users, b.num_items, &bytes));
    TS_RETURN_IF_ERROR(UseDevice());
    TS_RETURN_IF_ERROR(ReserveInputs(bytes, /*with_ratings=*/false));
    TS_RETURN_IF_ERROR(predictions_.Reserve(bytes.samples_f32));
    return SyncAfter(EnqueuePredict(b, bytes, host_predictions));
  }

 private:
  // The buffers live on device_; make it current for this thread (cheap when it already is).
  Status UseDevice() {
    int current = -1;
    TS_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&current), "get current device"));
    if (current == device_) return OkStatus();
    return CudaStatus(cudaSetDevice(device_), "set device " + std::to_string(device_));
  }

  Status ReserveInputs(const BatchBytes& bytes, bool with_ratings) {
    TS_RETURN_IF_ERROR(user_index_.Reserve(bytes.samples_i32));
    TS_RETURN_IF_ERROR(item_index_.Reserve(bytes.samples_i32));
    if (with_ratings) TS_RETURN_IF_ERROR(ratings_.Reserve(bytes.samples_f32));
    TS_RETURN_IF_ERROR(user_rows_.Reserve(bytes.user_rows));
    return item_rows_.Reserve(bytes.item_rows);
  }

  Status ReserveGradients(const BatchBytes& bytes) {
    TS_RETURN_IF_ERROR(user_grads_.Reserve(bytes.user_rows));
    TS_RETURN_IF_ERROR(item_grads_.Reserve(bytes.item_rows));
    return sq_error_.Reserve(sizeof(double));
  }

  Status ToDevice(void* dst, const void* src, size_t bytes, const char* what) {
    return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
                      std::string("copy ") + what + " host->device");
  }

  Status ToHost(void* dst, const void* src, size_t bytes, const char* what) {
    return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_),
                      std::string("copy ") + what + " device->host");
  }

  // Queues the copies of the batch's inputs and returns, in *d, the batch pointing at them.
  Status EnqueueInputs(const MfBatch& h, const BatchBytes& bytes, bool with_ratings, MfBatch* d) {
    *d = h;
    TS_RETURN_IF_ERROR(
        ToDevice(user_index_.get<void>(), h.user_index, bytes.samples_i32, "user_index"));
    TS_RETURN_IF_ERROR(
        ToDevice(item_index_.get<void>(), h.item_index, bytes.samples_i32, "item_index"));
    TS_RETURN_IF_ERROR(ToDevice(user_rows_.get<void>(), h.user_rows, bytes.user_rows, "user_rows"));
    TS_RETURN_IF_ERROR(ToDevice(item_rows_.get<void>(), h.item_rows, bytes.item_rows, "item_rows"));
    d->user_index = user_index_.get<int32_t>();
    d->item_index = item_index_.get<int32_t>();
    d->user_rows = user_rows_.get<float>();
    d->item_rows = item_rows_.get<float>();
    if (with_ratings) {
      TS_RETURN_IF_ERROR(ToDevice(ratings_.get<void>(), h.ratings, bytes.samples_f32, "ratings"));
      d->ratings = ratings_.get<float>();
    } else {
      d->ratings = nullptr;  // predict does not read them
    }
    return OkStatus();
  }

  Status EnqueueGradient(const MfBatch& h, const BatchBytes& bytes, float* host_user_grads,
                         float* host_item_grads, double* sq_error_sum) {
    MfGradientPlan plan;
    if (deterministic_) TS_RETURN_IF_ERROR(EnqueueGradientPlan(h, bytes, &plan));
    MfBatch d;
    TS_RETURN_IF_ERROR(EnqueueInputs(h, bytes, /*with_ratings=*/true, &d));
    double* d_sq_error = sq_error_sum != nullptr ? sq_error_.get<double>() : nullptr;
    TS_RETURN_IF_ERROR(deterministic_
                           ? MfBatchGradientDeterministicCuda(d, plan, user_grads_.get<float>(),
                                                              item_grads_.get<float>(), d_sq_error,
                                                              stream_)
                           : MfBatchGradientCuda(d, user_grads_.get<float>(),
                                                 item_grads_.get<float>(), d_sq_error, stream_));
    TS_RETURN_IF_ERROR(
        ToHost(host_user_grads, user_grads_.get<void>(), bytes.user_rows, "user gradients"));
    TS_RETURN_IF_ERROR(
        ToHost(host_item_grads, item_grads_.get<void>(), bytes.item_rows, "item gradients"));
    if (sq_error_sum != nullptr) {
      TS_RETURN_IF_ERROR(ToHost(sq_error_sum, d_sq_error, sizeof(double), "squared error sum"));
    }
    return OkStatus();
  }

  // Deterministic mode (kernels/segments.h): the batch's two segment plans, built here on the host
  // where the indices are, queued for upload, and the residual scratch; *plan points at the
  // device copies. Allocates (grow-only) before any other work of the call is queued. The host
  // plans stay untouched until the next call, after this call's sync.
  Status EnqueueGradientPlan(const MfBatch& h, const BatchBytes& bytes, MfGradientPlan* plan) {
    TS_RETURN_IF_ERROR(user_plan_.Build(h.user_index, h.num_samples, h.num_users));
    TS_RETURN_IF_ERROR(item_plan_.Build(h.item_index, h.num_samples, h.num_items));
    TS_RETURN_IF_ERROR(errors_.Reserve(bytes.samples_f32));
    TS_RETURN_IF_ERROR(d_user_plan_.Upload(user_plan_, stream_));
    TS_RETURN_IF_ERROR(d_item_plan_.Upload(item_plan_, stream_));
    plan->users = d_user_plan_.view();
    plan->items = d_item_plan_.view();
    plan->errors = errors_.get<float>();
    return OkStatus();
  }

  Status EnqueuePredict(const MfBatch& h, const BatchBytes& bytes, float* host_predictions) {
    MfBatch d;
    TS_RETURN_IF_ERROR(EnqueueInputs(h, bytes, /*with_ratings=*/false, &d));
    TS_RETURN_IF_ERROR(MfPredictCuda(d, predictions_.get<float>(), stream_));
    return ToHost(host_predictions, predictions_.get<void>(), bytes.samples_f32, "predictions");
  }

  // The workspace's one sync per call, also after a failure part-way through queueing, so that
  // no queued copy still refers to the caller's host buffers when the call returns. A kernel
  // fault surfaces here (asynchronous errors are reported by the sync).
  Status SyncAfter(Status enqueued) {
    const cudaError_t err = cudaStreamSynchronize(stream_);
    if (!enqueued.ok()) return enqueued;
    return CudaStatus(err, "synchronise stream");
  }

  const int device_;
  const cudaStream_t stream_;
  DeviceBuffer user_index_{"user_index"}, item_index_{"item_index"}, ratings_{"ratings"};
  DeviceBuffer user_rows_{"user_rows"}, item_rows_{"item_rows"};
  DeviceBuffer user_grads_{"user_grads"}, item_grads_{"item_grads"}, sq_error_{"sq_error"};
  DeviceBuffer predictions_{"predictions"};
  // Deterministic mode only: the gradient's segment plans (host and device) and residuals.
  const bool deterministic_;
  SegmentPlan user_plan_, item_plan_;
  DeviceSegments d_user_plan_, d_item_plan_;
  DeviceBuffer errors_{"errors"};
};

}  // namespace

namespace internal {

StatusOr<std::unique_ptr<MfDeviceWorkspace>> CreateMfCudaWorkspace(const DeviceContext& ctx) {
  if (ctx.stream == nullptr) {
    return Status::InvalidArgument(
        "MfDeviceWorkspace: a CUDA context needs its stream (kernels::DeviceResources)");
  }
  int device = -1;
  TS_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&device), "get current device"));
  return std::unique_ptr<MfDeviceWorkspace>(
      new CudaMfWorkspace(device, ctx.stream, ctx.deterministic));
}

}  // namespace internal
}  // namespace tessera::kernels
