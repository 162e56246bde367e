// The worker role's one entry point: builds the model the job trains (MF or a CTR model) and runs
// it through the training loop (worker/train_loop.h) between StartWorkerRpc and rpc->Stop().
#pragma once

#include <chrono>

#include "core/rpc.h"
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
};

// Runs worker rpc.self() to completion: registers with the scheduler, reads its data, trains,
// evaluates, checkpoints and reports DONE. A failure of this worker (data error, ...) is
// reported to the scheduler, which aborts the job, and returned. `collective` connects the job's
// workers for the dense all-reduce of the CTR models (borrowed; may be null for MF).
Status RunWorker(const WorkerOptions& options, RpcNode* rpc, Collective* collective,
                 std::chrono::milliseconds register_timeout);

}  // namespace tessera::worker
