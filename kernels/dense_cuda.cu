// CUDA dense layers: matrix products through cuBLAS (row-major operands passed as their
// column-major transposes, so nothing is copied), everything else grid-stride kernels over the
// TS_HD math of ctr_math.h. Nothing here allocates or synchronises.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/ctr_math.h"
#include "kernels/cuda_util.cuh"
#include "kernels/dense.h"

namespace tessera::kernels {
namespace {

using cuda::CheckHandle;
using cuda::CublasStatus;
using cuda::CudaStatus;
using cuda::GridBlocks;
using cuda::kThreadsPerBlock;
using cuda::kWarpSize;
using cuda::kWarpsPerBlock;
using cuda::WarpSum;

// Column sums: a block sums kSumColumns adjacent columns (coalesced row reads) with kSumRowLanes
// threads per column, each striding the rows, then combines the lanes in a fixed order.
constexpr int kSumColumns = 32;
constexpr int kSumRowLanes = 16;

__global__ void AddBiasKernel(float* __restrict__ y, const float* __restrict__ b, int64_t total,
                              int out_dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    y[i] += b[i % out_dim];
  }
}

__global__ void ColumnSumKernel(const float* __restrict__ m, int64_t rows, int cols,
                                float* __restrict__ out) {
  // partial[lane * kSumPitch + column]; the pitch of kSumColumns + 1 avoids bank conflicts.
  constexpr int kSumPitch = kSumColumns + 1;
  TS_SHARED(float, partial, kSumRowLanes* kSumPitch);
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kSumColumns + threadIdx.x;
  float sum = 0.0f;
  if (j < cols) {
    for (int64_t i = threadIdx.y; i < rows; i += kSumRowLanes) sum += m[i * cols + j];
  }
  partial[threadIdx.y * kSumPitch + threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float total = 0.0f;
    for (int lane = 0; lane < kSumRowLanes; ++lane)
      total += partial[lane * kSumPitch + threadIdx.x];
    out[j] = total;
  }
}

__global__ void ReluForwardKernel(const float* x, float* y, int64_t size) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size;
       i += stride) {
    y[i] = Relu(x[i]);
  }
}

__global__ void ReluBackwardKernel(const float* y, const float* dy, float* dx, int64_t size) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < size;
       i += stride) {
    dx[i] = ReluGrad(y[i], dy[i]);
  }
}

// Per-thread double partial sums, reduced per warp (shuffle) and per block (shared memory),
// then one double atomicAdd per block.
__global__ void SigmoidBceForwardKernel(const float* __restrict__ logits,
                                        const float* __restrict__ labels, float* __restrict__ probs,
                                        double* loss_sum, int64_t batch_size) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  double loss = 0.0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < batch_size;
       i += stride) {
    const float z = logits[i];
    if (probs != nullptr) probs[i] = Sigmoid(z);
    if (loss_sum != nullptr) loss += SigmoidBce(z, labels[i]);
  }
  if (loss_sum == nullptr) return;  // uniform across the grid
  TS_SHARED(double, warp_loss, kWarpsPerBlock);
  loss = WarpSum(loss);
  if (threadIdx.x % kWarpSize == 0) warp_loss[threadIdx.x / kWarpSize] = loss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    for (int w = 0; w < kWarpsPerBlock; ++w) sum += warp_loss[w];
    atomicAdd(loss_sum, sum);
  }
}

__global__ void SigmoidBceBackwardKernel(const float* __restrict__ logits,
                                         const float* __restrict__ labels,
                                         float* __restrict__ dlogits, int64_t batch_size,
                                         float loss_scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < batch_size;
       i += stride) {
    dlogits[i] = SigmoidBceGrad(logits[i], labels[i], loss_scale);
  }
}

}  // namespace

namespace internal {

Status SgemmRowMajorCuda(cublasHandle_t cublas, cudaStream_t stream, bool trans_a, bool trans_b,
                         int m, int n, int k, float alpha, const float* d_a, int lda,
                         const float* d_b, int ldb, float beta, float* d_c, int ldc) {
  TS_RETURN_IF_ERROR(CublasStatus(cublasSetStream(cublas, stream), "cublasSetStream"));
  // A row-major matrix is the column-major storage of its transpose, so row-major
  // C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands (and m, n), keep
  // each operand's transpose flag.
  return CublasStatus(
      cublasSgemm(cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                  n, m, k, &alpha, d_b, ldb, d_a, lda, &beta, d_c, ldc),
      "cublasSgemm");
}

Status ColumnSumCuda(const float* d_m, int64_t rows, int cols, float* d_out, cudaStream_t stream) {
  const unsigned blocks =
      static_cast<unsigned>((static_cast<int64_t>(cols) + kSumColumns - 1) / kSumColumns);
  TS_LAUNCH_COOPERATIVE(ColumnSumKernel, blocks, dim3(kSumColumns, kSumRowLanes), stream, d_m, rows,
                        cols, d_out);
  return CudaLaunchStatus("ColumnSumCuda");
}

}  // namespace internal

Status LinearForwardCuda(cublasHandle_t cublas, const float* d_x, const float* d_w,
                         const float* d_b, float* d_y, int64_t batch_size, int in_dim, int out_dim,
                         cudaStream_t stream) {
  TS_RETURN_IF_ERROR(
      internal::ValidateLinearForwardArgs(d_x, d_w, d_y, batch_size, in_dim, out_dim));
  TS_RETURN_IF_ERROR(CheckHandle("LinearForwardCuda", cublas));
  if (batch_size == 0) return OkStatus();
  // y (B x out) = x (B x in) w (in x out), then y += b per row.
  TS_RETURN_IF_ERROR(internal::SgemmRowMajorCuda(
      cublas, stream, false, false, static_cast<int>(batch_size), out_dim, in_dim, 1.0f, d_x,
      in_dim, d_w, out_dim, 0.0f, d_y, out_dim));
  if (d_b == nullptr) return OkStatus();
  const int64_t total = batch_size * out_dim;
  TS_LAUNCH(AddBiasKernel, GridBlocks(total), kThreadsPerBlock, stream, d_y, d_b, total, out_dim);
  return internal::CudaLaunchStatus("LinearForwardCuda");
}

Status LinearBackwardCuda(cublasHandle_t cublas, const float* d_x, const float* d_w,
                          const float* d_dy, float* d_dx, float* d_dw, float* d_db,
                          int64_t batch_size, int in_dim, int out_dim, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateLinearBackwardArgs(d_x, d_w, d_dy, d_dx, d_dw, batch_size,
                                                          in_dim, out_dim));
  TS_RETURN_IF_ERROR(CheckHandle("LinearBackwardCuda", cublas));
  if (d_db != nullptr) {
    TS_RETURN_IF_ERROR(internal::ColumnSumCuda(d_dy, batch_size, out_dim, d_db, stream));
  }
  if (batch_size == 0) {
    const size_t dw_bytes = static_cast<size_t>(in_dim) * out_dim * sizeof(float);
    return CudaStatus(cudaMemsetAsync(d_dw, 0, dw_bytes, stream), "LinearBackwardCuda: zero dw");
  }
  const int rows = static_cast<int>(batch_size);
  // dw (in x out) = x^T dy.
  TS_RETURN_IF_ERROR(internal::SgemmRowMajorCuda(cublas, stream, true, false, in_dim, out_dim, rows,
                                                 1.0f, d_x, in_dim, d_dy, out_dim, 0.0f, d_dw,
                                                 out_dim));
  if (d_dx == nullptr) return OkStatus();
  // dx (B x in) = dy w^T.
  return internal::SgemmRowMajorCuda(cublas, stream, false, true, rows, in_dim, out_dim, 1.0f, d_dy,
                                     out_dim, d_w, out_dim, 0.0f, d_dx, in_dim);
}

Status ReluForwardCuda(const float* d_x, float* d_y, int64_t size, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateSizeAndPointers("ReluForward", size, {d_x, d_y}));
  if (size == 0) return OkStatus();
  TS_LAUNCH(ReluForwardKernel, GridBlocks(size), kThreadsPerBlock, stream, d_x, d_y, size);
  return internal::CudaLaunchStatus("ReluForwardCuda");
}

Status ReluBackwardCuda(const float* d_y, const float* d_dy, float* d_dx, int64_t size,
                        cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateSizeAndPointers("ReluBackward", size, {d_y, d_dy, d_dx}));
  if (size == 0) return OkStatus();
  TS_LAUNCH(ReluBackwardKernel, GridBlocks(size), kThreadsPerBlock, stream, d_y, d_dy, d_dx, size);
  return internal::CudaLaunchStatus("ReluBackwardCuda");
}

namespace {

// SigmoidBceForwardKernel over `blocks` blocks, after zeroing the sum.
Status LaunchSigmoidBceForward(const char* what, unsigned blocks, const float* d_logits,
                               const float* d_labels, float* d_probs, double* d_loss_sum,
                               int64_t batch_size, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(
      internal::ValidateSizeAndPointers("SigmoidBceForward", batch_size, {d_logits, d_labels}));
  if (d_loss_sum != nullptr) {
    // Blocks add their partial sums atomically, so the sum starts from zero; the memset is
    // ordered before the kernel on the same stream.
    TS_RETURN_IF_ERROR(CudaStatus(cudaMemsetAsync(d_loss_sum, 0, sizeof(double), stream),
                                  std::string(what) + ": zero loss_sum"));
  }
  if (batch_size == 0 || (d_probs == nullptr && d_loss_sum == nullptr)) return OkStatus();
  TS_LAUNCH_COOPERATIVE(SigmoidBceForwardKernel, blocks, kThreadsPerBlock, stream, d_logits,
                        d_labels, d_probs, d_loss_sum, batch_size);
  return internal::CudaLaunchStatus(what);
}

}  // namespace

Status SigmoidBceForwardCuda(const float* d_logits, const float* d_labels, float* d_probs,
                             double* d_loss_sum, int64_t batch_size, cudaStream_t stream) {
  return LaunchSigmoidBceForward("SigmoidBceForwardCuda", GridBlocks(batch_size), d_logits,
                                 d_labels, d_probs, d_loss_sum, batch_size, stream);
}

// One block: its threads take fixed elements, its warps and the block reduce in a fixed order,
// and its one atomicAdd onto the zeroed sum is exact, so the sum is the same bits every run. A
// CTR batch (thousands of samples) is a few strides of one block.
Status SigmoidBceForwardDeterministicCuda(const float* d_logits, const float* d_labels,
                                          float* d_probs, double* d_loss_sum, int64_t batch_size,
                                          cudaStream_t stream) {
  return LaunchSigmoidBceForward("SigmoidBceForwardDeterministicCuda", 1, d_logits, d_labels,
                                 d_probs, d_loss_sum, batch_size, stream);
}

Status SigmoidBceBackwardCuda(const float* d_logits, const float* d_labels, float* d_dlogits,
                              int64_t batch_size, float loss_scale, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateSizeAndPointers("SigmoidBceBackward", batch_size,
                                                       {d_logits, d_labels, d_dlogits}));
  if (batch_size == 0) return OkStatus();
  TS_LAUNCH(SigmoidBceBackwardKernel, GridBlocks(batch_size), kThreadsPerBlock, stream, d_logits,
            d_labels, d_dlogits, batch_size, loss_scale);
  return internal::CudaLaunchStatus("SigmoidBceBackwardCuda");
}

}  // namespace tessera::kernels
