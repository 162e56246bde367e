// Dense optimizer updates for the workers' replicated dense parameters (DESIGN.md "One training
// step", step 6): after the all-reduce every worker holds the same summed gradient and applies the
// same update to its own replica of one flat float vector. The per-element math is
// optimizer_math.h's, shared with the sparse optimizers (Adam here is plain Adam: every element
// is updated every step, so one step counter serves the whole vector).
//
// Determinism: the update is elementwise, with no reduction and no data-dependent order (on the
// CPU its pieces run on the calling thread's OpenMP team, kernels/cpu_parallel.h, which changes
// no element's arithmetic), so replicas that start bit-identical and receive bit-identical
// gradients stay bit-identical (same binary on the same ISA: a compiler that contracts a * b + c
// into an FMA on one machine and not on another would break it, which is why replicas run one
// build).
//
// Memory: the caller owns the parameters, the gradients and the state (DenseOptimizerState, sized
// by DenseOptimizerStateFloats and set up by InitDenseOptimizerState, or the same slots in device
// memory for kCuda); nothing is allocated here.
// Thread-compatible: concurrent calls must not share a state or a parameter vector.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::kernels {

// Optimizer state of one dense parameter vector, owned by the caller (the worker keeps it beside
// the parameters and checkpoints both). Host memory.
struct DenseOptimizerState {
  // sgd: empty; adagrad: [acc(count)]; adam: [m(count) | v(count)].
  std::vector<float> slots;
  // adam: updates applied so far; the next one's bias correction uses t = step + 1.
  int64_t step = 0;
};

// Floats of DenseOptimizerState::slots for `count` parameters: sgd 0, adagrad count,
// adam 2 count; 0 for ftrl and rowwise-adagrad, which are not dense optimizers here
// (InvalidArgument below).
int64_t DenseOptimizerStateFloats(OptimizerKind kind, int64_t count);

// sgd, adagrad and adam update dense parameters; ftrl and rowwise-adagrad are sparse-row only.
bool IsDenseOptimizer(OptimizerKind kind);

// Sizes `state` for `count` parameters and sets its initial values (adagrad: initial_accumulator;
// adam: zero moments, step 0). InvalidArgument for params ValidateOptimizerParams rejects, for
// ftrl and rowwise-adagrad (sparse rows only), for count < 0 or a null state.
Status InitDenseOptimizerState(const OptimizerParams& p, int64_t count, DenseOptimizerState* state);

// params[i] <- update(params[i], grads[i]) for i in [0, count), with p's optimizer and `state`.
// REQUIRES: grads does not overlap params. InvalidArgument for bad params, ftrl or
// rowwise-adagrad, count < 0, null
// pointers with count > 0, or a state whose size is not DenseOptimizerStateFloats(p.kind, count)
// (nothing changes then). The state is host memory, so this form is kCpu only (InvalidArgument
// for another device: keep the state in the device's memory and use the form below).
Status ApplyDenseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* params,
                        const float* grads, int64_t count, DenseOptimizerState* state);
Status ApplyDenseUpdateCpu(const OptimizerParams& p, float* params, const float* grads,
                           int64_t count, DenseOptimizerState* state);

// The same update with the state's slots in the context's memory (device memory on kCuda):
// `slots` holds DenseOptimizerStateFloats(p.kind, count) floats laid out as
// DenseOptimizerState::slots (null allowed when that is 0), `step` is the Adam step counter
// (host memory, advanced by one per adam call). kCpu gives the bits of the form above.
// kCuda queues one kernel on ctx.stream and returns without a sync; the Adam step size is
// computed on the host (AdamStepSize, as on the CPU) and the file is compiled without fused
// multiply-adds (-fmad=false), so the CUDA update is the CPU's to the bit (IEEE sqrtf and
// division on both).
Status ApplyDenseUpdate(const DeviceContext& ctx, const OptimizerParams& p, float* params,
                        const float* grads, int64_t count, float* slots, int64_t* step);
Status ApplyDenseUpdateCpu(const OptimizerParams& p, float* params, const float* grads,
                           int64_t count, float* slots, int64_t* step);
#if TESSERA_WITH_CUDA
Status ApplyDenseUpdateCuda(const OptimizerParams& p, float* d_params, const float* d_grads,
                            int64_t count, float* d_slots, int64_t* step,
                            struct CUstream_st* stream);
#endif

namespace internal {
// Argument checks shared by the device implementations of ApplyDenseUpdate.
Status ValidateDenseUpdateArgs(const OptimizerParams& p, const float* params, const float* grads,
                               int64_t count, const DenseOptimizerState* state);
// The same for the slots form (pointer values only: slots may be device memory).
Status ValidateDenseSlotsArgs(const OptimizerParams& p, const float* params, const float* grads,
                              int64_t count, const float* slots, const int64_t* step);
}  // namespace internal

}  // namespace tessera::kernels
