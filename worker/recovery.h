// Checkpoints, resume and liveness on the worker side (DESIGN.md "Checkpoints and export",
// "Failure handling"), shared by the MF and CTR trainers.
//
// At every step boundary a trainer calls WorkerCheckpointer::AtBoundary. Every worker makes the
// same calls at the same steps, so they agree on when to checkpoint without talking to each
// other: at every `checkpoint_every` steps, at epoch ends, at the end of training, and one step
// after a signal poll (a REDUCE round to the scheduler, sent every `poll_every` steps and
// collected at the next boundary) reports SIGUSR1/SIGTERM. A checkpoint: the trainer's write
// callback waits for its pushes and writes its files into DIR/step-N.tmp, then the worker sends
// CHECKPOINT to the scheduler and waits until the scheduler has had the servers write their rows
// and has committed the checkpoint.
//
// Threads: the trainer's thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/rpc.h"
#include "proto/checkpoint.pb.h"

namespace tessera::worker {

struct RecoveryOptions {
  std::string checkpoint_dir;      // root of the checkpoints; "" = none
  int64_t checkpoint_every = 0;    // steps between checkpoints; 0 = none by step count
  bool checkpoint_epochs = false;  // also after every epoch
  // The tables as the servers hold them (dims, optimizer, state floats), for the manifest.
  std::vector<proto::TableDescription> tables;
  // Resume from this checkpoint ("" = start fresh); its manifest was read and checked by the
  // launcher.
  std::string resume_dir;
  proto::CheckpointManifest resume_manifest;
  // The job's identity (launch/job_identity.h): worker 0 records it in every checkpoint.
  std::vector<proto::JobConfigEntry> job_config;
  // Liveness (separate processes only): heartbeat period (0 = off) and how long the scheduler
  // may stay silent before this worker gives up on the job.
  std::chrono::milliseconds heartbeat_interval{0};
  std::chrono::milliseconds heartbeat_timeout{6000};
  // Called (from any thread) when this node learns that the job failed: the launcher's
  // watchdog, so that a process blocked in a collective still exits.
  std::function<void(const Status&)> on_abort;
  // Checkpoint files are written and read through this Env (borrowed; outlives the worker).
  Env* env = Env::Default();
  // The worker's current step, for its heartbeats (shared by copies of these options).
  std::shared_ptr<std::atomic<int64_t>> current_step = std::make_shared<std::atomic<int64_t>>(0);
};

class WorkerCheckpointer {
 public:
  // The trainer's own part of a checkpoint: waits for the worker's pushes, then writes its files
  // (if any) into `dir`, appending their entries to *files; `model` is set on worker 0 only,
  // which describes the model there for the manifest.
  using WriteFn =
      std::function<Status(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                           proto::ModelDescription* model)>;

  // Borrows `rpc`. `poll_every` >= 1: steps between signal polls.
  WorkerCheckpointer(const RecoveryOptions& options, RpcNode* rpc, int64_t poll_every,
                     std::chrono::milliseconds timeout, WriteFn write);

  // At the boundary before step position.step() (every earlier step pushed); `position` is
  // where a resumed run would start. `epoch_end` / `final`: this boundary ends an epoch / the
  // training. Writes a checkpoint if one is due (the trainer's files and the position); returns
  // true when the job must stop (SIGTERM) after it.
  StatusOr<bool> AtBoundary(const proto::WorkerCheckpoint& position, bool epoch_end, bool final);

 private:
  const RecoveryOptions& options_;
  RpcNode* rpc_;
  const int64_t poll_every_;
  const std::chrono::milliseconds timeout_;
  const WriteFn write_;
  std::future<StatusOr<Message>> poll_;
  bool poll_in_flight_ = false;
  int64_t last_step_written_ = -1;
  std::string last_checkpoint_;
};

// A position (see WorkerCheckpoint in proto/checkpoint.proto).
proto::WorkerCheckpoint MakePosition(int64_t step, int epoch, int64_t step_in_epoch,
                                     double loss_sum, int64_t samples, int64_t samples_done,
                                     double train_seconds);

// Where this worker starts: its position in the checkpoint it resumes from (checksum checked;
// worker 0 logs it), or the start of training (all zero) without a resume.
StatusOr<proto::WorkerCheckpoint> StartPosition(const RecoveryOptions& options, const RpcNode& rpc,
                                                int64_t steps_per_epoch);

}  // namespace tessera::worker
