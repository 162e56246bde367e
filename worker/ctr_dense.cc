#include "worker/ctr_dense.h"

#include <string>

#include "kernels/dense_optimizer.h"

namespace tessera::worker {

CtrDenseReplica::CtrDenseReplica(const kernels::DeviceContext& ctx,
                                 const kernels::OptimizerParams& optimizer, size_t size,
                                 size_t slot_floats)
    : ctx_(ctx),
      optimizer_(optimizer),
      size_(size),
      slot_floats_(slot_floats),
      params_(ctx.device, "dense parameters"),
      grads_(ctx.device, "dense gradients"),
      slots_(ctx.device, "dense optimizer state") {}

StatusOr<std::unique_ptr<CtrDenseReplica>> CtrDenseReplica::Create(
    const kernels::DeviceContext& ctx, const kernels::OptimizerParams& optimizer,
    const std::vector<float>& initial_params) {
  kernels::DenseOptimizerState state;
  TS_RETURN_IF_ERROR(kernels::InitDenseOptimizerState(
      optimizer, static_cast<int64_t>(initial_params.size()), &state));
  std::unique_ptr<CtrDenseReplica> replica(
      new CtrDenseReplica(ctx, optimizer, initial_params.size(), state.slots.size()));
  // At least one float each, so that the pointers are never null.
  TS_RETURN_IF_ERROR(replica->params_.Reserve(sizeof(float) * (replica->size_ + 1)));
  TS_RETURN_IF_ERROR(replica->grads_.Reserve(sizeof(float) * (replica->size_ + 1)));
  TS_RETURN_IF_ERROR(replica->slots_.Reserve(sizeof(float) * (replica->slot_floats_ + 1)));
  TS_RETURN_IF_ERROR(replica->Load(initial_params, state.slots, state.step));
  return replica;
}

Status CtrDenseReplica::AllReduceGrads(Collective* collective) {
  if (collective == nullptr) return OkStatus();
  return collective->AllReduceSum(grads_.data<float>(), size_);
}

Status CtrDenseReplica::ApplyUpdate() {
  return kernels::ApplyDenseUpdate(ctx_, optimizer_, params_.data<float>(), grads_.data<float>(),
                                   static_cast<int64_t>(size_), slots_.data<float>(), &step_);
}

Status CtrDenseReplica::ToHost(std::vector<float>* params, std::vector<float>* slots,
                               int64_t* step) const {
  if (params != nullptr) {
    params->resize(size_);
    TS_RETURN_IF_ERROR(
        kernels::CopyToHost(ctx_, params->data(), params_.data<float>(), sizeof(float) * size_));
  }
  if (slots != nullptr) {
    slots->resize(slot_floats_);
    TS_RETURN_IF_ERROR(kernels::CopyToHost(ctx_, slots->data(), slots_.data<float>(),
                                           sizeof(float) * slot_floats_));
  }
  if (step != nullptr) *step = step_;
  return kernels::SyncDevice(ctx_);
}

Status CtrDenseReplica::Load(const std::vector<float>& params, const std::vector<float>& slots,
                             int64_t step) {
  if (params.size() != size_ || slots.size() != slot_floats_) {
    return Status::InvalidArgument("dense state of " + std::to_string(params.size()) +
                                   " parameters and " + std::to_string(slots.size()) +
                                   " optimizer floats; this model has " + std::to_string(size_) +
                                   " and " + std::to_string(slot_floats_));
  }
  TS_RETURN_IF_ERROR(
      kernels::CopyToDevice(ctx_, params_.data<float>(), params.data(), sizeof(float) * size_));
  TS_RETURN_IF_ERROR(kernels::CopyToDevice(ctx_, slots_.data<float>(), slots.data(),
                                           sizeof(float) * slot_floats_));
  step_ = step;
  // The host vectors may be freed once this returns.
  return kernels::SyncDevice(ctx_);
}

}  // namespace tessera::worker
