// The small row and column operations the CTR models compose between their layers (worker/
// ctr_model.cc): column sums (bias gradients), a weighted column sum (the gradient of the dense
// features' linear weights), copying a block of columns between two row-major matrices (building
// x0 = [embeddings, dense features], splitting a concatenation's gradient), repeating each element
// (one sample's logit gradient to its bags) and the first-order logit.
// Memory, errors and devices as in kernels/dense.h: caller-owned row-major buffers, outputs
// OVERWRITTEN unless the comment says "added to", kCuda pointers are device memory and work is
// queued on ctx.stream without a sync. InvalidArgument for negative sizes, a column block outside
// its matrix, or a null pointer the call needs (when there is something to compute).
//
// Determinism: no atomics on either device. The CPU loops compute each output in index order, so a
// CPU result is the same bits as the scalar loop written out in the comment (ColumnSum: by blocks
// of rows, as its comment says), whatever the number of threads they are cut over; the CUDA twins
// reduce in a fixed order (each output written by one thread) and match the CPU to float rounding
// (nvcc fuses multiply-adds; the column sums combine partial sums in another order).
// Thread-compatible: concurrent calls must not share outputs.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::kernels {

// out[j] = sum_i m[i * cols + j] for j < cols (m: rows x cols). CPU: blocks of 256 rows each
// summed in row order, the blocks' sums added in block order (internal::ColumnSumCpu, whatever
// the thread count; up to 256 rows the plain row-order sum). REQUIRES: out does not overlap m.
Status ColumnSum(const DeviceContext& ctx, const float* m, int64_t rows, int cols, float* out);

// out[j] = sum_i scale[i] * m[i * cols + j] (scale: rows). CPU: out[j] = 0, then
// out[j] += scale[i] * m[i * cols + j] in row order. REQUIRES: out overlaps no input.
Status WeightedColumnSum(const DeviceContext& ctx, const float* scale, const float* m, int64_t rows,
                         int cols, float* out);
Status WeightedColumnSumCpu(const float* scale, const float* m, int64_t rows, int cols, float* out);

// For i < rows and k < cols: dst[i * dst_cols + dst_col + k] = src[i * src_cols + src_col + k]
// (accumulate: added to dst instead). REQUIRES src_col + cols <= src_cols, dst_col + cols <=
// dst_cols, and dst does not overlap src.
Status CopyColumns(const DeviceContext& ctx, const float* src, int src_cols, int src_col,
                   float* dst, int dst_cols, int dst_col, int64_t rows, int cols, bool accumulate);
Status CopyColumnsCpu(const float* src, int src_cols, int src_col, float* dst, int dst_cols,
                      int dst_col, int64_t rows, int cols, bool accumulate);

// out[i * repeats + r] = x[i] for i < size, r < repeats (repeats >= 1). REQUIRES: no overlap.
Status RepeatElements(const DeviceContext& ctx, const float* x, int64_t size, int repeats,
                      float* out);
Status RepeatElementsCpu(const float* x, int64_t size, int repeats, float* out);

// The first-order part of a CTR logit, per sample b < batch_size:
//   logits[b] = bias[0] + (sum_{f < num_terms} terms[b * num_terms + f]
//                          + sum_{j < num_x} w[j] * x[b * num_x + j])
// summed left to right in that order. terms may be null when num_terms == 0, w and x when
// num_x == 0 (logits[b] = bias[0] + 0). bias is one float in the context's memory.
Status FirstOrderLogits(const DeviceContext& ctx, const float* bias, const float* terms,
                        int num_terms, const float* w, const float* x, int num_x, float* logits,
                        int64_t batch_size);
Status FirstOrderLogitsCpu(const float* bias, const float* terms, int num_terms, const float* w,
                           const float* x, int num_x, float* logits, int64_t batch_size);

#if TESSERA_WITH_CUDA
// Device twins (see above); ColumnSum's is internal::ColumnSumCuda (kernels/dense.h).
Status WeightedColumnSumCuda(const float* d_scale, const float* d_m, int64_t rows, int cols,
                             float* d_out, struct CUstream_st* stream);
Status CopyColumnsCuda(const float* d_src, int src_cols, int src_col, float* d_dst, int dst_cols,
                       int dst_col, int64_t rows, int cols, bool accumulate,
                       struct CUstream_st* stream);
Status RepeatElementsCuda(const float* d_x, int64_t size, int repeats, float* d_out,
                          struct CUstream_st* stream);
Status FirstOrderLogitsCuda(const float* d_bias, const float* d_terms, int num_terms,
                            const float* d_w, const float* d_x, int num_x, float* d_logits,
                            int64_t batch_size, struct CUstream_st* stream);
#endif

namespace internal {
// Argument checks shared by the Cpu and Cuda entry points (pointer values only).
Status ValidateColumnSumArgs(const char* op, const void* scale, const float* m, int64_t rows,
                             int cols, const float* out, bool needs_scale);
Status ValidateCopyColumnsArgs(const float* src, int src_cols, int src_col, const float* dst,
                               int dst_cols, int dst_col, int64_t rows, int cols);
Status ValidateRepeatArgs(const float* x, int64_t size, int repeats, const float* out);
Status ValidateFirstOrderArgs(const float* bias, const float* terms, int num_terms, const float* w,
                              const float* x, int num_x, const float* logits, int64_t batch_size);
}  // namespace internal

}  // namespace tessera::kernels
