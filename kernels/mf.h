// Biased matrix factorization kernels: batch gradient and prediction for
// r_hat(u, i) = mu + b_u + b_i + p_u . q_i (per-sample math in kernels/mf_math.h).
// The caller gathers the rows a batch touches into dense user/item matrices (row layout
// [factors(dim) | bias], stride dim + 1) and owns every buffer; kernels never allocate.
// For kCuda every pointer inside MfBatch and every output pointer is device memory.
// Thread-compatible: concurrent calls must not share output buffers.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/segments.h"

namespace tessera::kernels {

struct MfBatch {
  int64_t num_samples = 0;
  const int32_t* user_index = nullptr;  // sample -> row in user_rows, in [0, num_users)
  const int32_t* item_index = nullptr;  // sample -> row in item_rows, in [0, num_items)
  const float* ratings = nullptr;       // observed r per sample (gradient only; predict ignores)
  int dim = 0;                          // factors; row stride is dim + 1 (bias last)
  const float* user_rows = nullptr;     // num_users x (dim + 1)
  int64_t num_users = 0;
  const float* item_rows = nullptr;  // num_items x (dim + 1)
  int64_t num_items = 0;
  float global_mean = 0.f;  // mu
  float l2 = 0.f;           // regularisation of the factors, applied once per sample (see below)
  float l2_bias = 0.f;      // regularisation of the biases, applied once per sample
};

// InvalidArgument for negative sizes, dim <= 0, or a null pointer that a non-empty batch
// needs (indices, rows). Reads no pointer, so it works for host and device batches. Index
// values are range-checked by the CPU kernels only (see MfBatchGradientCuda).
Status ValidateMfBatch(const MfBatch& b);

// What the deterministic CUDA gradient needs besides the batch, all in device memory: the
// batch's segment plans (kernels/segments.h; built on the host with SegmentPlan::Build from the
// host copies of user_index over num_users rows and item_index over num_items rows, then
// uploaded, e.g. with DeviceSegments) and scratch for the per-sample residuals.
struct MfGradientPlan {
  SegmentsView users;       // for each user row, its samples in sample order
  SegmentsView items;       // for each item row, its samples in sample order
  float* errors = nullptr;  // scratch: num_samples floats
};

// Gradients of 0.5 * (r - r_hat)^2 + 0.5 * l2 * (|p_u|^2 + |q_i|^2) + 0.5 * l2_bias * (b_u^2 +
// b_i^2) for each sample, summed per row, written to user_grads (num_users x (dim + 1)) and
// item_grads (num_items x (dim + 1)), which are overwritten (rows no sample touches get zeros). A
// row used by k samples therefore gets k times the l2 terms. *sq_error_sum = sum over samples of (r
// - r_hat)^2, accumulated in double; sq_error_sum may be null when not wanted. CPU: samples are
// accumulated in index order, so the result is deterministic. REQUIRES: user_grads and item_grads
// overlap neither each other nor the batch's inputs. InvalidArgument for a bad batch
// (ValidateMfBatch), null ratings with samples, null grads with rows, or (CPU) an index out of
// range, in which case no output is written.
// kCpu with a helper thread and scratch in ctx and num_samples * dim >= 2^20: split over the two
// threads (MfErrorsCpu on each half of the samples, then MfSideGradsCpu for the users on the
// calling thread and for the items on the helper), the same bits as MfBatchGradientCpu; the
// errors live in ctx.scratch. A bad index then may leave scratch written, never an output.
// kCuda: with a `plan` (device memory, see MfGradientPlan) MfBatchGradientDeterministicCuda,
// else MfBatchGradientCuda (atomics); a ctx.deterministic context without a plan is
// FailedPrecondition, never silently the atomic path. kCpu ignores `plan` (always deterministic).
// The worker's finite check on kCpu: *sq_error_sum is a double sum of float errors, finite
// exactly when every error is. With finite rows (the servers write no other) a gradient is
// non-finite only through a non-finite error or an overflow of error x factor; the latter makes
// the weight the server updates from it non-finite, and the server's check stops the job at the
// same step (kernels/sparse_optimizer.h).
Status MfBatchGradient(const DeviceContext& ctx, const MfBatch& b, float* user_grads,
                       float* item_grads, double* sq_error_sum,
                       const MfGradientPlan* plan = nullptr);
Status MfBatchGradientCpu(const MfBatch& b, float* user_grads, float* item_grads,
                          double* sq_error_sum);

// The same gradient in two passes, so that one batch can be split over two threads and still
// give MfBatchGradientCpu's bits (MfBatchGradient does so with a helper in its context):
// MfErrorsCpu writes errors[s] = r - r_hat for the samples in [begin, end) (the caller splits [0,
// num_samples) among calls); then MfSideGradsCpu, once per side, writes that side's gradient rows
// (user_grads or item_grads above, overwritten) from the errors, adding the samples in index order
// as the one-pass kernel does. The two sides write disjoint buffers and may run at the same time.
// MfSquaredErrorSum(errors, n) is the double sum of MfBatchGradientCpu's *sq_error_sum, in the same
// order. InvalidArgument as for
// MfBatchGradientCpu (a bad range [begin, end) too), in which case no output is written.
enum class MfSide { kUser, kItem };
Status MfErrorsCpu(const MfBatch& b, int64_t begin, int64_t end, float* errors);
Status MfSideGradsCpu(const MfBatch& b, const float* errors, MfSide side, float* grads);
double MfSquaredErrorSum(const float* errors, int64_t n);

// predictions[s] = mu + b_u + b_i + p_u . q_i for every sample (unclipped).
// InvalidArgument as above, or for null predictions with samples.
Status MfPredict(const DeviceContext& ctx, const MfBatch& b, float* predictions);
Status MfPredictCpu(const MfBatch& b, float* predictions);

#if TESSERA_WITH_CUDA
// Device twins: every pointer in `b` and every output is device memory; work is queued on
// `stream` (outputs are zeroed with cudaMemsetAsync first) and the call returns after the
// launch without synchronising. Per-row sums use float atomicAdd and the error sum a double
// atomicAdd per block, so results are NOT bitwise reproducible run to run; they match the CPU
// to float rounding. Index values are not checked on the host (they live on the device):
// REQUIRES in range; a sample with an out-of-range index is skipped rather than read (the
// gradient ignores it, the prediction is NaN).
Status MfBatchGradientCuda(const MfBatch& b, float* d_user_grads, float* d_item_grads,
                           double* d_sq_error_sum, struct CUstream_st* stream);
Status MfPredictCuda(const MfBatch& b, float* d_predictions, struct CUstream_st* stream);

// MfBatchGradientCuda's outputs with NO atomics, so two runs on the same GPU model (and build)
// give the same bits: residuals per sample into plan.errors, then each gradient element sums its
// row's samples in sample order (the CPU's order; the CPU's bits where the residuals agree, but
// the residuals' dot product is a warp butterfly and nvcc fuses multiply-adds, so they match
// the CPU to float rounding only), and *d_sq_error_sum is reduced by one block in a fixed order.
// Every output element is written (no memset). InvalidArgument as MfBatchGradientCuda, or for a
// plan whose sizes are not the batch's (num_users / num_items rows, num_samples positions) or
// null arrays. REQUIRES: the plans are those of the batch's index arrays (not checked: they are
// on the device), and plan.errors overlaps nothing else.
Status MfBatchGradientDeterministicCuda(const MfBatch& b, const MfGradientPlan& plan,
                                        float* d_user_grads, float* d_item_grads,
                                        double* d_sq_error_sum, struct CUstream_st* stream);
#endif

namespace internal {
// True when MfBatchGradient(ctx, b, ...) splits the batch over ctx's two threads (kCpu with a
// helper and scratch, num_samples * dim >= 2^20).
bool MfGradientSplits(const DeviceContext& ctx, const MfBatch& b);
// Pointer checks of the gradient/predict entry points beyond ValidateMfBatch, shared by Cpu and
// Cuda.
Status ValidateMfGradientArgs(const MfBatch& b, const float* user_grads, const float* item_grads);
Status ValidateMfPredictArgs(const MfBatch& b, const float* predictions);
// InvalidArgument naming the first sample s in [begin, end) whose user or item index is out of
// range. Reads the indices: host memory only. With `first_seen_order`, also says whether both
// index arrays number their rows in the order of the rows' first samples in [begin, end), every
// row having one (as KeyDeduper numbers them).
Status CheckMfIndices(const MfBatch& b, int64_t begin, int64_t end,
                      bool* first_seen_order = nullptr);
}  // namespace internal

}  // namespace tessera::kernels
