#include "kernels/dense.h"

#include <cstdint>
#include <limits>
#include <string>

#include "kernels/dense_ops.h"

namespace tessera::kernels {
namespace internal {

Status ValidateSizeAndPointers(const char* op, int64_t size,
                               std::initializer_list<const void*> required) {
  if (size < 0) {
    return Status::InvalidArgument(std::string(op) + ": size must be >= 0, got " +
                                   std::to_string(size));
  }
  if (size == 0) return OkStatus();
  for (const void* p : required) {
    if (p == nullptr) return Status::InvalidArgument(std::string(op) + ": null input or output");
  }
  return OkStatus();
}

Status ValidateBlasRows(const char* op, int64_t rows) {
  if (rows > std::numeric_limits<int32_t>::max()) {
    return Status::InvalidArgument(std::string(op) + ": batch_size " + std::to_string(rows) +
                                   " exceeds the BLAS limit (INT32_MAX rows)");
  }
  return OkStatus();
}

namespace {

Status ValidateLinearSizes(const char* op, int64_t batch_size, int in_dim, int out_dim) {
  if (batch_size < 0 || in_dim <= 0 || out_dim <= 0) {
    return Status::InvalidArgument(std::string(op) + ": need batch_size >= 0, in_dim > 0, " +
                                   "out_dim > 0, got batch_size=" + std::to_string(batch_size) +
                                   " in_dim=" + std::to_string(in_dim) +
                                   " out_dim=" + std::to_string(out_dim));
  }
  return ValidateBlasRows(op, batch_size);
}

}  // namespace

Status ValidateLinearForwardArgs(const float* x, const float* w, const float* y, int64_t batch_size,
                                 int in_dim, int out_dim) {
  TS_RETURN_IF_ERROR(ValidateLinearSizes("LinearForward", batch_size, in_dim, out_dim));
  return ValidateSizeAndPointers("LinearForward", batch_size, {x, w, y});
}

Status ValidateLinearBackwardArgs(const float* x, const float* w, const float* dy, const float* dx,
                                  const float* dw, int64_t batch_size, int in_dim, int out_dim) {
  TS_RETURN_IF_ERROR(ValidateLinearSizes("LinearBackward", batch_size, in_dim, out_dim));
  if (dw == nullptr) return Status::InvalidArgument("LinearBackward: dw must be non-null");
  TS_RETURN_IF_ERROR(ValidateSizeAndPointers("LinearBackward", batch_size, {x, dy}));
  if (batch_size > 0 && dx != nullptr && w == nullptr) {
    return Status::InvalidArgument("LinearBackward: dx needs w");
  }
  return OkStatus();
}

Status UnsupportedDevice(const char* op, Device device) {
  if (device == Device::kCuda) {
    return Status::FailedPrecondition(std::string(op) + " on device cuda: built without CUDA");
  }
  return Status::InvalidArgument(std::string(op) + ": unknown device " +
                                 std::to_string(static_cast<int>(device)));
}

}  // namespace internal

Status LinearForward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x,
                     const float* w, const float* b, float* y, int64_t batch_size, int in_dim,
                     int out_dim) {
  if (ctx.device == Device::kCpu) return LinearForwardCpu(x, w, b, y, batch_size, in_dim, out_dim);
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return LinearForwardCuda(cublas, x, w, b, y, batch_size, in_dim, out_dim, ctx.stream);
  }
#else
  (void)cublas;
#endif
  return internal::UnsupportedDevice("LinearForward", ctx.device);
}

Status LinearBackward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x,
                      const float* w, const float* dy, float* dx, float* dw, float* db,
                      int64_t batch_size, int in_dim, int out_dim) {
  if (ctx.device == Device::kCpu) {
    return LinearBackwardCpu(x, w, dy, dx, dw, db, batch_size, in_dim, out_dim);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return LinearBackwardCuda(cublas, x, w, dy, dx, dw, db, batch_size, in_dim, out_dim,
                              ctx.stream);
  }
#else
  (void)cublas;
#endif
  return internal::UnsupportedDevice("LinearBackward", ctx.device);
}

Status LinearReluForward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x,
                         const float* w, const float* b, float* y, int64_t batch_size, int in_dim,
                         int out_dim) {
  if (ctx.device == Device::kCpu) {
    return LinearReluForwardCpu(x, w, b, y, batch_size, in_dim, out_dim);
  }
  TS_RETURN_IF_ERROR(LinearForward(ctx, cublas, x, w, b, y, batch_size, in_dim, out_dim));
  return ReluForward(ctx, y, y, batch_size * out_dim);
}

Status ReluBackwardColumnSum(const DeviceContext& ctx, const float* y, const float* dy, float* dx,
                             float* db, int64_t rows, int cols) {
  if (ctx.device == Device::kCpu) return ReluBackwardColumnSumCpu(y, dy, dx, db, rows, cols);
  TS_RETURN_IF_ERROR(ReluBackward(ctx, y, dy, dx, rows * cols));
  return ColumnSum(ctx, dx, rows, cols, db);
}

Status ReluForward(const DeviceContext& ctx, const float* x, float* y, int64_t size) {
  if (ctx.device == Device::kCpu) return ReluForwardCpu(x, y, size);
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return ReluForwardCuda(x, y, size, ctx.stream);
#endif
  return internal::UnsupportedDevice("ReluForward", ctx.device);
}

Status ReluBackward(const DeviceContext& ctx, const float* y, const float* dy, float* dx,
                    int64_t size) {
  if (ctx.device == Device::kCpu) return ReluBackwardCpu(y, dy, dx, size);
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return ReluBackwardCuda(y, dy, dx, size, ctx.stream);
#endif
  return internal::UnsupportedDevice("ReluBackward", ctx.device);
}

Status SigmoidBceForward(const DeviceContext& ctx, const float* logits, const float* labels,
                         float* probs, double* loss_sum, int64_t batch_size) {
  if (ctx.device == Device::kCpu) {
    return SigmoidBceForwardCpu(logits, labels, probs, loss_sum, batch_size);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    if (ctx.deterministic) {
      return SigmoidBceForwardDeterministicCuda(logits, labels, probs, loss_sum, batch_size,
                                                ctx.stream);
    }
    return SigmoidBceForwardCuda(logits, labels, probs, loss_sum, batch_size, ctx.stream);
  }
#endif
  return internal::UnsupportedDevice("SigmoidBceForward", ctx.device);
}

Status SigmoidBceBackward(const DeviceContext& ctx, const float* logits, const float* labels,
                          float* dlogits, int64_t batch_size, float loss_scale) {
  if (ctx.device == Device::kCpu) {
    return SigmoidBceBackwardCpu(logits, labels, dlogits, batch_size, loss_scale);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return SigmoidBceBackwardCuda(logits, labels, dlogits, batch_size, loss_scale, ctx.stream);
  }
#endif
  return internal::UnsupportedDevice("SigmoidBceBackward", ctx.device);
}

}  // namespace tessera::kernels
