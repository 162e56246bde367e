#include "kernels/dense_optimizer.h"

#include <algorithm>
#include <string>

namespace tessera::kernels {

int64_t DenseOptimizerStateFloats(OptimizerKind kind, int64_t count) {
  switch (kind) {
    case OptimizerKind::kSgd:
    case OptimizerKind::kFtrl:
    case OptimizerKind::kRowwiseAdagrad:
      return 0;
    case OptimizerKind::kAdagrad:
      return count;
    case OptimizerKind::kAdam:
      return 2 * count;
  }
  return 0;
}

bool IsDenseOptimizer(OptimizerKind kind) {
  return kind == OptimizerKind::kSgd || kind == OptimizerKind::kAdagrad ||
         kind == OptimizerKind::kAdam;
}

namespace {

Status ValidateDenseParams(const OptimizerParams& p) {
  TS_RETURN_IF_ERROR(ValidateOptimizerParams(p));
  if (!IsDenseOptimizer(p.kind)) {
    return Status::InvalidArgument(std::string(OptimizerName(p.kind)) +
                                   " is a sparse-row optimizer; dense parameters take sgd, "
                                   "adagrad or adam");
  }
  return OkStatus();
}

}  // namespace

Status InitDenseOptimizerState(const OptimizerParams& p, int64_t count,
                               DenseOptimizerState* state) {
  TS_RETURN_IF_ERROR(ValidateDenseParams(p));
  if (count < 0) {
    return Status::InvalidArgument("InitDenseOptimizerState: count must be >= 0, got " +
                                   std::to_string(count));
  }
  if (state == nullptr) return Status::InvalidArgument("InitDenseOptimizerState: null state");
  const float initial = p.kind == OptimizerKind::kAdagrad ? p.initial_accumulator : 0.0f;
  state->slots.assign(static_cast<size_t>(DenseOptimizerStateFloats(p.kind, count)), initial);
  state->step = 0;
  return OkStatus();
}

Status ApplyDenseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* params,
                        const float* grads, int64_t count, DenseOptimizerState* state) {
  switch (ctx.device) {
    case Device::kCpu:
      return ApplyDenseUpdateCpu(p, params, grads, count, state);
    case Device::kCuda:
      return Status::InvalidArgument(
          "ApplyDenseUpdate on device cuda: a DenseOptimizerState is host memory; pass the "
          "slots in device memory");
  }
  return Status::InvalidArgument("ApplyDenseUpdate: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

Status ApplyDenseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* params,
                        const float* grads, int64_t count, float* slots, int64_t* step) {
  switch (ctx.device) {
    case Device::kCpu:
      return ApplyDenseUpdateCpu(p, params, grads, count, slots, step);
    case Device::kCuda:
#if TESSERA_WITH_CUDA
      return ApplyDenseUpdateCuda(p, params, grads, count, slots, step, ctx.stream);
#else
      return Status::FailedPrecondition("ApplyDenseUpdate on device cuda: built without CUDA");
#endif
  }
  return Status::InvalidArgument("ApplyDenseUpdate: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

namespace internal {

Status ValidateDenseSlotsArgs(const OptimizerParams& p, const float* params, const float* grads,
                              int64_t count, const float* slots, const int64_t* step) {
  TS_RETURN_IF_ERROR(ValidateDenseParams(p));
  if (count < 0) {
    return Status::InvalidArgument("ApplyDenseUpdate: count must be >= 0, got " +
                                   std::to_string(count));
  }
  if (step == nullptr) return Status::InvalidArgument("ApplyDenseUpdate: null step");
  if (count > 0 && (params == nullptr || grads == nullptr)) {
    return Status::InvalidArgument("ApplyDenseUpdate: params and grads must be non-null");
  }
  if (DenseOptimizerStateFloats(p.kind, count) > 0 && slots == nullptr) {
    return Status::InvalidArgument("ApplyDenseUpdate: null optimizer slots");
  }
  return OkStatus();
}

Status ValidateDenseUpdateArgs(const OptimizerParams& p, const float* params, const float* grads,
                               int64_t count, const DenseOptimizerState* state) {
  TS_RETURN_IF_ERROR(ValidateDenseParams(p));
  if (count < 0) {
    return Status::InvalidArgument("ApplyDenseUpdate: count must be >= 0, got " +
                                   std::to_string(count));
  }
  if (state == nullptr) return Status::InvalidArgument("ApplyDenseUpdate: null state");
  if (count > 0 && (params == nullptr || grads == nullptr)) {
    return Status::InvalidArgument("ApplyDenseUpdate: params and grads must be non-null");
  }
  const int64_t want = DenseOptimizerStateFloats(p.kind, count);
  if (static_cast<int64_t>(state->slots.size()) != want) {
    return Status::InvalidArgument(
        "ApplyDenseUpdate: state has " + std::to_string(state->slots.size()) + " floats, " +
        OptimizerName(p.kind) + " over " + std::to_string(count) + " parameters needs " +
        std::to_string(want) + " (InitDenseOptimizerState sizes it)");
  }
  return OkStatus();
}

}  // namespace internal

}  // namespace tessera::kernels
