// CUDA embedding gather / pool: one thread per output float (grid-stride), consecutive threads
// on consecutive dims of a row so row reads and writes coalesce. Pool threads walk their bag's
// positions in order (deterministic); the backwards scatter with float atomicAdd because
// lookups share rows. Indices are checked on the device: an out-of-range row is never read.
// The deterministic backwards turn the scatter around: one thread per grad_rows element gathers
// its row's lookups from a segment plan (kernels/segments.h) in position order, no atomics.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda_util.cuh"
#include "kernels/embedding.h"

namespace tessera::kernels {
namespace {

using cuda::GridBlocks;
using cuda::kThreadsPerBlock;

__device__ float QuietNan() { return __int_as_float(0x7fc00000); }

__device__ bool RowInRange(int32_t row, int64_t num_rows) { return row >= 0 && row < num_rows; }

__global__ void GatherKernel(const float* __restrict__ rows, int64_t num_rows,
                             const int32_t* __restrict__ indices, float* __restrict__ out,
                             int64_t total, int dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t lookup = i / dim;
    const int32_t row = indices[lookup];
    out[i] = RowInRange(row, num_rows) ? rows[row * static_cast<int64_t>(dim) + (i - lookup * dim)]
                                       : QuietNan();
  }
}

__global__ void GatherBackwardKernel(const int32_t* __restrict__ indices,
                                     const float* __restrict__ grad_out,
                                     float* __restrict__ grad_rows, int64_t num_rows, int64_t total,
                                     int dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t lookup = i / dim;
    const int32_t row = indices[lookup];
    if (!RowInRange(row, num_rows)) continue;
    atomicAdd(&grad_rows[row * static_cast<int64_t>(dim) + (i - lookup * dim)], grad_out[i]);
  }
}

__global__ void PoolKernel(const float* __restrict__ rows, int64_t num_rows,
                           const int64_t* __restrict__ offsets, const int32_t* __restrict__ indices,
                           const float* __restrict__ weights, float* __restrict__ out,
                           int64_t total, int dim, BagLayout layout) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t bag = i / dim;
    const int64_t d = i - bag * dim;
    float sum = 0.0f;
    for (int64_t p = offsets[bag]; p < offsets[bag + 1]; ++p) {
      const int32_t row = indices[p];
      if (!RowInRange(row, num_rows)) {
        sum = QuietNan();
        break;
      }
      const float weight = weights != nullptr ? weights[p] : 1.0f;
      sum += weight * rows[row * static_cast<int64_t>(dim) + d];
    }
    out[BagStart(layout, bag, dim) + d] = sum;
  }
}

__global__ void PoolBackwardKernel(const int64_t* __restrict__ offsets,
                                   const int32_t* __restrict__ indices,
                                   const float* __restrict__ weights,
                                   const float* __restrict__ grad_out,
                                   float* __restrict__ grad_rows, int64_t num_rows, int64_t total,
                                   int dim, BagLayout layout) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t bag = i / dim;
    const int64_t d = i - bag * dim;
    const float g = grad_out[BagStart(layout, bag, dim) + d];
    for (int64_t p = offsets[bag]; p < offsets[bag + 1]; ++p) {
      const int32_t row = indices[p];
      if (!RowInRange(row, num_rows)) continue;
      const float weight = weights != nullptr ? weights[p] : 1.0f;
      atomicAdd(&grad_rows[row * static_cast<int64_t>(dim) + d], weight * g);
    }
  }
}

// Deterministic gather backward: thread per element (row, d) of grad_rows, consecutive threads on
// consecutive d, so the grad_out rows it reads coalesce. Adds the row's lookups in position order
// to the element's value, as the CPU's lookup loop does. Threads never wait for each other.
__global__ void GatherBackwardSegmentedKernel(const int32_t* __restrict__ seg_offsets,
                                              const int32_t* __restrict__ seg_order,
                                              const float* __restrict__ grad_out,
                                              float* __restrict__ grad_rows, int64_t total,
                                              int dim) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t row = i / dim;
    const int64_t d = i - row * dim;
    const int32_t begin = seg_offsets[row];
    const int32_t end = seg_offsets[row + 1];
    if (begin == end) continue;
    float sum = grad_rows[i];
    for (int32_t k = begin; k < end; ++k) {
      sum += grad_out[seg_order[k] * static_cast<int64_t>(dim) + d];
    }
    grad_rows[i] = sum;
  }
}

// The bag of position p: the k in [0, num_bags) with offsets[k] <= p < offsets[k + 1] (empty bags
// are skipped). REQUIRES offsets[0] <= p < offsets[num_bags].
__device__ int64_t BagOfPosition(const int64_t* offsets, int64_t num_bags, int64_t p) {
  int64_t lo = 0, hi = num_bags;  // offsets[lo] <= p < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Deterministic pool backward: as GatherBackwardSegmentedKernel, each lookup's gradient being
// weights[p] * grad_out[bag of p]. The plan's positions count from offsets[0].
__global__ void PoolBackwardSegmentedKernel(const int64_t* __restrict__ offsets, int64_t num_bags,
                                            const int32_t* __restrict__ seg_offsets,
                                            const int32_t* __restrict__ seg_order,
                                            const float* __restrict__ weights,
                                            const float* __restrict__ grad_out,
                                            float* __restrict__ grad_rows, int64_t total, int dim,
                                            BagLayout layout) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = offsets[0];
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t row = i / dim;
    const int64_t d = i - row * dim;
    const int32_t begin = seg_offsets[row];
    const int32_t end = seg_offsets[row + 1];
    if (begin == end) continue;
    float sum = grad_rows[i];
    for (int32_t k = begin; k < end; ++k) {
      const int64_t p = first + seg_order[k];
      const float weight = weights != nullptr ? weights[p] : 1.0f;
      sum += weight * grad_out[BagStart(layout, BagOfPosition(offsets, num_bags, p), dim) + d];
    }
    grad_rows[i] = sum;
  }
}

}  // namespace

Status EmbeddingGatherCuda(const float* d_rows, int64_t num_rows, const int32_t* d_indices,
                           float* d_out, int64_t batch_size, int num_fields, int dim,
                           cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateGatherArgs("EmbeddingGather", d_rows, num_rows, d_indices,
                                                  d_out, batch_size, num_fields, dim));
  const int64_t total = batch_size * num_fields * dim;
  if (total == 0) return OkStatus();
  TS_LAUNCH(GatherKernel, GridBlocks(total), kThreadsPerBlock, stream, d_rows, num_rows, d_indices,
            d_out, total, dim);
  return internal::CudaLaunchStatus("EmbeddingGatherCuda");
}

Status EmbeddingGatherBackwardCuda(const int32_t* d_indices, const float* d_grad_out,
                                   float* d_grad_rows, int64_t num_rows, int64_t batch_size,
                                   int num_fields, int dim, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateGatherArgs("EmbeddingGatherBackward", d_grad_rows, num_rows,
                                                  d_indices, d_grad_out, batch_size, num_fields,
                                                  dim));
  const int64_t total = batch_size * num_fields * dim;
  if (total == 0) return OkStatus();
  TS_LAUNCH(GatherBackwardKernel, GridBlocks(total), kThreadsPerBlock, stream, d_indices,
            d_grad_out, d_grad_rows, num_rows, total, dim);
  return internal::CudaLaunchStatus("EmbeddingGatherBackwardCuda");
}

Status EmbeddingPoolCuda(const float* d_rows, int64_t num_rows, const int64_t* d_offsets,
                         const int32_t* d_indices, const float* d_weights, float* d_out,
                         int64_t num_bags, int dim, cudaStream_t stream, const BagLayout& layout) {
  TS_RETURN_IF_ERROR(internal::ValidatePoolArgs("EmbeddingPool", d_rows, num_rows, d_offsets,
                                                d_indices, d_out, num_bags, dim, layout));
  const int64_t total = num_bags * dim;
  if (total == 0) return OkStatus();
  TS_LAUNCH(PoolKernel, GridBlocks(total), kThreadsPerBlock, stream, d_rows, num_rows, d_offsets,
            d_indices, d_weights, d_out, total, dim, layout);
  return internal::CudaLaunchStatus("EmbeddingPoolCuda");
}

Status EmbeddingPoolBackwardCuda(const int64_t* d_offsets, const int32_t* d_indices,
                                 const float* d_weights, const float* d_grad_out,
                                 float* d_grad_rows, int64_t num_rows, int64_t num_bags, int dim,
                                 cudaStream_t stream, const BagLayout& layout) {
  TS_RETURN_IF_ERROR(internal::ValidatePoolArgs("EmbeddingPoolBackward", d_grad_rows, num_rows,
                                                d_offsets, d_indices, d_grad_out, num_bags, dim,
                                                layout));
  const int64_t total = num_bags * dim;
  if (total == 0) return OkStatus();
  TS_LAUNCH(PoolBackwardKernel, GridBlocks(total), kThreadsPerBlock, stream, d_offsets, d_indices,
            d_weights, d_grad_out, d_grad_rows, num_rows, total, dim, layout);
  return internal::CudaLaunchStatus("EmbeddingPoolBackwardCuda");
}

Status EmbeddingGatherBackwardDeterministicCuda(const SegmentsView& d_segments,
                                                const float* d_grad_out, float* d_grad_rows,
                                                int64_t num_rows, int64_t batch_size,
                                                int num_fields, int dim, cudaStream_t stream) {
  constexpr const char* kOp = "EmbeddingGatherBackwardDeterministicCuda";
  // The plan's offsets stand in for the indices, which this kernel does not read.
  TS_RETURN_IF_ERROR(internal::ValidateGatherArgs(kOp, d_grad_rows, num_rows, d_segments.offsets,
                                                  d_grad_out, batch_size, num_fields, dim));
  TS_RETURN_IF_ERROR(
      internal::ValidateSegmentsArgs(kOp, d_segments, num_rows, batch_size * num_fields));
  const int64_t total = num_rows * dim;
  if (total == 0 || batch_size == 0) return OkStatus();
  TS_LAUNCH(GatherBackwardSegmentedKernel, GridBlocks(total), kThreadsPerBlock, stream,
            d_segments.offsets, d_segments.order, d_grad_out, d_grad_rows, total, dim);
  return internal::CudaLaunchStatus(kOp);
}

Status EmbeddingPoolBackwardDeterministicCuda(const int64_t* d_offsets,
                                              const SegmentsView& d_segments,
                                              const float* d_weights, const float* d_grad_out,
                                              float* d_grad_rows, int64_t num_rows,
                                              int64_t num_bags, int dim, cudaStream_t stream,
                                              const BagLayout& layout) {
  constexpr const char* kOp = "EmbeddingPoolBackwardDeterministicCuda";
  TS_RETURN_IF_ERROR(internal::ValidatePoolArgs(kOp, d_grad_rows, num_rows, d_offsets,
                                                d_segments.offsets, d_grad_out, num_bags, dim,
                                                layout));
  TS_RETURN_IF_ERROR(internal::ValidateSegmentsArgs(kOp, d_segments, num_rows, -1));
  const int64_t total = num_rows * dim;
  if (total == 0 || num_bags == 0 || d_segments.num_positions == 0) return OkStatus();
  TS_LAUNCH(PoolBackwardSegmentedKernel, GridBlocks(total), kThreadsPerBlock, stream, d_offsets,
            num_bags, d_segments.offsets, d_segments.order, d_weights, d_grad_out, d_grad_rows,
            total, dim, layout);
  return internal::CudaLaunchStatus(kOp);
}

}  // namespace tessera::kernels
