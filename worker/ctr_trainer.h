// The worker role for the CTR models (worker/ctr_model.h), with the hybrid synchronisation of
// DESIGN.md: embedding rows are pulled from and pushed to the parameter servers every step
// (BSP, the same PsClient and server path as MF), and the gradient of the replicated dense
// parameters is all-reduced across workers as one fused buffer (Collective) before each
// replica applies the same dense optimizer step, so every replica keeps bit-identical weights.
//
// Worker w of W reads its partition of the training and test files (worker/ctr_data.h),
// shuffles it every epoch and runs as many steps as the largest partition needs. Evaluation
// (every --eval-every steps and at the end of each epoch) gathers every worker's test
// predictions, so AUC is exact; worker 0 logs it and writes --metrics-out.
#pragma once

#include <chrono>
#include <cmath>
#include <string>

#include "core/rpc.h"
#include "kernels/sparse_optimizer.h"
#include "worker/collective.h"
#include "worker/ctr_model.h"
#include "worker/data/ctr_reader.h"
#include "worker/recovery.h"

namespace tessera::worker {

struct CtrTrainerOptions {
  std::string train_path;
  std::string test_path;  // "" = no evaluation
  CtrReadOptions read;    // format, threads, hash seed, bucketised integers, skip_bad_lines
  CtrModelConfig model;   // num_fields / num_dense are filled in from the data
  int epochs = 1;
  int batch_size = 4096;   // rows per worker per step
  int64_t eval_every = 0;  // steps between evaluations; 0: only at the end of each epoch
  kernels::OptimizerParams dense_optimizer;  // for the replicated dense parameters
  uint64_t seed = 1;                         // shuffling
  std::string metrics_out;                   // JSON lines, written by worker 0
  bool progress = true;
  std::chrono::milliseconds timeout{600000};
  RecoveryOptions recovery;  // checkpoints, resume, heartbeats
};

struct CtrResult {
  double test_auc = NAN;
  double test_logloss = NAN;
  double train_loss = NAN;       // mean BCE over the last epoch
  double samples_per_sec = 0;    // all workers, training loop only, last epoch
  bool dense_identical = false;  // every worker ended with bit-identical dense parameters
  bool stopped = false;          // a signal stopped training after a checkpoint
};

// Runs worker rpc.self() to completion (like RunMfWorkerNode). `collective` connects the
// workers of this job for the dense all-reduce; borrowed.
StatusOr<CtrResult> RunCtrWorkerNode(const CtrTrainerOptions& options, RpcNode* rpc,
                                     Collective* collective,
                                     std::chrono::milliseconds register_timeout);

}  // namespace tessera::worker
