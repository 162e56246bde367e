#include "kernels/sparse_optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/fork_join.h"
#include "kernels/optimizer_math.h"

namespace tessera::kernels {

StatusOr<OptimizerKind> ParseOptimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adagrad") return OptimizerKind::kAdagrad;
  if (name == "adam") return OptimizerKind::kAdam;
  if (name == "ftrl") return OptimizerKind::kFtrl;
  if (name == "rowwise-adagrad") return OptimizerKind::kRowwiseAdagrad;
  return Status::InvalidArgument("unknown optimizer '" + name +
                                 "'; choices: sgd, adagrad, adam, ftrl, rowwise-adagrad");
}

const char* OptimizerName(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::kSgd:
      return "sgd";
    case OptimizerKind::kAdagrad:
      return "adagrad";
    case OptimizerKind::kAdam:
      return "adam";
    case OptimizerKind::kFtrl:
      return "ftrl";
    case OptimizerKind::kRowwiseAdagrad:
      return "rowwise-adagrad";
  }
  return "unknown";
}

namespace {

// Updates below this many floats (rows x dim) stay on the calling thread. In-process MF on 2
// cores (batches of 16384, ~15k user rows) gained from the split at dim 128 (2.25M vs 1.3M
// ratings/s) and lost at dim 32, where the hand-over costs about what the helper saves.
constexpr uint64_t kSparseSplitMinFloats = uint64_t{1} << 20;

Status CheckRange(bool in_range, const char* optimizer, const char* field, const char* range,
                  float value) {
  if (in_range && std::isfinite(value)) return OkStatus();
  return Status::InvalidArgument(std::string(optimizer) + " " + field + " must be finite and " +
                                 range + ", got " + std::to_string(value));
}

}  // namespace

Status ValidateOptimizerParams(const OptimizerParams& p) {
  switch (p.kind) {
    case OptimizerKind::kSgd:
      break;
    case OptimizerKind::kAdagrad:
    case OptimizerKind::kRowwiseAdagrad: {
      const char* name = OptimizerName(p.kind);
      TS_RETURN_IF_ERROR(CheckRange(p.eps >= 0.0f, name, "eps", ">= 0", p.eps));
      TS_RETURN_IF_ERROR(CheckRange(p.initial_accumulator >= 0.0f, name, "initial_accumulator",
                                    ">= 0", p.initial_accumulator));
      break;
    }
    case OptimizerKind::kAdam:
      TS_RETURN_IF_ERROR(CheckRange(p.eps >= 0.0f, "adam", "eps", ">= 0", p.eps));
      TS_RETURN_IF_ERROR(
          CheckRange(p.beta1 >= 0.0f && p.beta1 < 1.0f, "adam", "beta1", "in [0, 1)", p.beta1));
      TS_RETURN_IF_ERROR(
          CheckRange(p.beta2 >= 0.0f && p.beta2 < 1.0f, "adam", "beta2", "in [0, 1)", p.beta2));
      break;
    case OptimizerKind::kFtrl:
      // alpha divides: it must be positive, and ftrl_beta > 0 keeps the denominator of the
      // weight positive before the first gradient (n = 0).
      TS_RETURN_IF_ERROR(CheckRange(p.lr > 0.0f, "ftrl", "lr (alpha)", "> 0", p.lr));
      TS_RETURN_IF_ERROR(CheckRange(p.ftrl_beta > 0.0f, "ftrl", "ftrl_beta", "> 0", p.ftrl_beta));
      TS_RETURN_IF_ERROR(CheckRange(p.l1 >= 0.0f, "ftrl", "l1", ">= 0", p.l1));
      TS_RETURN_IF_ERROR(CheckRange(p.l2 >= 0.0f, "ftrl", "l2", ">= 0", p.l2));
      break;
    default:
      return Status::InvalidArgument("unknown optimizer kind " +
                                     std::to_string(static_cast<int>(p.kind)));
  }
  if (!std::isfinite(p.lr)) return Status::InvalidArgument("optimizer lr must be finite");
  return OkStatus();
}

int OptimizerStateFloats(OptimizerKind kind, int dim) {
  switch (kind) {
    case OptimizerKind::kSgd:
      return 0;
    case OptimizerKind::kAdagrad:
      return dim;
    case OptimizerKind::kAdam:
      return 2 * dim + 1;
    case OptimizerKind::kFtrl:
      return 2 * dim;
    case OptimizerKind::kRowwiseAdagrad:
      return 1;
  }
  return 0;
}

void InitOptimizerState(const OptimizerParams& p, float* state, int dim) {
  switch (p.kind) {
    case OptimizerKind::kSgd:
      return;
    case OptimizerKind::kAdagrad:
    case OptimizerKind::kRowwiseAdagrad:
      std::fill(state, state + OptimizerStateFloats(p.kind, dim), p.initial_accumulator);
      return;
    case OptimizerKind::kAdam:
    case OptimizerKind::kFtrl:
      std::fill(state, state + OptimizerStateFloats(p.kind, dim), 0.0f);
      return;
  }
}

void InitOptimizerStateForRow(const OptimizerParams& p, float* row, int dim) {
  float* state = row + dim;
  InitOptimizerState(p, state, dim);
  if (p.kind != OptimizerKind::kFtrl) return;
  const FtrlParams ftrl{p.lr, p.ftrl_beta, p.l1, p.l2};
  for (int j = 0; j < dim; ++j) {
    if (row[j] == 0.0f) continue;             // z = 0 already gives weight 0
    state[j] = FtrlZForWeight(row[j], ftrl);  // z; n (state[dim + j]) stays 0
    row[j] = FtrlWeight(state[j], 0.0f, ftrl);
  }
}

namespace internal {

bool SparseUpdateSplits(const DeviceContext& ctx, int64_t num_rows, int dim) {
  return ctx.device == Device::kCpu && ctx.helper != nullptr && num_rows > 0 && dim > 0 &&
         static_cast<uint64_t>(num_rows) * static_cast<uint64_t>(dim) >= kSparseSplitMinFloats;
}

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

namespace {

// ApplySparseUpdateCpu over the context's threads: lane 0 on the caller, lane 1 on the helper
// (RowLane keeps every update of one row in one lane, in order, so the bits are the same).
Status ApplySparseUpdateCpuSplit(const DeviceContext& ctx, const OptimizerParams& p,
                                 float* const* rows, const float* grads, int64_t num_rows, int dim,
                                 int64_t* first_non_finite) {
  if (!internal::SparseUpdateSplits(ctx, num_rows, dim)) {
    return ApplySparseUpdateCpu(p, rows, grads, num_rows, dim, first_non_finite);
  }
  Status own, other;
  int64_t own_bad = num_rows, other_bad = num_rows;
  int64_t* check_own = first_non_finite != nullptr ? &own_bad : nullptr;
  int64_t* check_other = first_non_finite != nullptr ? &other_bad : nullptr;
  ctx.helper->Run(
      [&] { own = ApplySparseUpdateCpuLane(p, rows, grads, num_rows, dim, 0, 2, check_own); },
      [&] { other = ApplySparseUpdateCpuLane(p, rows, grads, num_rows, dim, 1, 2, check_other); });
  if (first_non_finite != nullptr) *first_non_finite = std::min(own_bad, other_bad);
  return own.ok() ? other : own;
}

}  // namespace

Status ApplySparseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* const* rows,
                         const float* grads, int64_t num_rows, int dim, int64_t* first_non_finite) {
  switch (ctx.device) {
    case Device::kCpu:
      return ApplySparseUpdateCpuSplit(ctx, p, rows, grads, num_rows, dim, first_non_finite);
    case Device::kCuda:
      if (first_non_finite != nullptr) {
        return Status::InvalidArgument("ApplySparseUpdate: the finite check runs on kCpu only");
      }
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
