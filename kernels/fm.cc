#include "kernels/fm.h"

#include <string>

#include "kernels/dense.h"

namespace tessera::kernels {
namespace internal {

Status ValidateFmArgs(const char* op, std::initializer_list<const void*> required,
                      int64_t batch_size, int num_fields, int dim,
                      std::initializer_list<int64_t> strides) {
  if (batch_size < 0 || num_fields <= 0 || dim <= 0) {
    return Status::InvalidArgument(std::string(op) + ": need batch_size >= 0, num_fields > 0, " +
                                   "dim > 0, got batch_size=" + std::to_string(batch_size) +
                                   " num_fields=" + std::to_string(num_fields) +
                                   " dim=" + std::to_string(dim));
  }
  for (int64_t stride : strides) {
    if (stride != 0 && stride < static_cast<int64_t>(num_fields) * dim) {
      return Status::InvalidArgument(std::string(op) + ": a sample stride of " +
                                     std::to_string(stride) + " floats is shorter than its " +
                                     std::to_string(num_fields) + " x " + std::to_string(dim) +
                                     " embeddings");
    }
  }
  return ValidateSizeAndPointers(op, batch_size, required);
}

}  // namespace internal

Status FmForward(const DeviceContext& ctx, const float* v, float* y, int64_t batch_size,
                 int num_fields, int dim, int64_t v_stride, bool accumulate) {
  if (ctx.device == Device::kCpu) {
    return FmForwardCpu(v, y, batch_size, num_fields, dim, v_stride, accumulate);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return FmForwardCuda(v, y, batch_size, num_fields, dim, ctx.stream, v_stride, accumulate);
  }
#endif
  return internal::UnsupportedDevice("FmForward", ctx.device);
}

Status FmBackward(const DeviceContext& ctx, const float* v, const float* dy, float* dv,
                  int64_t batch_size, int num_fields, int dim, int64_t v_stride, int64_t dv_stride,
                  bool accumulate) {
  if (ctx.device == Device::kCpu) {
    return FmBackwardCpu(v, dy, dv, batch_size, num_fields, dim, v_stride, dv_stride, accumulate);
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    return FmBackwardCuda(v, dy, dv, batch_size, num_fields, dim, ctx.stream, v_stride, dv_stride,
                          accumulate);
  }
#endif
  return internal::UnsupportedDevice("FmBackward", ctx.device);
}

}  // namespace tessera::kernels
