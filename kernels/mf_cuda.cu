// CUDA biased-MF kernels: one warp per sample (grid-stride over samples), lanes striding the
// factors so row reads coalesce; the dot product is a warp shuffle reduction. Per-row gradient
// sums use float atomicAdd because many samples share a user or item row, so the order of
// additions (and the last bits of the result) varies run to run. The squared error is summed in
// double per thread, reduced per block, and added with one double atomicAdd per block.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cuda_util.cuh"
#include "kernels/mf.h"
#include "kernels/mf_math.h"

namespace tessera::kernels {
namespace {

using cuda::CudaStatus;
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
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp; s < b.num_samples;
       s += num_warps) {
    if (!SampleInRange(b, s)) {
      if (lane == 0) predictions[s] = __int_as_float(0x7fc00000);  // quiet NaN marks the sample
      continue;
    }
    const float* p = b.user_rows + static_cast<int64_t>(b.user_index[s]) * stride;
    const float* q = b.item_rows + static_cast<int64_t>(b.item_index[s]) * stride;
    const float dot = WarpDot(p, q, dim, lane);
    if (lane == 0) predictions[s] = MfPrediction(b.global_mean, p[dim], q[dim], dot);
  }
}

}  // namespace

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
