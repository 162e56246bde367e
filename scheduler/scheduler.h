// The scheduler role (rank 0): membership, the shard map, reductions/barriers for the workers,
// and orderly shutdown or abort of the job.
//
// Threads: requests arrive on the transport's delivery thread and are answered there without
// blocking; Run() (the caller's thread) waits for the job to finish and then shuts servers down.
#pragma once

#include <chrono>
#include <map>
#include <vector>

#include "core/env.h"
#include "core/mutex.h"
#include "core/rpc.h"
#include "core/shard_map.h"
#include "proto/checkpoint.pb.h"

namespace tessera::scheduler {

struct SchedulerOptions {
  int num_servers = 1;
  int num_workers = 1;
  // How long to wait for every node to register.
  std::chrono::milliseconds register_timeout{120000};
  // How long to wait for servers to acknowledge SHUTDOWN.
  std::chrono::milliseconds shutdown_timeout{30000};
  // Checkpoints: the root directory ("" = no checkpoints), how many complete ones to keep
  // (0 = all), the options stored in each manifest, how long the servers may take to write.
  std::string checkpoint_dir;
  int keep_checkpoints = 0;
  std::string config_summary;
  std::chrono::milliseconds checkpoint_timeout{600000};
  // The checkpoint this job resumed from ("" = none): the last complete one until a new one.
  std::string resumed_from;
  // Liveness: a server or worker not heard from for this long is lost and the job ends
  // (0 = no liveness checks, as for threads of one process). Silence is measured on env's clock.
  std::chrono::milliseconds heartbeat_timeout{0};
  // Checkpoint directories and manifests, and the liveness clock (borrowed; outlives the
  // scheduler).
  Env* env = Env::Default();
};

class Scheduler {
 public:
  // Borrows `rpc`, which must not be started yet.
  Scheduler(const SchedulerOptions& options, RpcNode* rpc);

  // Starts answering requests.
  Status Start();
  // Blocks until every worker has reported DONE (then shuts the servers down and returns OK) or
  // the job aborts (returns the reason). Also fails if registration does not finish in time.
  Status Run() TS_EXCLUDES(mu_);

  // A signal asks for a checkpoint at the next step the workers can agree on (SIGUSR1), and to
  // stop after it (SIGTERM). Without a checkpoint directory SIGTERM ends the job at once.
  // Any thread (the signal watcher, the delivery thread for COMMAND_SIGNAL).
  void RequestCheckpoint(int signal) TS_EXCLUDES(mu_);

  // Ends the job with `reason`, as a node's COMMAND_ABORT would: for a failure the launcher sees
  // outside any running node (a one-process job's node whose thread could not be started, so it
  // has no transport to report on). The first reason wins. Any thread.
  void Abort(const Status& reason) TS_EXCLUDES(mu_);

 private:
  struct PendingCheckpoint {
    int64_t step = -1;
    std::string dir;
    std::vector<Message> requests;  // by worker rank
    std::vector<bool> received;     // by worker rank
    std::vector<proto::CheckpointFile> files;
    proto::ModelDescription model;
    bool final = false;  // the end of training
    int arrived = 0;
  };
  struct PendingReduce {
    std::vector<std::vector<double>> values;  // by worker rank
    std::vector<Message> requests;            // by worker rank
    std::vector<bool> received;               // by worker rank
    proto::ReduceOp op = proto::REDUCE_OP_SUM;
    size_t length = 0;
    int arrived = 0;
  };

  void HandleRequest(Message&& request);
  void HandleRegister(Message&& request) TS_EXCLUDES(mu_);
  void HandleReduce(Message&& request) TS_EXCLUDES(mu_);
  void HandleDone(Message&& request) TS_EXCLUDES(mu_);
  void HandleAbort(Message&& request) TS_EXCLUDES(mu_);
  void HandleCheckpoint(Message&& request) TS_EXCLUDES(mu_);
  void HandleHeartbeat(Message&& request) TS_EXCLUDES(mu_);
  // Asks every server for its rows, writes the manifest and commits: the Run() thread.
  Status WriteCheckpoint(PendingCheckpoint& pending) TS_EXCLUDES(mu_);
  // Lost nodes (no heartbeat within the timeout, on options_.env's clock) abort the job; checked
  // periodically by Run() and whenever a heartbeat arrives.
  void CheckLivenessLocked() TS_REQUIRES(mu_);
  // Records the first failure, answers everyone waiting with it, and wakes Run().
  void AbortLocked(const Status& reason) TS_REQUIRES(mu_);

  const SchedulerOptions options_;
  RpcNode* rpc_;
  const ShardMap shard_map_;

  Mutex mu_;
  CondVar changed_;
  std::map<NodeId, proto::RegisterRequest> registered_ TS_GUARDED_BY(mu_);
  std::vector<Message> register_requests_ TS_GUARDED_BY(mu_);
  bool all_registered_ TS_GUARDED_BY(mu_) = false;
  std::map<uint64_t, PendingReduce> reduces_ TS_GUARDED_BY(mu_);
  std::vector<Message> done_requests_ TS_GUARDED_BY(mu_);
  Status abort_status_ TS_GUARDED_BY(mu_);
  PendingCheckpoint checkpoint_ TS_GUARDED_BY(mu_);
  bool checkpoint_ready_ TS_GUARDED_BY(mu_) = false;  // all workers arrived
  // Signals: requested, and what the last poll reply told the workers (cleared by a commit).
  bool signal_checkpoint_ TS_GUARDED_BY(mu_) = false;
  bool signal_stop_ TS_GUARDED_BY(mu_) = false;
  bool delivered_checkpoint_ TS_GUARDED_BY(mu_) = false;
  bool delivered_stop_ TS_GUARDED_BY(mu_) = false;
  bool stopped_by_signal_ TS_GUARDED_BY(mu_) = false;
  std::string last_checkpoint_ TS_GUARDED_BY(mu_);
  int64_t step_ TS_GUARDED_BY(mu_) = 0;
  std::map<NodeId, Env::Clock::time_point> last_seen_ TS_GUARDED_BY(mu_);
};

}  // namespace tessera::scheduler
