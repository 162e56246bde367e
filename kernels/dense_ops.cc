#include "kernels/dense_ops.h"

#include <string>

#include "kernels/dense.h"

namespace tessera::kernels {
namespace internal {

Status ValidateColumnSumArgs(const char* op, const void* scale, const float* m, int64_t rows,
                             int cols, const float* out, bool needs_scale) {
  if (rows < 0 || cols < 0) {
    return Status::InvalidArgument(std::string(op) + ": need rows >= 0 and cols >= 0, got rows=" +
                                   std::to_string(rows) + " cols=" + std::to_string(cols));
  }
  if (cols > 0 && out == nullptr) return Status::InvalidArgument(std::string(op) + ": null out");
  if (rows > 0 && cols > 0 && (m == nullptr || (needs_scale && scale == nullptr))) {
    return Status::InvalidArgument(std::string(op) + ": null input");
  }
  return OkStatus();
}

Status ValidateCopyColumnsArgs(const float* src, int src_cols, int src_col, const float* dst,
                               int dst_cols, int dst_col, int64_t rows, int cols) {
  if (rows < 0 || cols < 0 || src_col < 0 || dst_col < 0 || src_col + int64_t{cols} > src_cols ||
      dst_col + int64_t{cols} > dst_cols) {
    return Status::InvalidArgument(
        "CopyColumns: need rows >= 0 and the column blocks inside their matrices, got rows=" +
        std::to_string(rows) + " cols=" + std::to_string(cols) + " src " + std::to_string(src_col) +
        "/" + std::to_string(src_cols) + " dst " + std::to_string(dst_col) + "/" +
        std::to_string(dst_cols));
  }
  return ValidateSizeAndPointers("CopyColumns", rows * cols, {src, dst});
}

Status ValidateRepeatArgs(const float* x, int64_t size, int repeats, const float* out) {
  if (repeats < 1) {
    return Status::InvalidArgument("RepeatElements: repeats must be >= 1, got " +
                                   std::to_string(repeats));
  }
  return ValidateSizeAndPointers("RepeatElements", size, {x, out});
}

Status ValidateFirstOrderArgs(const float* bias, const float* terms, int num_terms, const float* w,
                              const float* x, int num_x, const float* logits, int64_t batch_size) {
  if (num_terms < 0 || num_x < 0) {
    return Status::InvalidArgument("FirstOrderLogits: need num_terms >= 0 and num_x >= 0, got " +
                                   std::to_string(num_terms) + " and " + std::to_string(num_x));
  }
  TS_RETURN_IF_ERROR(ValidateSizeAndPointers("FirstOrderLogits", batch_size, {bias, logits}));
  if (batch_size > 0 &&
      ((num_terms > 0 && terms == nullptr) || (num_x > 0 && (w == nullptr || x == nullptr)))) {
    return Status::InvalidArgument("FirstOrderLogits: null terms, w or x");
  }
  return OkStatus();
}

}  // namespace internal

Status ColumnSum(const DeviceContext& ctx, const float* m, int64_t rows, int cols, float* out) {
  TS_RETURN_IF_ERROR(
      internal::ValidateColumnSumArgs("ColumnSum", nullptr, m, rows, cols, out, false));
  if (cols == 0) return OkStatus();
  if (ctx.device == Device::kCpu) {
    internal::ColumnSumCpu(m, rows, cols, out);
    return OkStatus();
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return internal::ColumnSumCuda(m, rows, cols, out, ctx.stream);
#endif
  return internal::UnsupportedDevice("ColumnSum", ctx.device);
}

Status WeightedColumnSum(const DeviceContext& ctx, const float* scale, const float* m, int64_t rows,
                         int cols, float* out) {
  if (ctx.device == Device::kCpu) return WeightedColumnSumCpu(scale, m, rows, cols, out);
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return WeightedColumnSumCuda(scale, m, rows, cols, out, ctx.stream);
  }
#endif
  return internal::UnsupportedDevice("WeightedColumnSum", ctx.device);
}

Status CopyColumns(const DeviceContext& ctx, const float* src, int src_cols, int src_col,
                   float* dst, int dst_cols, int dst_col, int64_t rows, int cols, bool accumulate) {
  if (ctx.device == Device::kCpu) {
    return CopyColumnsCpu(src, src_cols, src_col, dst, dst_cols, dst_col, rows, cols, accumulate);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return CopyColumnsCuda(src, src_cols, src_col, dst, dst_cols, dst_col, rows, cols, accumulate,
                           ctx.stream);
  }
#endif
  return internal::UnsupportedDevice("CopyColumns", ctx.device);
}

Status RepeatElements(const DeviceContext& ctx, const float* x, int64_t size, int repeats,
                      float* out) {
  if (ctx.device == Device::kCpu) return RepeatElementsCpu(x, size, repeats, out);
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return RepeatElementsCuda(x, size, repeats, out, ctx.stream);
#endif
  return internal::UnsupportedDevice("RepeatElements", ctx.device);
}

Status FirstOrderLogits(const DeviceContext& ctx, const float* bias, const float* terms,
                        int num_terms, const float* w, const float* x, int num_x, float* logits,
                        int64_t batch_size) {
  if (ctx.device == Device::kCpu) {
    return FirstOrderLogitsCpu(bias, terms, num_terms, w, x, num_x, logits, batch_size);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return FirstOrderLogitsCuda(bias, terms, num_terms, w, x, num_x, logits, batch_size,
                                ctx.stream);
  }
#endif
  return internal::UnsupportedDevice("FirstOrderLogits", ctx.device);
}

}  // namespace tessera::kernels
