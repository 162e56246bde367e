// TrainLoop: the one training loop of every worker, whatever the model (worker/model.h).
//
// Run: register with the scheduler -> Model::Setup (data) -> start-up statistics -> resume
// position (worker/recovery.h StartPosition) -> epochs. An epoch orders the worker's samples
// (Model::EpochOrder, seeded by seed, epoch and rank: a shuffle, or MF's blocked order) and runs
// steps_per_epoch steps, the same number on every worker so that the servers count one push per
// worker per step (BSP). A step:
// finish the pull of its rows -> (pull ahead: the next step's pull, when it reads none of this
// step's rows and the job has one worker) -> Model::ComputeGradients into the push buffer -> the
// step's loss and gradients checked (worker/finite_check.h: a non-finite one ends the run) ->
// push -> start the next step's pull unless it went ahead (answered once every worker's push of
// this step was applied), the next step's batch prepared here (or, pulling ahead, a step
// earlier, and the one after it here, its pull sent at once when it reads none of the next
// step's rows: two pulls in flight) -> Model::AfterPush -> evaluation every `eval_every` steps
// -> progress -> checkpoint boundary (WorkerCheckpointer::AtBoundary: checkpoints and signal
// polls). After each epoch: train statistics reduced over every worker, evaluation, the epoch's
// line and its boundary.
// Worker 0 logs and writes --metrics-out.
//
// Threads: one worker thread runs a TrainLoop; the model's calls run on it.
#pragma once

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/rpc.h"
#include "worker/collective.h"
#include "worker/metrics_writer.h"
#include "worker/model.h"
#include "worker/ps_client.h"
#include "worker/recovery.h"

namespace tessera::worker {

struct TrainLoopOptions {
  int epochs = 1;
  int batch_size = 64;     // samples per worker per step
  int64_t eval_every = 0;  // steps between evaluations; 0: only at the end of each epoch
  // Early stopping: training ends after this many epochs in a row without a validation metric
  // (Model::early_stop_metric on the model's validation set) better than the best by more than
  // 0.05 %; 0: never.
  int early_stop = 0;
  // In a job of one worker, the pull of a step that reads none of the previous step's rows
  // (Model::EpochOrder's disjoint_next) goes before that step's push, so the servers copy its
  // rows while the worker computes; the pull of the step after goes with this step's push when
  // it reads none of the next step's rows, so the servers serve it as soon as they have applied
  // that push. The same bits either way.
  bool pull_ahead = true;
  uint64_t seed = 1;                          // shuffling
  std::string metrics_out;                    // JSON lines, written by worker 0
  bool progress = true;                       // worker 0 logs progress lines
  int64_t poll_samples = 16384;               // signal polls about every this many samples
  std::chrono::milliseconds timeout{600000};  // bound on any single wait for a peer
  RecoveryOptions recovery;                   // checkpoints, resume, heartbeats
};

struct TrainResult {
  double train_loss = NAN;     // the model's loss per sample over the last epoch
  double samples_per_sec = 0;  // all workers, training loop only, last epoch
  double train_seconds = 0;    // this worker's time in training steps, resumed runs included
  EvalReport last_eval;        // the last epoch's evaluation (NaN metrics without one)
  int64_t steps = 0;           // global step (BSP clock) at the end
  bool stopped = false;        // a signal stopped training after a checkpoint
  int epochs_trained = 0;      // epochs completed, resumed runs included
  bool early_stopped = false;  // the validation metric stopped improving (--early-stop)
};

class TrainLoop {
 public:
  // Borrows everything; `collective` may be null (a model that has no dense part).
  TrainLoop(const TrainLoopOptions& options, Model* model, RpcNode* rpc, Collective* collective);
  ~TrainLoop();
  TrainLoop(const TrainLoop&) = delete;
  TrainLoop& operator=(const TrainLoop&) = delete;

  // Trains to the end (or to a signal's stop) and tells the scheduler this worker is done. The
  // first error of the model, a peer or a file ends the run and is returned.
  StatusOr<TrainResult> Run(std::chrono::milliseconds register_timeout);

 private:
  class Group;
  struct Step;

  bool IsReporter() const { return rpc_->self().rank == 0; }
  StatusOr<std::vector<double>> Reduce(std::vector<double> values, proto::ReduceOp op);
  void PrepareTrain(const uint32_t* order, size_t n, Step* step);
  // Trains steps [start_step, steps_per_epoch_) of `epoch`, adding to *loss_sum / *samples.
  // Returns true when a signal stopped training after a checkpoint.
  StatusOr<bool> TrainEpoch(int epoch, int64_t start_step, double* loss_sum, int64_t* samples);
  // Evaluates `set` at the current clock; worker 0 records and logs the result.
  StatusOr<EvalReport> Evaluate(int epoch, EvalSet set);
  // After epoch `epoch` (0-based): evaluates the validation set and updates the early-stopping
  // state in *position; true when training should end here.
  StatusOr<bool> EarlyStopCheck(int epoch, proto::WorkerCheckpoint* position);
  // MakePosition at the current clock and totals, with early_stop_'s fields.
  proto::WorkerCheckpoint Position(int epoch, int64_t step_in_epoch, double loss_sum,
                                   int64_t samples) const;
  void LogProgress(int epoch, int64_t step, int64_t samples, double loss_sum);
  Status WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                         proto::ModelDescription* description);

  using Clock = std::chrono::steady_clock;

  const TrainLoopOptions options_;
  Model* const model_;
  RpcNode* const rpc_;
  Collective* const collective_;
  std::unique_ptr<Group> group_;
  std::unique_ptr<PsClient> ps_;
  std::unique_ptr<WorkerCheckpointer> checkpointer_;
  MetricsWriter metrics_;
  JobShape shape_;
  uint64_t reduce_round_ = 0;
  std::vector<int> table_dims_;  // row width of each table (Model::TableDims)
  // The epoch's sample order (Model::EpochOrder), kept across epochs: 4 bytes a sample, in huge
  // pages, allocated and faulted in once instead of every epoch.
  std::vector<uint32_t> epoch_order_;
  std::vector<bool> disjoint_next_;  // the epoch's, from Model::EpochOrder
  int64_t steps_pulled_ahead_ = 0;   // in this run
  int64_t steps_per_epoch_ = 0;
  int64_t clock_ = 0;         // global step counter, the BSP clock
  int64_t samples_done_ = 0;  // this worker's training samples of finished epochs
  double train_seconds_ = 0;
  // The early-stopping fields of WorkerCheckpoint (best_valid ...), carried into every position
  // the loop checkpoints, mid-epoch ones included.
  proto::WorkerCheckpoint early_stop_;
  Clock::time_point train_start_, last_progress_;
};

}  // namespace tessera::worker
