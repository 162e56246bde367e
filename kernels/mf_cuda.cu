// CUDA biased-MF kernels: one warp per sample (grid-stride over samples), lanes striding the
// factors so row reads coalesce; the dot product is a warp shuffle reduction. Per-row gradient
// sums use float atomicAdd because many samples share a user or item row, so the order of
// additions (and the last bits of the result) varies run to run. The squared error is summed in
// double per thread, reduced per block, and added with one double atomicAdd per block.
//
// The deterministic gradient (MfBatchGradientDeterministicCuda) has no atomics: a per-sample
// kernel writes the residuals, then one thread per (row, element) walks that row's samples in
// sample order (the segment plan, kernels/segments.h) and writes the sum, and one block sums the
// squared residuals in a fixed order. Every addition then happens in an order fixed by the batch
// alone, so two runs give the same bits.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cuda_util.cuh"
#include "kernels/mf.h"
#include "kernels/mf_math.h"

namespace tessera::kernels {
namespace {

using cuda::CudaStatus;
using cuda::GridBlocks;
using cuda::kThreadsPerBlock;
using cuda::kWarpSize;
using cuda::kWarpsPerBlock;
using cuda::WarpGridBlocks;
using cuda::WarpSum;

// The whole warp works on one sample, so `s` and the branch on the indices are warp-uniform
// and the full-mask shuffles are safe.
__device__ bool SampleInRange(const MfBatch& b, int64_t s) {
  const int32_t u = b.user_index[s];
  const int32_t i = b.item_index[s];
  return u >= 0 && u < b.num_users && i >= 0 && i < b.num_items;
}

__device__ float WarpDot(const float* p, const float* q, int dim, int lane) {
  float partial = 0.0f;
  for (int j = lane; j < dim; j += kWarpSize) partial += p[j] * q[j];
  return WarpSum(partial);
}

// r_hat of sample s (indices in range), on every lane of the warp.
__device__ float WarpPrediction(const MfBatch& b, int64_t s, int lane) {
  const int64_t stride = MfRowStride(b.dim);
  const float* p = b.user_rows + static_cast<int64_t>(b.user_index[s]) * stride;
  const float* q = b.item_rows + static_cast<int64_t>(b.item_index[s]) * stride;
  return MfPrediction(b.global_mean, p[b.dim], q[b.dim], WarpDot(p, q, b.dim, lane));
}

__global__ void MfGradientKernel(MfBatch b, float* __restrict__ user_grads,
                                 float* __restrict__ item_grads, double* sq_error_sum) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  double sq_error = 0.0;  // meaningful in lane 0 only
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; s < b.num_samples;
       s += num_warps) {
    if (!SampleInRange(b, s)) continue;
    const int64_t u = b.user_index[s];
    const int64_t i = b.item_index[s];
    const float* p = b.user_rows + u * stride;
    const float* q = b.item_rows + i * stride;
    const float prediction = MfPrediction(b.global_mean, p[dim], q[dim], WarpDot(p, q, dim, lane));
    const float err = MfError(b.ratings[s], prediction);
    float* grad_p = user_grads + u * stride;
    float* grad_q = item_grads + i * stride;
    for (int j = lane; j < dim; j += kWarpSize) {
      atomicAdd(&grad_p[j], MfFactorGrad(err, q[j], p[j], b.l2));
      atomicAdd(&grad_q[j], MfFactorGrad(err, p[j], q[j], b.l2));
    }
    if (lane == 0) {
      atomicAdd(&grad_p[dim], MfBiasGrad(err, p[dim], b.l2_bias));
      atomicAdd(&grad_q[dim], MfBiasGrad(err, q[dim], b.l2_bias));
      sq_error += static_cast<double>(err) * err;
    }
  }
  if (sq_error_sum == nullptr) return;  // uniform across the grid
  TS_SHARED(double, block_sq_error, kWarpsPerBlock);
  if (lane == 0) block_sq_error[warp] = sq_error;
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (int w = 0; w < kWarpsPerBlock; ++w) sum += block_sq_error[w];
    atomicAdd(sq_error_sum, sum);
  }
}

__global__ void MfPredictKernel(MfBatch b, float* __restrict__ predictions) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; s < b.num_samples;
       s += num_warps) {
    if (!SampleInRange(b, s)) {
      if (lane == 0) predictions[s] = __int_as_float(0x7fc00000);  // quiet NaN marks the sample
      continue;
    }
    const float prediction = WarpPrediction(b, s, lane);
    if (lane == 0) predictions[s] = prediction;
  }
}

// Deterministic pass 1: errors[s] = r - r_hat for every sample (NaN for a sample whose indices
// are out of range, which REQUIRES rule out).
__global__ void MfErrorsKernel(MfBatch b, float* __restrict__ errors) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; s < b.num_samples;
       s += num_warps) {
    if (!SampleInRange(b, s)) {
      if (lane == 0) errors[s] = __int_as_float(0x7fc00000);
      continue;
    }
    const float prediction = WarpPrediction(b, s, lane);
    if (lane == 0) errors[s] = MfError(b.ratings[s], prediction);
  }
}

// One side's rows of the deterministic gradient ("own": users or items). Thread per element of
// the num_rows x (dim + 1) gradient (consecutive threads on consecutive elements of a row, so
// the other side's rows are read coalesced); each adds its row's samples in sample order, as
// MfSideGradsCpu does, and writes the element (zero for a row no sample touches). Threads never
// wait for each other.
__global__ void MfSideGradsKernel(const int32_t* __restrict__ seg_offsets,
                                  const int32_t* __restrict__ seg_order,
                                  const int32_t* __restrict__ other_index,
                                  const float* __restrict__ own_rows,
                                  const float* __restrict__ other_rows, int64_t num_other,
                                  const float* __restrict__ errors, int64_t num_rows, int dim,
                                  float l2, float l2_bias, float* __restrict__ grads) {
  const int64_t row_stride = MfRowStride(dim);
  const int64_t total = num_rows * row_stride;
  const int64_t grid_stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += grid_stride) {
    const int64_t row = e / row_stride;
    const int64_t j = e - row * row_stride;
    const float own = own_rows[e];
    float sum = 0.0f;
    for (int32_t k = seg_offsets[row]; k < seg_offsets[row + 1]; ++k) {
      const int32_t s = seg_order[k];
      const int32_t other = other_index[s];
      if (other < 0 || other >= num_other) continue;  // REQUIRES rule it out; never read
      if (j < dim) {
        sum += MfFactorGrad(errors[s], other_rows[other * row_stride + j], own, l2);
      } else {
        sum += MfBiasGrad(errors[s], own, l2_bias);
      }
    }
    grads[e] = sum;
  }
}

// *sq_error_sum = sum over s of errors[s]^2 in double, by ONE block: thread t sums samples t,
// t + blockDim, ... in order, the warps reduce by a fixed butterfly, and thread 0 adds the warp
// sums in warp order; a fixed order, so the same bits every run. One block reads an MF batch's
// residuals (at most a few hundred thousand floats) in microseconds.
__global__ void MfSquaredErrorSumKernel(const float* __restrict__ errors, int64_t num_samples,
                                        double* sq_error_sum) {
  double sum = 0.0;
  for (int64_t s = threadIdx.x; s < num_samples; s += blockDim.x) {
    sum += static_cast<double>(errors[s]) * errors[s];
  }
  sum = WarpSum(sum);
  TS_SHARED(double, warp_sums, kWarpsPerBlock);
  if (threadIdx.x % kWarpSize == 0) warp_sums[threadIdx.x / kWarpSize] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kWarpsPerBlock; ++w) total += warp_sums[w];
    *sq_error_sum = total;
  }
}

// The plan of one side must be the batch's: one row per user (item) and one position per sample.
Status CheckPlanSide(const char* side, const SegmentsView& plan, int64_t num_rows,
                     int64_t num_samples) {
  if (plan.num_rows != num_rows || plan.num_positions != num_samples) {
    return Status::InvalidArgument(std::string("MfBatchGradientDeterministicCuda: the ") + side +
                                   " plan covers " + std::to_string(plan.num_rows) + " rows and " +
                                   std::to_string(plan.num_positions) + " samples, the batch has " +
                                   std::to_string(num_rows) + " and " +
                                   std::to_string(num_samples));
  }
  if (plan.offsets == nullptr || (num_samples > 0 && plan.order == nullptr)) {
    return Status::InvalidArgument(std::string("MfBatchGradientDeterministicCuda: the ") + side +
                                   " plan has null arrays");
  }
  return OkStatus();
}

}  // namespace

Status MfBatchGradientDeterministicCuda(const MfBatch& b, const MfGradientPlan& plan,
                                        float* d_user_grads, float* d_item_grads,
                                        double* d_sq_error_sum, struct CUstream_st* stream) {
  TS_RETURN_IF_ERROR(internal::ValidateMfGradientArgs(b, d_user_grads, d_item_grads));
  if (b.num_samples == 0) {  // the atomic path's zeroed outputs; the plan is not read
    return MfBatchGradientCuda(b, d_user_grads, d_item_grads, d_sq_error_sum, stream);
  }
  TS_RETURN_IF_ERROR(CheckPlanSide("user", plan.users, b.num_users, b.num_samples));
  TS_RETURN_IF_ERROR(CheckPlanSide("item", plan.items, b.num_items, b.num_samples));
  if (plan.errors == nullptr) {
    return Status::InvalidArgument("MfBatchGradientDeterministicCuda: null errors scratch");
  }
  // The side kernels read every residual: the first kernel's writes are ordered before them by
  // the stream.
  TS_LAUNCH_COOPERATIVE(MfErrorsKernel, WarpGridBlocks(b.num_samples), kThreadsPerBlock, stream, b,
                        plan.errors);
  TS_RETURN_IF_ERROR(internal::CudaLaunchStatus("MfBatchGradientDeterministicCuda: errors"));
  const int64_t stride = MfRowStride(b.dim);
  TS_LAUNCH(MfSideGradsKernel, GridBlocks(b.num_users * stride), kThreadsPerBlock, stream,
            plan.users.offsets, plan.users.order, b.item_index, b.user_rows, b.item_rows,
            b.num_items, static_cast<const float*>(plan.errors), b.num_users, b.dim, b.l2,
            b.l2_bias, d_user_grads);
  TS_RETURN_IF_ERROR(internal::CudaLaunchStatus("MfBatchGradientDeterministicCuda: user rows"));
  TS_LAUNCH(MfSideGradsKernel, GridBlocks(b.num_items * stride), kThreadsPerBlock, stream,
            plan.items.offsets, plan.items.order, b.user_index, b.item_rows, b.user_rows,
            b.num_users, static_cast<const float*>(plan.errors), b.num_items, b.dim, b.l2,
            b.l2_bias, d_item_grads);
  TS_RETURN_IF_ERROR(internal::CudaLaunchStatus("MfBatchGradientDeterministicCuda: item rows"));
  if (d_sq_error_sum == nullptr) return OkStatus();
  TS_LAUNCH_COOPERATIVE(MfSquaredErrorSumKernel, 1, kThreadsPerBlock, stream,
                        static_cast<const float*>(plan.errors), b.num_samples, d_sq_error_sum);
  return internal::CudaLaunchStatus("MfBatchGradientDeterministicCuda: squared error sum");
}

Status MfBatchGradientCuda(const MfBatch& b, float* d_user_grads, float* d_item_grads,
                           double* d_sq_error_sum, struct CUstream_st* stream) {
  TS_RETURN_IF_ERROR(internal::ValidateMfGradientArgs(b, d_user_grads, d_item_grads));
  const size_t row_bytes = static_cast<size_t>(MfRowStride(b.dim)) * sizeof(float);
  // Outputs are sums built with atomicAdd, so they start from zero; memsets on the same stream
  // are ordered before the kernel.
  if (b.num_users > 0) {
    TS_RETURN_IF_ERROR(CudaStatus(
        cudaMemsetAsync(d_user_grads, 0, static_cast<size_t>(b.num_users) * row_bytes, stream),
        "MfBatchGradientCuda: zero user_grads"));
  }
  if (b.num_items > 0) {
    TS_RETURN_IF_ERROR(CudaStatus(
        cudaMemsetAsync(d_item_grads, 0, static_cast<size_t>(b.num_items) * row_bytes, stream),
        "MfBatchGradientCuda: zero item_grads"));
  }
  if (d_sq_error_sum != nullptr) {
    TS_RETURN_IF_ERROR(CudaStatus(cudaMemsetAsync(d_sq_error_sum, 0, sizeof(double), stream),
                                  "MfBatchGradientCuda: zero sq_error_sum"));
  }
  if (b.num_samples == 0) return OkStatus();
  TS_LAUNCH_COOPERATIVE(MfGradientKernel, WarpGridBlocks(b.num_samples), kThreadsPerBlock, stream,
                        b, d_user_grads, d_item_grads, d_sq_error_sum);
  return internal::CudaLaunchStatus("MfBatchGradientCuda");
}

Status MfPredictCuda(const MfBatch& b, float* d_predictions, struct CUstream_st* stream) {
  TS_RETURN_IF_ERROR(internal::ValidateMfPredictArgs(b, d_predictions));
  if (b.num_samples == 0) return OkStatus();
  TS_LAUNCH_COOPERATIVE(MfPredictKernel, WarpGridBlocks(b.num_samples), kThreadsPerBlock, stream, b,
                        d_predictions);
  return internal::CudaLaunchStatus("MfPredictCuda");
}

}  // namespace tessera::kernels
