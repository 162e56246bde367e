// CUDA sparse optimizer: one thread per (row, element), grid-stride, calling the TS_HD step of
// optimizer_math.h (row-wise Adagrad: one thread per row, whose mean square is a reduction over
// the row in optimizer_math.h's order). Rows are distinct (header contract), so no two threads
// write one float.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda_util.cuh"
#include "kernels/optimizer_math.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::kernels {
namespace {

using cuda::GridBlocks;
using cuda::kThreadsPerBlock;

struct SgdElement {
  SgdParams params;
  __device__ void operator()(float* row, int j, int /*dim*/, float g) const {
    row[j] = SgdStep(row[j], g, params);
  }
};

struct AdagradElement {
  AdagradParams params;
  __device__ void operator()(float* row, int j, int dim, float g) const {
    row[j] = AdagradStep(row[j], g, &row[dim + j], params);
  }
};

// Reads the row's step without advancing it: every thread of the row must see the same t, so
// the step is advanced by AdvanceAdamStepKernel, queued after this kernel on the same stream.
struct AdamElement {
  AdamParams params;
  __device__ void operator()(float* row, int j, int dim, float g) const {
    const float step_size = AdamStepSize(row[3 * dim] + 1.0f, params);
    row[j] = AdamStep(row[j], g, &row[dim + j], &row[2 * dim + j], step_size, params);
  }
};

struct FtrlElement {
  FtrlParams params;
  __device__ void operator()(float* row, int j, int dim, float g) const {
    row[j] = FtrlStep(row[j], g, &row[dim + j], &row[2 * dim + j], params);
  }
};

__global__ void RowwiseAdagradKernel(AdagradParams params, float* const* __restrict__ rows,
                                     const float* __restrict__ grads, int64_t num_rows, int dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < num_rows;
       i += stride) {
    float* row = rows[i];
    const float* g = grads + i * dim;
    const float scale = RowwiseAdagradScale(RowwiseMeanSquare(g, dim), &row[dim], params);
    for (int j = 0; j < dim; ++j) row[j] = RowwiseAdagradStep(row[j], g[j], scale);
  }
}

__global__ void AdvanceAdamStepKernel(float* const* __restrict__ rows, int64_t num_rows, int dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < num_rows;
       i += stride) {
    rows[i][3 * dim] += 1.0f;
  }
}

template <typename Element>
__global__ void SparseUpdateKernel(Element element, float* const* __restrict__ rows,
                                   const float* __restrict__ grads, int64_t num_rows, int dim) {
  const int64_t total = num_rows * dim;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const int64_t i = idx / dim;
    const int j = static_cast<int>(idx - i * dim);
    element(rows[i], j, dim, grads[idx]);
  }
}

template <typename Element>
void Launch(const Element& element, float* const* d_rows, const float* d_grads, int64_t num_rows,
            int dim, cudaStream_t stream) {
  const int64_t total = num_rows * dim;
  TS_LAUNCH(SparseUpdateKernel<Element>, GridBlocks(total), kThreadsPerBlock, stream, element,
            d_rows, d_grads, num_rows, dim);
}

}  // namespace

Status ApplySparseUpdateCuda(const OptimizerParams& p, float* const* d_rows, const float* d_grads,
                             int64_t num_rows, int dim, struct CUstream_st* stream) {
  TS_RETURN_IF_ERROR(internal::ValidateSparseUpdateArgs(p, d_rows, d_grads, num_rows, dim));
  if (num_rows == 0) return OkStatus();
  switch (p.kind) {
    case OptimizerKind::kSgd:
      Launch(SgdElement{SgdParams{p.lr}}, d_rows, d_grads, num_rows, dim, stream);
      break;
    case OptimizerKind::kAdagrad:
      Launch(AdagradElement{AdagradParams{p.lr, p.eps}}, d_rows, d_grads, num_rows, dim, stream);
      break;
    case OptimizerKind::kAdam: {
      Launch(AdamElement{AdamParams{p.lr, p.beta1, p.beta2, p.eps}}, d_rows, d_grads, num_rows, dim,
             stream);
      TS_LAUNCH(AdvanceAdamStepKernel, GridBlocks(num_rows), kThreadsPerBlock, stream, d_rows,
                num_rows, dim);
      break;
    }
    case OptimizerKind::kFtrl:
      Launch(FtrlElement{FtrlParams{p.lr, p.ftrl_beta, p.l1, p.l2}}, d_rows, d_grads, num_rows, dim,
             stream);
      break;
    case OptimizerKind::kRowwiseAdagrad:
      TS_LAUNCH(RowwiseAdagradKernel, GridBlocks(num_rows), kThreadsPerBlock, stream,
                AdagradParams{p.lr, p.eps}, d_rows, d_grads, num_rows, dim);
      break;
  }
  return internal::CudaLaunchStatus("ApplySparseUpdateCuda");
}

}  // namespace tessera::kernels
