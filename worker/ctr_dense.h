// CtrDenseReplica: one worker's replica of a CTR model's dense parameters (worker/ctr_model.h),
// with their gradient and the dense optimizer's state, all in the memory of the worker's
// DeviceContext (host memory on kCpu, device memory on kCuda: the parameters never leave the GPU
// during training). A step is: CtrModel::ForwardBackward writes grads(), AllReduceGrads sums them
// over the workers as one fused buffer, ApplyUpdate runs the dense optimizer on the replica
// (kernels/dense_optimizer.h), identically on every worker. Checkpoints and comparisons go
// through host copies (ToHost / Load), in the same layout on every device, so a checkpoint
// written by a CUDA job resumes on a CPU job and the reverse.
//
// Thread-compatible: one trainer thread uses a replica. Borrows the context, which must outlive
// it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/device_memory.h"
#include "kernels/sparse_optimizer.h"
#include "worker/collective.h"

namespace tessera::worker {

class CtrDenseReplica {
 public:
  // A replica holding `initial_params` and a fresh optimizer state (InitDenseOptimizerState).
  // InvalidArgument for optimizer parameters the dense optimizer refuses; FailedPrecondition when
  // the state does not fit in device memory (kernels/device_memory.h).
  static StatusOr<std::unique_ptr<CtrDenseReplica>> Create(
      const kernels::DeviceContext& ctx, const kernels::OptimizerParams& optimizer,
      const std::vector<float>& initial_params);

  size_t size() const { return size_; }
  // size() floats in the context's memory.
  const float* params() const { return params_.data<float>(); }
  float* grads() { return grads_.data<float>(); }

  // Sums grads() over the workers in place through `collective` (null: a job of one worker,
  // nothing to sum). kCpu hands it host memory, kCuda device memory (the collective of a CUDA
  // job, NcclCollective, all-reduces device buffers; collective.h). The gradient is complete when
  // this is called (CtrModel::ForwardBackward ends with a stream sync) and the collective's calls
  // block until done, so its stream need not be the context's.
  Status AllReduceGrads(Collective* collective);
  // One dense optimizer step with the (summed) gradient.
  Status ApplyUpdate();

  // Host copies (kCuda: downloaded, after the work queued so far). slots is laid out as
  // kernels::DenseOptimizerState::slots; any output may be null.
  Status ToHost(std::vector<float>* params, std::vector<float>* slots, int64_t* step) const;
  // Replaces parameters and optimizer state with host values (a checkpoint). InvalidArgument when
  // a size differs from this replica's.
  Status Load(const std::vector<float>& params, const std::vector<float>& slots, int64_t step);

 private:
  CtrDenseReplica(const kernels::DeviceContext& ctx, const kernels::OptimizerParams& optimizer,
                  size_t size, size_t slot_floats);

  const kernels::DeviceContext ctx_;
  const kernels::OptimizerParams optimizer_;
  const size_t size_;
  const size_t slot_floats_;
  kernels::DeviceBuffer params_, grads_, slots_;
  int64_t step_ = 0;  // Adam's update counter (host)
};

}  // namespace tessera::worker
