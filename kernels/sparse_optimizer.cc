#include "kernels/sparse_optimizer.h"

#include <cmath>

namespace tessera::kernels {

StatusOr<OptimizerKind> ParseOptimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adagrad") return OptimizerKind::kAdagrad;
  return Status::InvalidArgument("unknown optimizer '" + name + "'; choices: sgd, adagrad");
}

const char* OptimizerName(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kAdagrad:
      return "adagrad";
  }
  return "unknown";
}

Status ValidateOptimizerParams(const OptimizerParams& p) {
  if (p.kind != OptimizerKind::kSgd && p.kind != OptimizerKind::kAdagrad) {
    return Status::InvalidArgument("unknown optimizer kind " +
                                   std::to_string(static_cast<int>(p.kind)));
  }
  if (!std::isfinite(p.lr)) return Status::InvalidArgument("optimizer lr must be finite");
  if (p.kind == OptimizerKind::kAdagrad) {
    if (!std::isfinite(p.eps) || p.eps < 0.0f) {
      return Status::InvalidArgument("adagrad eps must be finite and >= 0, got " +
                                     std::to_string(p.eps));
    }
    if (!std::isfinite(p.initial_accumulator) || p.initial_accumulator < 0.0f) {
      return Status::InvalidArgument("adagrad initial_accumulator must be finite and >= 0, got " +
                                     std::to_string(p.initial_accumulator));
    }
  }
  return OkStatus();
}

int OptimizerStateFloats(OptimizerKind kind, int dim) {
  return kind == OptimizerKind::kAdagrad ? dim : 0;
}

void InitOptimizerState(const OptimizerParams& p, float* state, int dim) {
  if (p.kind != OptimizerKind::kAdagrad) return;
  for (int j = 0; j < dim; ++j) state[j] = p.initial_accumulator;
}

namespace internal {

Status ValidateSparseUpdateArgs(const OptimizerParams& p, float* const* rows, const float* grads,
                                int64_t num_rows, int dim) {
  TS_RETURN_IF_ERROR(ValidateOptimizerParams(p));
  if (num_rows < 0) {
    return Status::InvalidArgument("ApplySparseUpdate: num_rows must be >= 0, got " +
                                   std::to_string(num_rows));
  }
  if (dim <= 0) {
    return Status::InvalidArgument("ApplySparseUpdate: dim must be > 0, got " +
                                   std::to_string(dim));
  }
  if (num_rows > 0 && (rows == nullptr || grads == nullptr)) {
    return Status::InvalidArgument("ApplySparseUpdate: rows and grads must be non-null");
  }
  return OkStatus();
}

}  // namespace internal

Status ApplySparseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* const* rows,
                         const float* grads, int64_t num_rows, int dim) {
  switch (ctx.device) {
    case Device::kCpu:
      return ApplySparseUpdateCpu(p, rows, grads, num_rows, dim);
    case Device::kCuda:
#if TESSERA_WITH_CUDA
      return ApplySparseUpdateCuda(p, rows, grads, num_rows, dim, ctx.stream);
#else
      return Status::FailedPrecondition("ApplySparseUpdate on device cuda: built without CUDA");
#endif
  }
  return Status::InvalidArgument("ApplySparseUpdate: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

}  // namespace tessera::kernels
