#include "kernels/embedding.h"

#include <string>

#include "kernels/dense.h"

namespace tessera::kernels {
namespace internal {

Status ValidateGatherArgs(const char* op, const float* rows, int64_t num_rows,
                          const int32_t* indices, const float* out, int64_t batch_size,
                          int num_fields, int dim) {
  if (num_rows < 0 || batch_size < 0 || num_fields <= 0 || dim <= 0) {
    return Status::InvalidArgument(
        std::string(op) + ": need num_rows >= 0, batch_size >= 0, num_fields > 0, dim > 0, got " +
        "num_rows=" + std::to_string(num_rows) + " batch_size=" + std::to_string(batch_size) +
        " num_fields=" + std::to_string(num_fields) + " dim=" + std::to_string(dim));
  }
  TS_RETURN_IF_ERROR(ValidateSizeAndPointers(op, num_rows, {rows}));
  return ValidateSizeAndPointers(op, batch_size, {indices, out});
}

Status ValidatePoolArgs(const char* op, const float* rows, int64_t num_rows, const int64_t* offsets,
                        const int32_t* indices, const float* out, int64_t num_bags, int dim,
                        const BagLayout& layout) {
  if (num_rows < 0 || num_bags < 0 || dim <= 0) {
    return Status::InvalidArgument(
        std::string(op) +
        ": need num_rows >= 0, num_bags >= 0, dim > 0, got num_rows=" + std::to_string(num_rows) +
        " num_bags=" + std::to_string(num_bags) + " dim=" + std::to_string(dim));
  }
  if (layout.bags_per_row < 1 ||
      (layout.row_stride != 0 &&
       layout.row_stride < static_cast<int64_t>(layout.bags_per_row) * dim)) {
    return Status::InvalidArgument(
        std::string(op) + ": a bag layout needs bags_per_row >= 1 and a row stride of 0 or at " +
        "least bags_per_row x dim, got bags_per_row=" + std::to_string(layout.bags_per_row) +
        " row_stride=" + std::to_string(layout.row_stride) + " dim=" + std::to_string(dim));
  }
  TS_RETURN_IF_ERROR(ValidateSizeAndPointers(op, num_rows, {rows}));
  return ValidateSizeAndPointers(op, num_bags, {offsets, indices, out});
}

Status ValidateSegmentsArgs(const char* op, const SegmentsView& segments, int64_t num_rows,
                            int64_t num_positions) {
  if (segments.num_rows != num_rows ||
      (num_positions >= 0 && segments.num_positions != num_positions)) {
    return Status::InvalidArgument(
        std::string(op) + ": the segment plan covers " + std::to_string(segments.num_rows) +
        " rows and " + std::to_string(segments.num_positions) + " positions, the call has " +
        std::to_string(num_rows) + " rows" +
        (num_positions >= 0 ? " and " + std::to_string(num_positions) + " positions" : ""));
  }
  if (segments.offsets == nullptr || (segments.num_positions > 0 && segments.order == nullptr)) {
    return Status::InvalidArgument(std::string(op) + ": the segment plan has null arrays");
  }
  return OkStatus();
}

}  // namespace internal

namespace {

// A deterministic CUDA context never falls back to the atomic backward silently.
[[maybe_unused]] Status RequireSegmentsIfDeterministic(const DeviceContext& ctx, const char* op) {
  if (!ctx.deterministic) return OkStatus();
  return Status::FailedPrecondition(std::string(op) +
                                    ": a deterministic CUDA context needs the lookups' segment "
                                    "plan; the atomic kernel is not deterministic");
}

}  // namespace

Status EmbeddingGather(const DeviceContext& ctx, const float* rows, int64_t num_rows,
                       const int32_t* indices, float* out, int64_t batch_size, int num_fields,
                       int dim) {
  if (ctx.device == Device::kCpu) {
    return EmbeddingGatherCpu(rows, num_rows, indices, out, batch_size, num_fields, dim);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return EmbeddingGatherCuda(rows, num_rows, indices, out, batch_size, num_fields, dim,
                               ctx.stream);
  }
#endif
  return internal::UnsupportedDevice("EmbeddingGather", ctx.device);
}

Status EmbeddingGatherBackward(const DeviceContext& ctx, const int32_t* indices,
                               const float* grad_out, float* grad_rows, int64_t num_rows,
                               int64_t batch_size, int num_fields, int dim,
                               const SegmentsView* segments) {
  if (ctx.device == Device::kCpu) {
    return EmbeddingGatherBackwardCpu(indices, grad_out, grad_rows, num_rows, batch_size,
                                      num_fields, dim);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    if (segments != nullptr) {
      return EmbeddingGatherBackwardDeterministicCuda(*segments, grad_out, grad_rows, num_rows,
                                                      batch_size, num_fields, dim, ctx.stream);
    }
    TS_RETURN_IF_ERROR(RequireSegmentsIfDeterministic(ctx, "EmbeddingGatherBackward"));
    return EmbeddingGatherBackwardCuda(indices, grad_out, grad_rows, num_rows, batch_size,
                                       num_fields, dim, ctx.stream);
  }
#endif
  (void)segments;  // read by the CUDA branch only
  return internal::UnsupportedDevice("EmbeddingGatherBackward", ctx.device);
}

Status EmbeddingPool(const DeviceContext& ctx, const float* rows, int64_t num_rows,
                     const int64_t* offsets, const int32_t* indices, const float* weights,
                     float* out, int64_t num_bags, int dim, const BagLayout& layout) {
  if (ctx.device == Device::kCpu) {
    return EmbeddingPoolCpu(rows, num_rows, offsets, indices, weights, out, num_bags, dim, layout);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return EmbeddingPoolCuda(rows, num_rows, offsets, indices, weights, out, num_bags, dim,
                             ctx.stream, layout);
  }
#endif
  return internal::UnsupportedDevice("EmbeddingPool", ctx.device);
}

Status EmbeddingPoolBackward(const DeviceContext& ctx, const int64_t* offsets,
                             const int32_t* indices, const float* weights, const float* grad_out,
                             float* grad_rows, int64_t num_rows, int64_t num_bags, int dim,
                             const SegmentsView* segments, const BagLayout& layout) {
  if (ctx.device == Device::kCpu) {
    return EmbeddingPoolBackwardCpu(offsets, indices, weights, grad_out, grad_rows, num_rows,
                                    num_bags, dim, layout);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    if (segments != nullptr) {
      return EmbeddingPoolBackwardDeterministicCuda(offsets, *segments, weights, grad_out,
                                                    grad_rows, num_rows, num_bags, dim, ctx.stream,
                                                    layout);
    }
    TS_RETURN_IF_ERROR(RequireSegmentsIfDeterministic(ctx, "EmbeddingPoolBackward"));
    return EmbeddingPoolBackwardCuda(offsets, indices, weights, grad_out, grad_rows, num_rows,
                                     num_bags, dim, ctx.stream, layout);
  }
#endif
  (void)segments;  // read by the CUDA branch only
  return internal::UnsupportedDevice("EmbeddingPoolBackward", ctx.device);
}

}  // namespace tessera::kernels
