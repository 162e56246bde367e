// Sparse optimizer updates: apply one gradient row to each of a set of embedding rows in place.
// A row is [weights(dim) | optimizer state(OptimizerStateFloats(kind, dim))], contiguous; the
// caller (an embedding table) owns the rows and lays them out this way. State per kind:
//   sgd      none
//   adagrad  [acc(dim)]                    squared-gradient sums
//   rowwise-adagrad [acc(1)]               sum of the row's mean squared gradients
//   adam     [m(dim) | v(dim) | step(1)]   moments; step = updates this row has had, a float
//   ftrl     [z(dim) | n(dim)]             FTRL-proximal z and sum of squared gradients
// Adam is lazy (TF LazyAdam, PyTorch SparseAdam): only rows in a push change, and the bias
// correction uses the row's own step. The step is stored as a float holding an integer: exact up
// to 2^24 updates of one row, after which it stays at 2^24 (2^24 + 1 rounds back). By then
// beta^t < 1e-7 for any beta <= 0.999999, and for the usual betas (0.9, 0.999) 1 - beta^t is
// exactly 1 in float, so the frozen count does not change the update. A float keeps the row all
// floats (checkpoints and exports need no special case).
// FTRL keeps w == FtrlWeight(z, n) (optimizer_math.h): the weight slot always holds the weight the
// state gives. A new row with z = n = 0 has weight 0, so rows whose initial weights are not all 0
// must be initialised with InitOptimizerStateForRow, which derives z from the weights.
// Entry points: ApplySparseUpdate (dispatch on DeviceContext), ...Cpu, ...Cuda.
// Thread-compatible: concurrent calls must not touch the same rows.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::kernels {

enum class OptimizerKind { kSgd, kAdagrad, kAdam, kFtrl, kRowwiseAdagrad };

// "sgd" | "adagrad" | "adam" | "ftrl" | "rowwise-adagrad"; anything else is InvalidArgument
// listing the choices.
StatusOr<OptimizerKind> ParseOptimizer(const std::string& name);
// "sgd" | "adagrad" | "adam" | "ftrl" | "rowwise-adagrad" ("unknown" for a value outside the enum).
const char* OptimizerName(OptimizerKind k);

struct OptimizerParams {
  OptimizerKind kind = OptimizerKind::kAdagrad;
  float lr = 0.05f;                  // learning rate; finite (ftrl: alpha, > 0)
  float eps = 1e-8f;                 // (rowwise-)adagrad, adam: added to sqrt(acc) / sqrt(v); >= 0
  float initial_accumulator = 0.0f;  // (rowwise-)adagrad: starting value of every accumulator
  float beta1 = 0.9f;                // adam: decay of the first moment; in [0, 1)
  float beta2 = 0.999f;              // adam: decay of the second moment; in [0, 1)
  float ftrl_beta = 1.0f;            // ftrl: rate alpha / (ftrl_beta + sqrt(n)); > 0
  float l1 = 0.0f;                   // ftrl: L1 strength lambda_1 (sparsity); >= 0
  float l2 = 0.0f;                   // ftrl: L2 strength lambda_2; >= 0
};

// InvalidArgument for an unknown kind, non-finite lr, or (for the fields the kind uses, as
// listed above) a value outside its range. Every ApplySparseUpdate* calls it.
Status ValidateOptimizerParams(const OptimizerParams& p);

// Floats of optimizer state after the dim weights of a row: sgd 0, adagrad dim, adam 2 dim + 1,
// ftrl 2 dim, rowwise-adagrad 1.
int OptimizerStateFloats(OptimizerKind kind, int dim);

// Initialises the state part of a freshly created row (host memory, OptimizerStateFloats
// floats): (rowwise-)adagrad fills initial_accumulator, adam zeroes m, v and step, ftrl zeroes z
// and n (consistent only with all-zero weights: see InitOptimizerStateForRow), sgd writes nothing.
void InitOptimizerState(const OptimizerParams& p, float* state, int dim);

// Initialises the state of a freshly created row [weights(dim) | state] (host memory) whose
// weights are already set. The same as InitOptimizerState(p, row + dim, dim) except for ftrl:
// for w_j != 0, z_j = FtrlZForWeight(w_j) and w_j is rewritten to FtrlWeight(z_j, 0); n_j = 0.
// The new w_j differs from the initial one only by the float rounding of z_j (a few ulps of
// |z_j| / (ftrl_beta / lr + l2); 0 when |w_j| is too small to lift |z_j| above l1 in float), and
// the row satisfies w == FtrlWeight(z, n) from the start.
// REQUIRES: p valid (ValidateOptimizerParams).
void InitOptimizerStateForRow(const OptimizerParams& p, float* row, int dim);

// Applies grads[i] (row i of a num_rows x dim row-major matrix) to the row at rows[i].
// kCpu: rows are updated in order i = 0..num_rows-1, so a row pointer that repeats gets its
// gradients applied one after another (deterministic). With a helper in ctx and at least 2^20
// floats (num_rows x dim) the rows are split over the two threads by RowLane (lane 0 on the
// caller, lane 1 on the helper): every row still gets its gradients in order i, so the result
// is bit for bit that of ApplySparseUpdateCpu. kCuda: every pointer must be distinct
// (see ApplySparseUpdateCuda); rows, the pointer array and grads are device memory.
// REQUIRES: each row has dim + OptimizerStateFloats(p.kind, dim) floats; grads do not overlap
// the rows. InvalidArgument for num_rows < 0, dim <= 0, null pointers with num_rows > 0 (on CPU
// also a null row pointer) or bad params; FailedPrecondition for kCuda in a build without CUDA.
// With `first_non_finite` (kCpu only: InvalidArgument on kCuda), *first_non_finite receives the
// index of the first row whose update wrote a NaN or infinity into its weights, or num_rows: the
// updates flag the weights they write while they are in registers (kernels/finite.h), and only
// when a flag is set are the rows scanned for the first non-finite one (a row given twice: its
// first index). The rows must be finite before the call, as a server's are. The
// optimizer state is not looked at: a non-finite state shows in the weights at the row's next
// update or, where it cannot (an Adagrad accumulator at inf), at the next checkpoint, whose
// writer checks whole rows.
Status ApplySparseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* const* rows,
                         const float* grads, int64_t num_rows, int dim,
                         int64_t* first_non_finite = nullptr);
Status ApplySparseUpdateCpu(const OptimizerParams& p, float* const* rows, const float* grads,
                            int64_t num_rows, int dim, int64_t* first_non_finite = nullptr);
// One lane of ApplySparseUpdateCpu, for splitting an update over threads: applies only the
// gradients of rows with RowLane(rows[i], lanes) == lane, in order i = 0..num_rows-1. The lane
// is a function of the row's address, so every update of one row (a repeated pointer too) falls
// in the same lane: calls for lanes 0..lanes-1 on different threads at once touch disjoint rows
// and leave every row exactly as one ApplySparseUpdateCpu call does. Errors as above, checked on
// all rows, so every lane fails alike and none writes. *first_non_finite: among this lane's rows.
int RowLane(const float* row, int lanes);
Status ApplySparseUpdateCpuLane(const OptimizerParams& p, float* const* rows, const float* grads,
                                int64_t num_rows, int dim, int lane, int lanes,
                                int64_t* first_non_finite = nullptr);
#if TESSERA_WITH_CUDA
// d_rows: device array of num_rows device pointers, all distinct (elements are updated in
// parallel; a repeated row would race). d_grads: device memory. Queued on `stream` (adam: two
// kernels, the second advancing each row's step); returns after the launch, without
// synchronising. Same formulas as the CPU (optimizer_math.h); results agree to float rounding
// (nvcc may fuse multiply-adds; device powf/sqrtf may differ from the host's by an ulp), not
// bitwise.
Status ApplySparseUpdateCuda(const OptimizerParams& p, float* const* d_rows, const float* d_grads,
                             int64_t num_rows, int dim, struct CUstream_st* stream);
#endif

namespace internal {
// True when ApplySparseUpdate(ctx, ...) splits the rows over ctx's two threads (kCpu with a
// helper, num_rows x dim >= 2^20).
bool SparseUpdateSplits(const DeviceContext& ctx, int64_t num_rows, int dim);
// Argument checks shared by the Cpu and Cuda entry points (pointer values only; never reads
// through them, as they may be device memory).
Status ValidateSparseUpdateArgs(const OptimizerParams& p, float* const* rows, const float* grads,
                                int64_t num_rows, int dim);
}  // namespace internal

}  // namespace tessera::kernels
