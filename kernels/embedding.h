// Embedding lookups of the CTR models on the rows a batch pulled from the servers: the worker
// holds the batch's UNIQUE rows as a dense num_rows x dim matrix (row-major) and maps every
// feature occurrence to a row index (int32, in [0, num_rows)).
// - Gather (one-hot fields): out[b, f, :] = rows[indices[b * num_fields + f], :], giving the
//   batch_size x num_fields x dim field embeddings that FmForward and the MLP input take.
// - Pool (multi-hot fields): bag k covers positions [offsets[k], offsets[k + 1]) of indices and
//   weights (CSR); out[k, :] = sum_p weights[p] * rows[indices[p], :] (weights null: all 1, a
//   plain sum; an empty bag gives zeros). With bag = b * num_multi_hot_fields + f the output is
//   again batch_size x fields x dim. Mean pooling is weights[p] = 1 / bag size.
// - The backwards scatter-ADD into grad_rows (num_rows x dim), the gradient per unique row that
//   the worker pushes: they are ADDED to, so one zeroed buffer collects every lookup of a
//   table (gathers and pools). The weights get no gradient (they are feature values).
// Memory, errors and devices as in kernels/dense.h: caller-owned buffers, kCuda pointers are
// device memory (offsets, indices and weights included) and work is queued on ctx.stream
// without a sync. InvalidArgument for negative sizes, num_fields <= 0, dim <= 0, a null
// pointer the call needs, and on CPU (where the host can read them) an index out of range or
// decreasing / negative offsets, found before any output is written.
// Thread-compatible: concurrent calls must not share outputs.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/hd.h"
#include "kernels/segments.h"

namespace tessera::kernels {

// Where a pool writes bag k's dim floats (and its backward reads their gradient): the bags in
// groups of bags_per_row side by side, consecutive groups row_stride floats apart. That is a block
// of columns in a wider row-major matrix, such as the MLP's input x0 = [field embeddings | dense
// features], which the pool then fills in place (no copy of the embeddings into it). The default
// is the dense num_bags x dim matrix.
struct BagLayout {
  int bags_per_row = 1;    // >= 1
  int64_t row_stride = 0;  // 0: bags_per_row * dim (dense); else >= bags_per_row * dim
};

// The first float of bag k.
TS_HD int64_t BagStart(const BagLayout& layout, int64_t bag, int dim) {
  const int64_t row = bag / layout.bags_per_row;
  const int64_t stride =
      layout.row_stride != 0 ? layout.row_stride : static_cast<int64_t>(layout.bags_per_row) * dim;
  return row * stride + (bag - row * layout.bags_per_row) * dim;
}

// indices: batch_size x num_fields; out: batch_size x num_fields x dim.
// REQUIRES: out does not overlap rows.
Status EmbeddingGather(const DeviceContext& ctx, const float* rows, int64_t num_rows,
                       const int32_t* indices, float* out, int64_t batch_size, int num_fields,
                       int dim);
Status EmbeddingGatherCpu(const float* rows, int64_t num_rows, const int32_t* indices, float* out,
                          int64_t batch_size, int num_fields, int dim);

// grad_rows[indices[i], :] += grad_out[i, :] for every lookup i (grad_out: batch_size x
// num_fields x dim). CPU adds in lookup order (deterministic). REQUIRES: grad_rows overlaps no
// input.
// kCuda: with `segments` (device memory: the plan of indices[0, batch_size * num_fields) over
// num_rows rows, kernels/segments.h) EmbeddingGatherBackwardDeterministicCuda, else the atomic
// EmbeddingGatherBackwardCuda; a ctx.deterministic context without segments is
// FailedPrecondition. kCpu ignores `segments` (always deterministic).
Status EmbeddingGatherBackward(const DeviceContext& ctx, const int32_t* indices,
                               const float* grad_out, float* grad_rows, int64_t num_rows,
                               int64_t batch_size, int num_fields, int dim,
                               const SegmentsView* segments = nullptr);
Status EmbeddingGatherBackwardCpu(const int32_t* indices, const float* grad_out, float* grad_rows,
                                  int64_t num_rows, int64_t batch_size, int num_fields, int dim);

// offsets: num_bags + 1 non-decreasing values >= 0; indices and weights (weights may be null)
// are read at positions [offsets[0], offsets[num_bags]). out: the bags as `layout` places them
// (default num_bags x dim); the floats between the bags are left alone.
// REQUIRES: out does not overlap rows.
Status EmbeddingPool(const DeviceContext& ctx, const float* rows, int64_t num_rows,
                     const int64_t* offsets, const int32_t* indices, const float* weights,
                     float* out, int64_t num_bags, int dim, const BagLayout& layout = {});
Status EmbeddingPoolCpu(const float* rows, int64_t num_rows, const int64_t* offsets,
                        const int32_t* indices, const float* weights, float* out, int64_t num_bags,
                        int dim, const BagLayout& layout = {});

// grad_rows[indices[p], :] += weights[p] * grad_out[k, :] for every position p of bag k
// (grad_out: the bags as `layout` places them, default num_bags x dim). CPU adds in bag, then
// position order (deterministic).
// kCuda: with `segments` (device memory: the plan of indices[offsets[0], offsets[num_bags]),
// built from the host's indices + offsets[0], so its positions count from offsets[0])
// EmbeddingPoolBackwardDeterministicCuda, else the atomic EmbeddingPoolBackwardCuda; a
// ctx.deterministic context without segments is FailedPrecondition. kCpu ignores `segments`.
Status EmbeddingPoolBackward(const DeviceContext& ctx, const int64_t* offsets,
                             const int32_t* indices, const float* weights, const float* grad_out,
                             float* grad_rows, int64_t num_rows, int64_t num_bags, int dim,
                             const SegmentsView* segments = nullptr, const BagLayout& layout = {});
Status EmbeddingPoolBackwardCpu(const int64_t* offsets, const int32_t* indices,
                                const float* weights, const float* grad_out, float* grad_rows,
                                int64_t num_rows, int64_t num_bags, int dim,
                                const BagLayout& layout = {});

#if TESSERA_WITH_CUDA
// Device twins, one thread per output float (grid-stride). Index values and offsets live on the
// device and are not checked on the host: REQUIRES valid. An out-of-range index is never read:
// the forward writes NaN into the affected output row (gather) or bag (pool), and the backward
// skips it. Forwards are deterministic; the backwards add with float atomicAdd, so a row that
// several lookups share gets its sum in unspecified order (not bitwise reproducible; equal to
// the CPU to float rounding).
Status EmbeddingGatherCuda(const float* d_rows, int64_t num_rows, const int32_t* d_indices,
                           float* d_out, int64_t batch_size, int num_fields, int dim,
                           struct CUstream_st* stream);
Status EmbeddingGatherBackwardCuda(const int32_t* d_indices, const float* d_grad_out,
                                   float* d_grad_rows, int64_t num_rows, int64_t batch_size,
                                   int num_fields, int dim, struct CUstream_st* stream);
Status EmbeddingPoolCuda(const float* d_rows, int64_t num_rows, const int64_t* d_offsets,
                         const int32_t* d_indices, const float* d_weights, float* d_out,
                         int64_t num_bags, int dim, struct CUstream_st* stream,
                         const BagLayout& layout = {});
Status EmbeddingPoolBackwardCuda(const int64_t* d_offsets, const int32_t* d_indices,
                                 const float* d_weights, const float* d_grad_out,
                                 float* d_grad_rows, int64_t num_rows, int64_t num_bags, int dim,
                                 struct CUstream_st* stream, const BagLayout& layout = {});

// Deterministic backwards: no atomics. One thread per element of grad_rows walks its row's
// lookups in the plan's order (increasing position) and adds them to the element's value, so a
// run gives the same bits as the next. The gather backward adds exactly as the CPU does (plain
// float additions in lookup order: the CPU's bits); the pool backward adds weights[p] * grad_out
// in the CPU's order too, but nvcc may fuse that multiply-add, so it matches the CPU to float
// rounding. The pool's threads find a position's bag by binary search in d_offsets.
// InvalidArgument as the atomic twins, or for segments whose num_rows is not num_rows (gather:
// or whose num_positions is not batch_size * num_fields) or whose arrays are null. REQUIRES:
// the segments are the plan of these indices (see EmbeddingGatherBackward /
// EmbeddingPoolBackward; not checked, they are on the device).
Status EmbeddingGatherBackwardDeterministicCuda(const SegmentsView& d_segments,
                                                const float* d_grad_out, float* d_grad_rows,
                                                int64_t num_rows, int64_t batch_size,
                                                int num_fields, int dim,
                                                struct CUstream_st* stream);
Status EmbeddingPoolBackwardDeterministicCuda(const int64_t* d_offsets,
                                              const SegmentsView& d_segments,
                                              const float* d_weights, const float* d_grad_out,
                                              float* d_grad_rows, int64_t num_rows,
                                              int64_t num_bags, int dim, struct CUstream_st* stream,
                                              const BagLayout& layout = {});
#endif

namespace internal {
// Size and pointer checks shared by the Cpu and Cuda entry points (pointer values only).
// `rows` is the rows (forward) or grad_rows (backward) matrix; `out` the output or its grad.
// rows may be null only when num_rows == 0; indices and out only when there is no lookup (gather)
// or no bag (pool: indices must be non-null even when every bag is empty); offsets only when
// num_bags == 0.
Status ValidateGatherArgs(const char* op, const float* rows, int64_t num_rows,
                          const int32_t* indices, const float* out, int64_t batch_size,
                          int num_fields, int dim);
// ValidatePoolArgs also checks `layout` (bags_per_row >= 1, row_stride 0 or >= bags_per_row * dim).
Status ValidatePoolArgs(const char* op, const float* rows, int64_t num_rows, const int64_t* offsets,
                        const int32_t* indices, const float* out, int64_t num_bags, int dim,
                        const BagLayout& layout = {});
// InvalidArgument naming `op` unless `segments` has num_rows rows, num_positions positions
// (num_positions < 0: any count) and non-null arrays (order only when it has positions).
Status ValidateSegmentsArgs(const char* op, const SegmentsView& segments, int64_t num_rows,
                            int64_t num_positions);
}  // namespace internal

}  // namespace tessera::kernels
