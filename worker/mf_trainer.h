// The worker role for biased matrix factorisation, r̂(u,i) = mu + b_u + b_i + p_u·q_i, trained
// with squared loss and L2 through the parameter servers under BSP.
//
// Tables: 0 = users, 1 = items; a row is [factors(dim) | bias]. Worker w of W reads its own
// byte-range partition of the training and test files, shuffles it every epoch (seeded by
// seed, epoch and rank), and runs the same number of steps as every other worker so that the
// servers can count one push per worker per step.
//
// Worker 0 prints progress to the log and writes --metrics-out.
#pragma once

#include <chrono>
#include <cmath>
#include <string>

#include "core/rpc.h"
#include "kernels/device.h"
#include "worker/data/rating_reader.h"
#include "worker/recovery.h"

namespace tessera::worker {

inline constexpr uint32_t kUserTable = 0;
inline constexpr uint32_t kItemTable = 1;

struct MfTrainerOptions {
  std::string train_path;
  std::string test_path;  // "" = no evaluation
  RatingFormat format = RatingFormat::kAuto;
  bool skip_bad_lines = false;
  int reader_threads = 2;
  // Threads for a step's gradient on CPU: 1, or 2 (the batch split over two cores, same bits).
  int compute_threads = 2;
  int dim = 32;  // factors per row (the row also holds the bias)
  int epochs = 80;
  int batch_size = 64;    // ratings per worker per step
  float l2 = 0.09f;       // L2 on the factors, per rating
  float l2_bias = 0.01f;  // L2 on the biases, per rating
  uint64_t seed = 1;      // shuffling (row initialisation is seeded on the servers)
  kernels::Device device = kernels::Device::kCpu;
  std::string metrics_out;                    // JSON lines, written by worker 0
  double noise_floor = NAN;                   // σ of planted data, printed next to the final RMSE
  bool progress = true;                       // worker 0 logs progress lines
  std::chrono::milliseconds timeout{600000};  // bound on any single wait for a peer
  RecoveryOptions recovery;                   // checkpoints, resume, heartbeats
};

struct MfResult {
  double test_rmse = NAN;
  double test_mae = NAN;
  double train_loss = NAN;     // MSE over the last epoch
  double samples_per_sec = 0;  // all workers, training loop only, last epoch
  double train_seconds = 0;
  bool stopped = false;  // a signal stopped training after a checkpoint
};

// Runs worker rpc.self() to completion: reads its data, registers with the scheduler, trains,
// evaluates after every epoch, and reports DONE. A data error aborts the job (the scheduler
// tells every node) and is returned.
StatusOr<MfResult> RunMfWorkerNode(const MfTrainerOptions& options, RpcNode* rpc,
                                   std::chrono::milliseconds register_timeout);

}  // namespace tessera::worker
