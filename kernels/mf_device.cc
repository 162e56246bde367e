#include "kernels/mf_device.h"

#include <cmath>
#include <string>
#include <vector>

namespace tessera::kernels {
namespace {

// A staged step in plain host vectors; the kCpu workspace runs it at once.
class CpuStagedStep final : public MfStagedStep {
 public:
  explicit CpuStagedStep(const MfStageShape& shape) {
    shape_ = shape;
    const size_t n = static_cast<size_t>(shape.num_samples);
    const size_t floats = static_cast<size_t>(num_row_floats());
    indices_.resize(2 * n);
    ratings_storage_.resize(n);
    plan_storage_.resize(static_cast<size_t>(shape.plan_bytes));
    rows_storage_.resize(floats);
    auto gradients = std::make_shared<std::vector<float>>(floats);
    predictions_storage_.resize(n);
    user_index_ = indices_.data();
    item_index_ = indices_.data() + n;
    ratings_ = ratings_storage_.data();
    plan_ = shape.plan_bytes > 0 ? plan_storage_.data() : nullptr;
    rows_ = rows_storage_.data();
    gradients_ = gradients->data();
    predictions_ = predictions_storage_.data();
    gradients_owner_ = std::shared_ptr<const void>(gradients, gradients->data());
  }

  Status result;                 // of the last Enqueue*, returned by Finish*
  double sq_error_sum = 0.0;     // of the last gradient
  bool queued = false;           // an Enqueue* not yet finished
  bool gradient_queued = false;  // which one

 private:
  std::vector<int32_t> indices_;
  std::vector<float> ratings_storage_;
  std::vector<unsigned char> plan_storage_;
  std::vector<float> rows_storage_;
  std::vector<float> predictions_storage_;
};

// Host data, host kernels: BatchGradient / Predict forward the caller's pointers untouched to the
// kCpu entry points, so training on the CPU costs exactly what a direct MfBatchGradient /
// MfPredict call costs; a staged step runs when it is enqueued.
class CpuMfWorkspace final : public MfDeviceWorkspace {
 public:
  explicit CpuMfWorkspace(const DeviceContext& ctx) : ctx_(ctx) {}

  Device device() const override { return Device::kCpu; }

  Status Reserve(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) override {
    return internal::ValidateMfReserveArgs(num_samples, dim, num_users, num_items);
  }

  StatusOr<std::unique_ptr<MfStagedStep>> Stage(const MfStageShape& shape) override {
    TS_RETURN_IF_ERROR(internal::ValidateMfStageShape(shape));
    return std::unique_ptr<MfStagedStep>(new CpuStagedStep(shape));
  }

  Status EnqueueGradient(MfStagedStep* step, const MfStepScalars& scalars) override {
    CpuStagedStep* s = static_cast<CpuStagedStep*>(step);
    const MfBatch b = s->HostBatch(scalars);
    TS_RETURN_IF_ERROR(internal::CheckMfHostIndices(b));
    s->result = MfBatchGradient(ctx_, b, s->gradients(), s->gradients() + s->num_user_floats(),
                                &s->sq_error_sum);
    s->queued = true;
    s->gradient_queued = true;
    return OkStatus();
  }

  Status FinishGradient(MfStagedStep* step, double* sq_error_sum) override {
    CpuStagedStep* s = static_cast<CpuStagedStep*>(step);
    TS_RETURN_IF_ERROR(CheckQueued(*s, /*gradient=*/true));
    s->queued = false;
    if (sq_error_sum != nullptr) *sq_error_sum = s->sq_error_sum;
    return s->result;
  }

  Status EnqueuePredict(MfStagedStep* step, const MfStepScalars& scalars) override {
    CpuStagedStep* s = static_cast<CpuStagedStep*>(step);
    const MfBatch b = s->HostBatch(scalars);
    TS_RETURN_IF_ERROR(internal::CheckMfHostIndices(b));
    s->result = MfPredict(ctx_, b, s->predictions());
    s->queued = true;
    s->gradient_queued = false;
    return OkStatus();
  }

  Status FinishPredict(MfStagedStep* step) override {
    CpuStagedStep* s = static_cast<CpuStagedStep*>(step);
    TS_RETURN_IF_ERROR(CheckQueued(*s, /*gradient=*/false));
    s->queued = false;
    return s->result;
  }

  Status BatchGradient(const MfBatch& host_batch, float* host_user_grads, float* host_item_grads,
                       double* sq_error_sum, bool* known_finite) override {
    double sq = 0.0;
    TS_RETURN_IF_ERROR(MfBatchGradient(ctx_, host_batch, host_user_grads, host_item_grads, &sq));
    if (sq_error_sum != nullptr) *sq_error_sum = sq;
    // A double sum of float squares: finite exactly when every error is (kernels/mf.h).
    if (known_finite != nullptr) *known_finite = std::isfinite(sq);
    return OkStatus();
  }

  Status Predict(const MfBatch& host_batch, float* host_predictions) override {
    return MfPredict(ctx_, host_batch, host_predictions);
  }

 private:
  static Status CheckQueued(const CpuStagedStep& s, bool gradient) {
    if (s.queued && s.gradient_queued == gradient) return OkStatus();
    return Status::FailedPrecondition(std::string("MfDeviceWorkspace: Finish") +
                                      (gradient ? "Gradient" : "Predict") +
                                      " without a matching Enqueue");
  }

  const DeviceContext ctx_;  // kCpu; its helper and scratch (if any) are borrowed
};

}  // namespace

MfBatch MfStagedStep::HostBatch(const MfStepScalars& scalars) const {
  MfBatch b;
  b.num_samples = shape_.num_samples;
  b.user_index = user_index_;
  b.item_index = item_index_;
  b.ratings = ratings_;
  b.dim = shape_.dim;
  b.user_rows = user_rows();
  b.num_users = shape_.num_users;
  b.item_rows = item_rows();
  b.num_items = shape_.num_items;
  b.global_mean = scalars.global_mean;
  b.l2 = scalars.l2;
  b.l2_bias = scalars.l2_bias;
  return b;
}

namespace internal {

Status ValidateMfReserveArgs(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) {
  if (num_samples < 0 || num_users < 0 || num_items < 0 || dim <= 0) {
    return Status::InvalidArgument(
        "MfDeviceWorkspace::Reserve: need sizes >= 0 and dim > 0, got num_samples=" +
        std::to_string(num_samples) + " dim=" + std::to_string(dim) +
        " num_users=" + std::to_string(num_users) + " num_items=" + std::to_string(num_items));
  }
  return OkStatus();
}

Status ValidateMfStageShape(const MfStageShape& shape) {
  TS_RETURN_IF_ERROR(
      ValidateMfReserveArgs(shape.num_samples, shape.dim, shape.num_users, shape.num_items));
  // Bound every count so that the byte sizes below cannot overflow (2^40 rows of 2^13 floats).
  constexpr int64_t kMaxCount = int64_t{1} << 40;
  if (shape.plan_bytes < 0 || shape.plan_bytes > kMaxCount || shape.num_samples > kMaxCount ||
      shape.num_users > kMaxCount || shape.num_items > kMaxCount || shape.dim > (1 << 13)) {
    return Status::InvalidArgument("MfDeviceWorkspace::Stage: sizes out of range (num_samples=" +
                                   std::to_string(shape.num_samples) +
                                   " dim=" + std::to_string(shape.dim) +
                                   " num_users=" + std::to_string(shape.num_users) +
                                   " num_items=" + std::to_string(shape.num_items) +
                                   " plan_bytes=" + std::to_string(shape.plan_bytes) + ")");
  }
  return OkStatus();
}

Status CheckMfHostIndices(const MfBatch& b) {
  TS_RETURN_IF_ERROR(ValidateMfBatch(b));
  return CheckMfIndices(b, 0, b.num_samples);
}

}  // namespace internal

StatusOr<std::unique_ptr<MfDeviceWorkspace>> MfDeviceWorkspace::Create(const DeviceContext& ctx) {
  switch (ctx.device) {
    case Device::kCpu:
      return std::unique_ptr<MfDeviceWorkspace>(new CpuMfWorkspace(ctx));
    case Device::kCuda:
      // Without CUDA this is FailedPrecondition("built without CUDA support").
      TS_RETURN_IF_ERROR(CheckCudaAvailable());
#if TESSERA_WITH_CUDA
      return internal::CreateMfCudaWorkspace(ctx);
#else
      return Status::FailedPrecondition("MfDeviceWorkspace on device cuda: built without CUDA");
#endif
  }
  return Status::InvalidArgument("MfDeviceWorkspace: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

}  // namespace tessera::kernels
