#include "kernels/mf_device.h"

#include <string>

namespace tessera::kernels {
namespace {

// Host data, host kernels: forwards the caller's pointers untouched to the kCpu entry points, so
// training on the CPU costs exactly what a direct MfBatchGradient / MfPredict call costs.
class CpuMfWorkspace final : public MfDeviceWorkspace {
 public:
  explicit CpuMfWorkspace(const DeviceContext& ctx) : ctx_(ctx) {}

  Device device() const override { return Device::kCpu; }

  Status Reserve(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) override {
    return internal::ValidateMfReserveArgs(num_samples, dim, num_users, num_items);
  }

  Status BatchGradient(const MfBatch& host_batch, float* host_user_grads, float* host_item_grads,
                       double* sq_error_sum) override {
    return MfBatchGradient(ctx_, host_batch, host_user_grads, host_item_grads, sq_error_sum);
  }

  Status Predict(const MfBatch& host_batch, float* host_predictions) override {
    return MfPredict(ctx_, host_batch, host_predictions);
  }

 private:
  const DeviceContext ctx_;  // kCpu; its helper and scratch (if any) are borrowed
};

}  // namespace

namespace internal {

Status ValidateMfReserveArgs(int64_t num_samples, int dim, int64_t num_users, int64_t num_items) {
  if (num_samples < 0 || num_users < 0 || num_items < 0 || dim <= 0) {
    return Status::InvalidArgument(
        "MfDeviceWorkspace::Reserve: need sizes >= 0 and dim > 0, got num_samples=" +
        std::to_string(num_samples) + " dim=" + std::to_string(dim) +
        " num_users=" + std::to_string(num_users) + " num_items=" + std::to_string(num_items));
  }
  return OkStatus();
}

}  // namespace internal

StatusOr<std::unique_ptr<MfDeviceWorkspace>> MfDeviceWorkspace::Create(const DeviceContext& ctx) {
  switch (ctx.device) {
    case Device::kCpu:
      return std::unique_ptr<MfDeviceWorkspace>(new CpuMfWorkspace(ctx));
    case Device::kCuda:
      // Without CUDA this is FailedPrecondition("built without CUDA support").
      TS_RETURN_IF_ERROR(CheckCudaAvailable());
#if TESSERA_WITH_CUDA
      return internal::CreateMfCudaWorkspace(ctx);
#else
      return Status::FailedPrecondition("MfDeviceWorkspace on device cuda: built without CUDA");
#endif
  }
  return Status::InvalidArgument("MfDeviceWorkspace: unknown device " +
                                 std::to_string(static_cast<int>(ctx.device)));
}

}  // namespace tessera::kernels
