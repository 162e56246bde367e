// CPU twins of kernels/dense_ops.h: plain loops in index order (the bits the header promises).
// A copy of columns is cut by rows over the calling thread's OpenMP team (kernels/cpu_parallel.h),
// which leaves every element's arithmetic as it was.
#include <algorithm>
#include <cstring>

#include "kernels/cpu_parallel.h"
#include "kernels/dense_ops.h"
#include "kernels/dense_ops_math.h"

namespace tessera::kernels {

Status WeightedColumnSumCpu(const float* scale, const float* m, int64_t rows, int cols,
                            float* out) {
  TS_RETURN_IF_ERROR(
      internal::ValidateColumnSumArgs("WeightedColumnSum", scale, m, rows, cols, out, true));
  std::fill_n(out, cols, 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const float s = scale[i];
    const float* __restrict__ row = m + i * cols;
    float* __restrict__ sum = out;
    for (int j = 0; j < cols; ++j) sum[j] += s * row[j];
  }
  return OkStatus();
}

Status CopyColumnsCpu(const float* src, int src_cols, int src_col, float* dst, int dst_cols,
                      int dst_col, int64_t rows, int cols, bool accumulate) {
  TS_RETURN_IF_ERROR(internal::ValidateCopyColumnsArgs(src, src_cols, src_col, dst, dst_cols,
                                                       dst_col, rows, cols));
  if (cols == 0) return OkStatus();
  CpuParallelFor(rows, kParallelGrainFloats / cols + 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* __restrict__ from = src + i * src_cols + src_col;
      float* __restrict__ to = dst + i * dst_cols + dst_col;
      if (accumulate) {
        for (int k = 0; k < cols; ++k) to[k] += from[k];
      } else {
        std::memcpy(to, from, sizeof(float) * cols);
      }
    }
  });
  return OkStatus();
}

Status RepeatElementsCpu(const float* x, int64_t size, int repeats, float* out) {
  TS_RETURN_IF_ERROR(internal::ValidateRepeatArgs(x, size, repeats, out));
  for (int64_t i = 0; i < size; ++i) std::fill_n(out + i * repeats, repeats, x[i]);
  return OkStatus();
}

Status FirstOrderLogitsCpu(const float* bias, const float* terms, int num_terms, const float* w,
                           const float* x, int num_x, float* logits, int64_t batch_size) {
  TS_RETURN_IF_ERROR(
      internal::ValidateFirstOrderArgs(bias, terms, num_terms, w, x, num_x, logits, batch_size));
  for (int64_t b = 0; b < batch_size; ++b) {
    logits[b] = FirstOrderLogit(bias[0], terms + b * num_terms, num_terms, w, x + b * num_x, num_x);
  }
  return OkStatus();
}

}  // namespace tessera::kernels
