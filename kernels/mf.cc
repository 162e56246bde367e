#include "kernels/mf.h"

#include <string>

#include "core/fork_join.h"

namespace tessera::kernels {
namespace {

// Below ~1M multiply-adds (dim 32 at batch 16384) the split's two hand-overs and second pass
// over the rows cost what the second core saves (measured in-process on 2 cores).
constexpr int64_t kMfSplitMinWork = int64_t{1} << 20;

}  // namespace

Status ValidateMfBatch(const MfBatch& b) {
  if (b.num_samples < 0 || b.num_users < 0 || b.num_items < 0) {
    return Status::InvalidArgument(
        "MfBatch: sizes must be >= 0, got num_samples=" + std::to_string(b.num_samples) +
        " num_users=" + std::to_string(b.num_users) + " num_items=" + std::to_string(b.num_items));
  }
  if (b.dim <= 0) {
    return Status::InvalidArgument("MfBatch: dim must be > 0, got " + std::to_string(b.dim));
  }
  if (b.num_samples == 0) return OkStatus();
  if (b.user_index == nullptr || b.item_index == nullptr) {
    return Status::InvalidArgument("MfBatch: user_index and item_index must be non-null");
  }
  if (b.num_users == 0 || b.num_items == 0) {
    return Status::InvalidArgument("MfBatch: samples need num_users > 0 and num_items > 0");
  }
  if (b.user_rows == nullptr || b.item_rows == nullptr) {
    return Status::InvalidArgument("MfBatch: user_rows and item_rows must be non-null");
  }
  return OkStatus();
}

namespace internal {

bool MfGradientSplits(const DeviceContext& ctx, const MfBatch& b) {
  return ctx.device == Device::kCpu && ctx.helper != nullptr && ctx.scratch != nullptr &&
         b.num_samples * b.dim >= kMfSplitMinWork;
}

Status ValidateMfGradientArgs(const MfBatch& b, const float* user_grads, const float* item_grads) {
  TS_RETURN_IF_ERROR(ValidateMfBatch(b));
  if (b.num_samples > 0 && b.ratings == nullptr) {
    return Status::InvalidArgument("MfBatchGradient: ratings must be non-null");
  }
  if ((b.num_users > 0 && user_grads == nullptr) || (b.num_items > 0 && item_grads == nullptr)) {
    return Status::InvalidArgument("MfBatchGradient: user_grads and item_grads must be non-null");
  }
  return OkStatus();
}

Status ValidateMfPredictArgs(const MfBatch& b, const float* predictions) {
  TS_RETURN_IF_ERROR(ValidateMfBatch(b));
  if (b.num_samples > 0 && predictions == nullptr) {
    return Status::InvalidArgument("MfPredict: predictions must be non-null");
  }
  return OkStatus();
}

}  // namespace internal

namespace {

// MfBatchGradientCpu over the context's two threads when the batch is large enough: the
// residuals of each half of the samples, then the user rows on one thread and the item rows on
// the other, each summed in sample order as the one-pass kernel does (the same bits).
Status MfBatchGradientCpuSplit(const DeviceContext& ctx, const MfBatch& b, float* user_grads,
                               float* item_grads, double* sq_error_sum) {
  if (!internal::MfGradientSplits(ctx, b)) {
    return MfBatchGradientCpu(b, user_grads, item_grads, sq_error_sum);
  }
  float* errors = ctx.scratch->Floats(static_cast<size_t>(b.num_samples));
  const int64_t half = b.num_samples / 2;
  Status own, helper;
  ctx.helper->Run([&] { own = MfErrorsCpu(b, 0, half, errors); },
                  [&] { helper = MfErrorsCpu(b, half, b.num_samples, errors); });
  TS_RETURN_IF_ERROR(own);
  TS_RETURN_IF_ERROR(helper);
  ctx.helper->Run([&] { own = MfSideGradsCpu(b, errors, MfSide::kUser, user_grads); },
                  [&] { helper = MfSideGradsCpu(b, errors, MfSide::kItem, item_grads); });
  TS_RETURN_IF_ERROR(own);
  TS_RETURN_IF_ERROR(helper);
  if (sq_error_sum != nullptr) *sq_error_sum = MfSquaredErrorSum(errors, b.num_samples);
  return OkStatus();
}

}  // namespace

Status MfBatchGradient(const DeviceContext& ctx, const MfBatch& b, float* user_grads,
                       float* item_grads, double* sq_error_sum, const MfGradientPlan* plan) {
  switch (ctx.device) {
    case Device::kCpu:
      return MfBatchGradientCpuSplit(ctx, b, user_grads, item_grads, sq_error_sum);
    case Device::kCuda:
#if TESSERA_WITH_CUDA
      if (plan != nullptr) {
        return MfBatchGradientDeterministicCuda(b, *plan, user_grads, item_grads, sq_error_sum,
                                                ctx.stream);
      }
      if (ctx.deterministic) {
        return Status::FailedPrecondition(
            "MfBatchGradient: a deterministic CUDA context needs the batch's segment plan "
            "(MfGradientPlan); the atomic kernel is not deterministic");
      }
      return MfBatchGradientCuda(b, user_grads, item_grads, sq_error_sum, ctx.stream);
#else
      (void)plan;
      return Status::FailedPrecondition("MfBatchGradient on device cuda: built without CUDA");
#endif
  }
  return Status::InvalidArgument("MfBatchGradient: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

Status MfPredict(const DeviceContext& ctx, const MfBatch& b, float* predictions) {
  switch (ctx.device) {
    case Device::kCpu:
      return MfPredictCpu(b, predictions);
    case Device::kCuda:
#if TESSERA_WITH_CUDA
      return MfPredictCuda(b, predictions, ctx.stream);
#else
      return Status::FailedPrecondition("MfPredict on device cuda: built without CUDA");
#endif
  }
  return Status::InvalidArgument("MfPredict: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

}  // namespace tessera::kernels
