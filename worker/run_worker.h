// The worker role's one entry point: builds the model the job trains (MF or a CTR model) and runs
// it through the training loop (worker/train_loop.h) between StartWorkerRpc and rpc->Stop().
#pragma once

#include <chrono>
#include <string>

#include "core/rpc.h"
#include "kernels/device.h"
#include "worker/collective.h"
#include "worker/ctr_task.h"
#include "worker/mf_model.h"

namespace tessera::worker {

// Which model a worker trains, and its data, model and loop options.
struct WorkerOptions {
  bool ctr = false;               // a CTR model (ctr_options) instead of MF (mf)
  MfTrainerOptions mf;            // MF
  CtrTrainerOptions ctr_options;  // lr, fm, deepfm, wide_deep, dcn_v2
  // --deterministic: the device context's kernels reduce in a fixed order (no float atomics on
  // CUDA; kernels::DeviceContext::deterministic).
  bool deterministic = false;
  bool pull_ahead = true;  // TrainLoopOptions::pull_ahead
  // Where this worker computes: the job's --device resolved for it (launch/device_assignment.h).
  kernels::Device device = kernels::Device::kCpu;
  int cuda_device = 0;  // kCuda: its device ordinal
  // kCpu CTR models: threads of the dense layers' matrix products, the CPUs of the process's
  // affinity mask shared among the workers of its host (launch/job.cc); they change the bits.
  int gemm_threads = 1;
  std::string device_note;  // appended to the worker's device line ("" for nothing)
};

// Runs worker rpc.self() to completion: makes its device resources (a kCuda worker's thread then
// has cuda_device current, and every kernel runs on it), registers with the scheduler, reads its
// data, trains, evaluates, checkpoints and reports DONE. Logs one start-up line naming its device.
// A failure of this worker (data error, ...) is reported to the scheduler, which aborts the job,
// and returned.
//
// `host_collective` (borrowed; required for CTR models and for kCuda) connects the job's workers
// in host memory. A kCpu worker's model gets it as WorkerGroup::collective(); a kCuda worker
// builds an NcclCollective over it (NcclCollective::Create, collective over the workers, so every
// worker of a CUDA job calls RunWorker at about the same time, as every job does) and its model
// gets that one, which takes device memory (worker/model.h). In a CUDA build without NCCL a kCuda
// worker's model gets no collective.
Status RunWorker(const WorkerOptions& options, RpcNode* rpc, Collective* host_collective,
                 std::chrono::milliseconds register_timeout);

}  // namespace tessera::worker
