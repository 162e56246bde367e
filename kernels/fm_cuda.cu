// CUDA FM interaction: one warp per sample (grid-stride over samples), lanes striding the
// embedding dimension so each field row is read coalesced; the per-sample sum over dim is a
// warp shuffle reduction. Each output is written by one thread: no atomics, deterministic.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/ctr_math.h"
#include "kernels/cuda_util.cuh"
#include "kernels/fm.h"

namespace tessera::kernels {
namespace {

using cuda::kThreadsPerBlock;
using cuda::kWarpSize;
using cuda::kWarpsPerBlock;
using cuda::WarpGridBlocks;
using cuda::WarpSum;

// The sample index is warp-uniform, so the full-mask shuffle is safe.
__global__ void FmForwardKernel(const float* __restrict__ v, float* __restrict__ y,
                                int64_t batch_size, int num_fields, int dim, int64_t sample_stride,
                                bool accumulate) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
       b < batch_size; b += num_warps) {
    const float* sample = v + b * sample_stride;
    float partial = 0.0f;
    for (int d = lane; d < dim; d += kWarpSize) {
      float sum = 0.0f;
      float sum_sq = 0.0f;
      for (int f = 0; f < num_fields; ++f) {
        const float x = sample[static_cast<int64_t>(f) * dim + d];
        sum += x;
        sum_sq += x * x;
      }
      partial += FmInteraction(sum, sum_sq);
    }
    partial = WarpSum(partial);
    if (lane == 0) y[b] = accumulate ? y[b] + partial : partial;
  }
}

__global__ void FmBackwardKernel(const float* __restrict__ v, const float* __restrict__ dy,
                                 float* __restrict__ dv, int64_t batch_size, int num_fields,
                                 int dim, int64_t v_stride, int64_t dv_stride, bool accumulate) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
       b < batch_size; b += num_warps) {
    const float* sample = v + b * v_stride;
    float* grad = dv + b * dv_stride;
    const float dy_b = dy[b];
    for (int d = lane; d < dim; d += kWarpSize) {
      float sum = 0.0f;
      for (int f = 0; f < num_fields; ++f) sum += sample[static_cast<int64_t>(f) * dim + d];
      for (int f = 0; f < num_fields; ++f) {
        const int64_t i = static_cast<int64_t>(f) * dim + d;
        const float g = FmGrad(dy_b, sum, sample[i]);
        grad[i] = accumulate ? grad[i] + g : g;
      }
    }
  }
}

}  // namespace

Status FmForwardCuda(const float* d_v, float* d_y, int64_t batch_size, int num_fields, int dim,
                     cudaStream_t stream, int64_t v_stride, bool accumulate) {
  TS_RETURN_IF_ERROR(
      internal::ValidateFmArgs("FmForward", {d_v, d_y}, batch_size, num_fields, dim, {v_stride}));
  if (batch_size == 0) return OkStatus();
  const int64_t width = static_cast<int64_t>(num_fields) * dim;
  TS_LAUNCH_COOPERATIVE(FmForwardKernel, WarpGridBlocks(batch_size), kThreadsPerBlock, stream, d_v,
                        d_y, batch_size, num_fields, dim, v_stride != 0 ? v_stride : width,
                        accumulate);
  return internal::CudaLaunchStatus("FmForwardCuda");
}

Status FmBackwardCuda(const float* d_v, const float* d_dy, float* d_dv, int64_t batch_size,
                      int num_fields, int dim, cudaStream_t stream, int64_t v_stride,
                      int64_t dv_stride, bool accumulate) {
  TS_RETURN_IF_ERROR(internal::ValidateFmArgs("FmBackward", {d_v, d_dy, d_dv}, batch_size,
                                              num_fields, dim, {v_stride, dv_stride}));
  if (batch_size == 0) return OkStatus();
  const int64_t width = static_cast<int64_t>(num_fields) * dim;
  TS_LAUNCH_COOPERATIVE(FmBackwardKernel, WarpGridBlocks(batch_size), kThreadsPerBlock, stream, d_v,
                        d_dy, d_dv, batch_size, num_fields, dim, v_stride != 0 ? v_stride : width,
                        dv_stride != 0 ? dv_stride : width, accumulate);
  return internal::CudaLaunchStatus("FmBackwardCuda");
}

}  // namespace tessera::kernels
