// CUDA DCN-v2 cross layer: cuBLAS for the products (through internal::SgemmRowMajorCuda), one
// fused grid-stride kernel for the elementwise part of each direction, and the deterministic
// column-sum kernel of dense_cuda.cu for db. Nothing here allocates or synchronises.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cross.h"
#include "kernels/ctr_math.h"
#include "kernels/cuda_util.cuh"
#include "kernels/dense.h"

namespace tessera::kernels {
namespace {

using cuda::CheckHandle;
using cuda::GridBlocks;
using cuda::kThreadsPerBlock;

// pre holds W x_l (batch_size x dim); adds b, stores z when asked and writes y. pre aliases z
// (or y when z is null), so those pointers are not __restrict__.
__global__ void CrossForwardKernel(const float* __restrict__ x0, const float* __restrict__ xl,
                                   const float* __restrict__ b, const float* pre, float* z,
                                   float* y, int64_t total, int dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const float zi = pre[i] + b[i % dim];
    if (z != nullptr) z[i] = zi;
    y[i] = CrossOutput(x0[i], zi, xl[i]);
  }
}

// dxl may equal dy: each element is read before it is written, by the same thread.
__global__ void CrossBackwardKernel(const float* __restrict__ x0, const float* __restrict__ z,
                                    const float* dy, float* __restrict__ dz,
                                    float* __restrict__ dx0, float* dxl, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const float g = dy[i];
    dz[i] = CrossGradZ(g, x0[i]);
    dx0[i] += CrossGradX0(g, z[i]);
    dxl[i] = g;
  }
}

}  // namespace

Status CrossForwardCuda(cublasHandle_t cublas, const float* d_x0, const float* d_xl,
                        const float* d_w, const float* d_b, float* d_z, float* d_y,
                        int64_t batch_size, int dim, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(
      internal::ValidateCrossForwardArgs(d_x0, d_xl, d_w, d_b, d_y, batch_size, dim));
  TS_RETURN_IF_ERROR(CheckHandle("CrossForwardCuda", cublas));
  if (batch_size == 0) return OkStatus();
  float* d_pre = d_z != nullptr ? d_z : d_y;
  // pre (B x dim) = xl W^T.
  TS_RETURN_IF_ERROR(internal::SgemmRowMajorCuda(cublas, stream, false, true,
                                                 static_cast<int>(batch_size), dim, dim, 1.0f, d_xl,
                                                 dim, d_w, dim, 0.0f, d_pre, dim));
  const int64_t total = batch_size * dim;
  TS_LAUNCH(CrossForwardKernel, GridBlocks(total), kThreadsPerBlock, stream, d_x0, d_xl, d_b, d_pre,
            d_z, d_y, total, dim);
  return internal::CudaLaunchStatus("CrossForwardCuda");
}

Status CrossBackwardCuda(cublasHandle_t cublas, const float* d_x0, const float* d_xl,
                         const float* d_w, const float* d_z, const float* d_dy, float* d_dx0,
                         float* d_dxl, float* d_dw, float* d_db, float* d_workspace,
                         int64_t batch_size, int dim, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateCrossBackwardArgs(d_x0, d_xl, d_w, d_z, d_dy, d_dx0, d_dxl,
                                                         d_dw, d_db, d_workspace, batch_size, dim));
  TS_RETURN_IF_ERROR(CheckHandle("CrossBackwardCuda", cublas));
  float* d_dz = d_workspace;
  const int64_t total = batch_size * dim;
  if (total > 0) {
    TS_LAUNCH(CrossBackwardKernel, GridBlocks(total), kThreadsPerBlock, stream, d_x0, d_z, d_dy,
              d_dz, d_dx0, d_dxl, total);
    TS_RETURN_IF_ERROR(internal::CudaLaunchStatus("CrossBackwardCuda"));
  }
  TS_RETURN_IF_ERROR(internal::ColumnSumCuda(d_dz, batch_size, dim, d_db, stream));
  if (batch_size == 0) {
    const size_t dw_bytes = static_cast<size_t>(dim) * dim * sizeof(float);
    cudaError_t err = cudaMemsetAsync(d_dw, 0, dw_bytes, stream);
    if (err == cudaSuccess) return OkStatus();
    return Status::Internal(std::string("CrossBackwardCuda: zero dw: ") + cudaGetErrorString(err));
  }
  const int rows = static_cast<int>(batch_size);
  // dW (dim x dim) = dz^T xl.
  TS_RETURN_IF_ERROR(internal::SgemmRowMajorCuda(cublas, stream, true, false, dim, dim, rows, 1.0f,
                                                 d_dz, dim, d_xl, dim, 0.0f, d_dw, dim));
  // dxl (B x dim) += dz W.
  return internal::SgemmRowMajorCuda(cublas, stream, false, false, rows, dim, dim, 1.0f, d_dz, dim,
                                     d_w, dim, 1.0f, d_dxl, dim);
}

}  // namespace tessera::kernels
