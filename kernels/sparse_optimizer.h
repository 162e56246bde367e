// Sparse optimizer updates: apply one gradient row to each of a set of embedding rows in place.
// A row is [weights(dim) | optimizer state(OptimizerStateFloats(kind, dim))], contiguous; the
// caller (an embedding table) owns the rows and lays them out this way.
// Entry points: ApplySparseUpdate (dispatch on DeviceContext), ...Cpu, ...Cuda.
// Thread-compatible: concurrent calls must not touch the same rows.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::kernels {

enum class OptimizerKind { kSgd, kAdagrad };

// "sgd" | "adagrad"; anything else is InvalidArgument listing the choices.
StatusOr<OptimizerKind> ParseOptimizer(const std::string& name);
// "sgd" | "adagrad" ("unknown" for a value outside the enum).
const char* OptimizerName(OptimizerKind k);

struct OptimizerParams {
  OptimizerKind kind = OptimizerKind::kAdagrad;
  float lr = 0.05f;                  // learning rate; finite
  float eps = 1e-8f;                 // adagrad: added to sqrt(accumulator); >= 0
  float initial_accumulator = 0.0f;  // adagrad: starting value of every accumulator; >= 0
};

// InvalidArgument for an unknown kind, non-finite lr, or negative/non-finite eps or
// initial_accumulator. Every ApplySparseUpdate* calls it.
Status ValidateOptimizerParams(const OptimizerParams& p);

// Floats of optimizer state after the dim weights of a row: sgd 0, adagrad dim.
int OptimizerStateFloats(OptimizerKind kind, int dim);

// Initialises the state part of a freshly created row (host memory, OptimizerStateFloats
// floats): adagrad fills initial_accumulator, sgd writes nothing.
void InitOptimizerState(const OptimizerParams& p, float* state, int dim);

// Applies grads[i] (row i of a num_rows x dim row-major matrix) to the row at rows[i].
// kCpu: rows are updated in order i = 0..num_rows-1, so a row pointer that repeats gets its
// gradients applied one after another (deterministic). kCuda: every pointer must be distinct
// (see ApplySparseUpdateCuda); rows, the pointer array and grads are device memory.
// REQUIRES: each row has dim + OptimizerStateFloats(p.kind, dim) floats; grads do not overlap
// the rows. InvalidArgument for num_rows < 0, dim <= 0, null pointers with num_rows > 0 (on CPU
// also a null row pointer) or bad params; FailedPrecondition for kCuda in a build without CUDA.
Status ApplySparseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* const* rows,
                         const float* grads, int64_t num_rows, int dim);
Status ApplySparseUpdateCpu(const OptimizerParams& p, float* const* rows, const float* grads,
                            int64_t num_rows, int dim);
#if TESSERA_WITH_CUDA
// d_rows: device array of num_rows device pointers, all distinct (elements are updated in
// parallel; a repeated row would race). d_grads: device memory. Queued on `stream`; returns
// after the launch, without synchronising. Same formulas as the CPU (optimizer_math.h); results
// agree to float rounding (nvcc may fuse multiply-adds), not bitwise.
Status ApplySparseUpdateCuda(const OptimizerParams& p, float* const* d_rows, const float* d_grads,
                             int64_t num_rows, int dim, struct CUstream_st* stream);
#endif

namespace internal {
// Argument checks shared by the Cpu and Cuda entry points (pointer values only; never reads
// through them, as they may be device memory).
Status ValidateSparseUpdateArgs(const OptimizerParams& p, float* const* rows, const float* grads,
                                int64_t num_rows, int dim);
}  // namespace internal

}  // namespace tessera::kernels
