#include "kernels/cross.h"

#include <string>

#include "kernels/dense.h"

namespace tessera::kernels {
namespace internal {
namespace {

Status ValidateCrossSizes(const char* op, int64_t batch_size, int dim) {
  if (batch_size < 0 || dim <= 0) {
    return Status::InvalidArgument(std::string(op) + ": need batch_size >= 0 and dim > 0, got " +
                                   "batch_size=" + std::to_string(batch_size) +
                                   " dim=" + std::to_string(dim));
  }
  return ValidateBlasRows(op, batch_size);
}

}  // namespace

Status ValidateCrossForwardArgs(const float* x0, const float* xl, const float* w, const float* b,
                                const float* y, int64_t batch_size, int dim) {
  TS_RETURN_IF_ERROR(ValidateCrossSizes("CrossForward", batch_size, dim));
  if (w == nullptr || b == nullptr) {
    return Status::InvalidArgument("CrossForward: w and b must be non-null");
  }
  return ValidateSizeAndPointers("CrossForward", batch_size, {x0, xl, y});
}

Status ValidateCrossBackwardArgs(const float* x0, const float* xl, const float* w, const float* z,
                                 const float* dy, const float* dx0, const float* dxl,
                                 const float* dw, const float* db, const float* workspace,
                                 int64_t batch_size, int dim) {
  TS_RETURN_IF_ERROR(ValidateCrossSizes("CrossBackward", batch_size, dim));
  if (w == nullptr || dw == nullptr || db == nullptr) {
    return Status::InvalidArgument("CrossBackward: w, dw and db must be non-null");
  }
  return ValidateSizeAndPointers("CrossBackward", batch_size, {x0, xl, z, dy, dx0, dxl, workspace});
}

}  // namespace internal

Status CrossForward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x0,
                    const float* xl, const float* w, const float* b, float* z, float* y,
                    int64_t batch_size, int dim) {
  if (ctx.device == Device::kCpu) return CrossForwardCpu(x0, xl, w, b, z, y, batch_size, dim);
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return CrossForwardCuda(cublas, x0, xl, w, b, z, y, batch_size, dim, ctx.stream);
  }
#else
  (void)cublas;
#endif
  return internal::UnsupportedDevice("CrossForward", ctx.device);
}

Status CrossBackward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x0,
                     const float* xl, const float* w, const float* z, const float* dy, float* dx0,
                     float* dxl, float* dw, float* db, float* workspace, int64_t batch_size,
                     int dim) {
  if (ctx.device == Device::kCpu) {
    return CrossBackwardCpu(x0, xl, w, z, dy, dx0, dxl, dw, db, workspace, batch_size, dim);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return CrossBackwardCuda(cublas, x0, xl, w, z, dy, dx0, dxl, dw, db, workspace, batch_size, dim,
                             ctx.stream);
  }
#else
  (void)cublas;
#endif
  return internal::UnsupportedDevice("CrossBackward", ctx.device);
}

}  // namespace tessera::kernels
