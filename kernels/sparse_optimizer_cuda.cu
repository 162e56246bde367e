// CUDA sparse optimizer: one thread per (row, element), grid-stride, calling the TS_HD step of
// optimizer_math.h (row-wise Adagrad: half a warp per row, whose mean square is a reduction over
// the row in optimizer_math.h's lane order). Rows are distinct (header contract), so no two
// threads write one float.
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

// One row per half warp (kRowwiseLanes threads). Thread k of a half sums lane k of the row's
// squares (RowwiseLaneSquares), the half adds the lanes in lane order as RowwiseMeanSquare does
// (each thread gathers them by shuffles), its first thread advances the accumulator and hands the
// scale round, and every thread updates the elements of its lane. A half warp reads and writes 64
// contiguous bytes at a time, where a thread per row read its whole row alone (a memory
// transaction per element and thread). A warp takes rows in pairs and loops while its first row
// exists, so the whole warp shuffles together; a half past the last row adds zeros and writes
// nothing.
constexpr int kRowsPerBlock = kThreadsPerBlock / kRowwiseLanes;
static_assert(2 * kRowwiseLanes == cuda::kWarpSize, "two rows per warp");

__global__ void RowwiseAdagradKernel(AdagradParams params, float* const* __restrict__ rows,
                                     const float* __restrict__ grads, int64_t num_rows, int dim) {
  const int lane = static_cast<int>(threadIdx.x) % kRowwiseLanes;
  const int half = static_cast<int>(threadIdx.x) % cuda::kWarpSize / kRowwiseLanes;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * cuda::kWarpsPerBlock;
  for (int64_t w =
           static_cast<int64_t>(blockIdx.x) * cuda::kWarpsPerBlock + threadIdx.x / cuda::kWarpSize;
       2 * w < num_rows; w += warps) {
    const int64_t i = 2 * w + half;
    const bool live = i < num_rows;
    const float* g = grads + i * dim;
    const float partial = live ? RowwiseLaneSquares(g, dim, lane) : 0.0f;
    float sum = 0.0f;
    for (int k = 0; k < kRowwiseLanes; ++k) {
      sum += __shfl_sync(cuda::kFullMask, partial, k, kRowwiseLanes);
    }
    float scale = 0.0f;
    if (live && lane == 0) {
      scale = RowwiseAdagradScale(sum / static_cast<float>(dim), &rows[i][dim], params);
    }
    scale = __shfl_sync(cuda::kFullMask, scale, 0, kRowwiseLanes);
    if (!live) continue;
    float* row = rows[i];
    for (int j = lane; j < dim; j += kRowwiseLanes) {
      row[j] = RowwiseAdagradStep(row[j], g[j], scale);
    }
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
      TS_LAUNCH_COOPERATIVE(RowwiseAdagradKernel,
                            static_cast<unsigned>(std::min(
                                cuda::kMaxBlocks, (num_rows + kRowsPerBlock - 1) / kRowsPerBlock)),
                            kThreadsPerBlock, stream, AdagradParams{p.lr, p.eps}, d_rows, d_grads,
                            num_rows, dim);
      break;
  }
  return internal::CudaLaunchStatus("ApplySparseUpdateCuda");
}

}  // namespace tessera::kernels
