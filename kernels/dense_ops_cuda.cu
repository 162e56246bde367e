// CUDA twins of kernels/dense_ops.h: grid-stride kernels, one thread per output element, except
// the weighted column sum, which reduces like ColumnSumKernel in dense_cuda.cu (a block per 32
// columns, 16 row lanes per column combined in a fixed order). No atomics: deterministic.
#include <cuda_runtime.h>

#include "kernels/cuda_util.cuh"
#include "kernels/dense_ops.h"
#include "kernels/dense_ops_math.h"

namespace tessera::kernels {
namespace {

using cuda::GridBlocks;
using cuda::kThreadsPerBlock;

constexpr int kSumColumns = 32;
constexpr int kSumRowLanes = 16;

__global__ void WeightedColumnSumKernel(const float* __restrict__ scale,
                                        const float* __restrict__ m, int64_t rows, int cols,
                                        float* __restrict__ out) {
  constexpr int kSumPitch = kSumColumns + 1;  // avoids shared-memory bank conflicts
  TS_SHARED(float, partial, kSumRowLanes* kSumPitch);
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kSumColumns + threadIdx.x;
  float sum = 0.0f;
  if (j < cols) {
    for (int64_t i = threadIdx.y; i < rows; i += kSumRowLanes) sum += scale[i] * m[i * cols + j];
  }
  partial[threadIdx.y * kSumPitch + threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < kSumRowLanes; ++lane) {
      total += partial[lane * kSumPitch + threadIdx.x];
    }
    out[j] = total;
  }
}

__global__ void CopyColumnsKernel(const float* __restrict__ src, int src_cols, int src_col,
                                  float* __restrict__ dst, int dst_cols, int dst_col, int64_t total,
                                  int cols, bool accumulate) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t row = i / cols;
    const int64_t k = i - row * cols;
    const float value = src[row * src_cols + src_col + k];
    float* to = dst + row * dst_cols + dst_col + k;
    *to = accumulate ? *to + value : value;
  }
}

__global__ void RepeatElementsKernel(const float* __restrict__ x, int64_t total, int repeats,
                                     float* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    out[i] = x[i / repeats];
  }
}

__global__ void FirstOrderLogitsKernel(const float* __restrict__ bias,
                                       const float* __restrict__ terms, int num_terms,
                                       const float* __restrict__ w, const float* __restrict__ x,
                                       int num_x, float* __restrict__ logits, int64_t batch_size) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < batch_size;
       b += stride) {
    logits[b] = FirstOrderLogit(bias[0], terms + b * num_terms, num_terms, w, x + b * num_x, num_x);
  }
}

}  // namespace

Status WeightedColumnSumCuda(const float* d_scale, const float* d_m, int64_t rows, int cols,
                             float* d_out, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(
      internal::ValidateColumnSumArgs("WeightedColumnSum", d_scale, d_m, rows, cols, d_out, true));
  if (cols == 0) return OkStatus();
  const unsigned blocks = static_cast<unsigned>((int64_t{cols} + kSumColumns - 1) / kSumColumns);
  TS_LAUNCH_COOPERATIVE(WeightedColumnSumKernel, blocks, dim3(kSumColumns, kSumRowLanes), stream,
                        d_scale, d_m, rows, cols, d_out);
  return internal::CudaLaunchStatus("WeightedColumnSumCuda");
}

Status CopyColumnsCuda(const float* d_src, int src_cols, int src_col, float* d_dst, int dst_cols,
                       int dst_col, int64_t rows, int cols, bool accumulate, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateCopyColumnsArgs(d_src, src_cols, src_col, d_dst, dst_cols,
                                                       dst_col, rows, cols));
  const int64_t total = rows * cols;
  if (total == 0) return OkStatus();
  TS_LAUNCH(CopyColumnsKernel, GridBlocks(total), kThreadsPerBlock, stream, d_src, src_cols,
            src_col, d_dst, dst_cols, dst_col, total, cols, accumulate);
  return internal::CudaLaunchStatus("CopyColumnsCuda");
}

Status RepeatElementsCuda(const float* d_x, int64_t size, int repeats, float* d_out,
                          cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateRepeatArgs(d_x, size, repeats, d_out));
  const int64_t total = size * repeats;
  if (total == 0) return OkStatus();
  TS_LAUNCH(RepeatElementsKernel, GridBlocks(total), kThreadsPerBlock, stream, d_x, total, repeats,
            d_out);
  return internal::CudaLaunchStatus("RepeatElementsCuda");
}

Status FirstOrderLogitsCuda(const float* d_bias, const float* d_terms, int num_terms,
                            const float* d_w, const float* d_x, int num_x, float* d_logits,
                            int64_t batch_size, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateFirstOrderArgs(d_bias, d_terms, num_terms, d_w, d_x, num_x,
                                                      d_logits, batch_size));
  if (batch_size == 0) return OkStatus();
  TS_LAUNCH(FirstOrderLogitsKernel, GridBlocks(batch_size), kThreadsPerBlock, stream, d_bias,
            d_terms, num_terms, d_w, d_x, num_x, d_logits, batch_size);
  return internal::CudaLaunchStatus("FirstOrderLogitsCuda");
}

}  // namespace tessera::kernels
