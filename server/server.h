// The parameter-server role: holds the embedding rows of the slots the shard map gives it, with
// their optimizer state, answers PULL with rows and applies PUSHed gradients with the table's
// optimizer.
//
// Threads: HandleRequest runs on the transport's delivery thread; it validates the message and
// hands one work item per shard thread to their queues. A server's slots are split among
// `num_shard_threads` threads (slot % num_shard_threads) and each is the only writer of its rows,
// so rows need no locks. The last shard thread to finish a request sends the reply.
//
// Consistency (BSP): a PULL for step c is answered only once every worker's PUSH of every step
// before c has been applied, except a pull ahead (FLAG_AHEAD) in a job of one worker, which
// reads none of step c - 1's rows and may be answered before that step's push (shard.h). With
// `deterministic`, the pushes of a step are applied in worker-rank order, so the model does not
// depend on message timing or on the number of servers.
//
// Files: server.cc routes (requests, validation, hand-off to the shards, replies); shard.h holds
// a shard thread (the BSP gate, ordering, pull cache); server_checkpoint.cc writes and loads the
// rows of checkpoints (through core/row_file.h and the options' Env).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "core/cluster.h"
#include "core/env.h"
#include "core/mutex.h"
#include "core/rpc.h"
#include "proto/checkpoint.pb.h"
#include "server/embedding_table.h"
#include "server/shard.h"

namespace tessera::server {

struct ServerOptions {
  std::vector<TableOptions> tables;  // indexed by table id
  int num_shard_threads = 1;
  // Threads per shard thread for a push's optimizer update and a pull's row copies: 2 gives
  // each shard thread a helper that takes half the rows of large requests (the same bits: a
  // row's updates all fall to one thread, in order). The index (lookup, insert) stays with the
  // shard thread.
  int threads_per_shard = 1;
  bool deterministic = false;  // apply the pushes of a step in worker-rank order
  // Resume: before serving, load the rows this server owns from the checkpoint in resume_dir
  // (described by resume_manifest) and continue at its step. Empty: start with empty tables.
  std::string resume_dir;
  proto::CheckpointManifest resume_manifest;
  // Checkpoint files are written and read through this Env (borrowed; it outlives the server).
  Env* env = Env::Default();
  // Liveness (separate processes only): heartbeat period (0 = off) and how long the scheduler
  // may stay silent before the server gives up; on_abort (may be empty) hears why the job ended.
  std::chrono::milliseconds heartbeat_interval{0};
  std::chrono::milliseconds heartbeat_timeout{6000};
  std::function<void(const Status&)> on_abort;
  // The job's --checkpoint-dir, for failure messages ("" = none).
  std::string checkpoint_dir;
};

struct ServerStats {
  int64_t pulls = 0;
  int64_t pushes = 0;
  int64_t keys_pulled = 0;
  int64_t keys_pushed = 0;
  int64_t rejected = 0;  // malformed or misdirected requests answered with an error
  int64_t rows = 0;
};

class Server {
 public:
  // Borrows `rpc`, which must outlive the server.
  static StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options, int rank,
                                                  RpcNode* rpc);
  ~Server();

  // Starts the shard threads for the given cluster. REQUIRES: called once, before requests.
  Status Start(const ShardMap& shard_map, int num_workers);
  // Entry point for requests (the RpcNode's RequestHandler). Never blocks for long.
  void HandleRequest(Message&& request);
  // Blocks until SHUTDOWN or ABORT arrives (or `timeout`); returns the abort reason if any.
  Status WaitForShutdown(std::chrono::milliseconds timeout);
  // Ends WaitForShutdown with `reason` (the scheduler is lost). Any thread.
  void Abort(const Status& reason);
  // Stops and joins the shard threads. Idempotent.
  void Stop();

  ServerStats stats() const;
  // Steps whose pushes every shard thread has applied (any thread).
  int64_t StepsApplied() const;
  // Looks up a row's weights (tests). nullptr if absent. Only when no request is in flight.
  const float* PeekRow(uint32_t table_id, uint64_t key) const;

 private:
  Server(const ServerOptions& options, int rank, RpcNode* rpc);
  Status ValidateAndRoute(Message&& message);
  // A shard thread finished its part of `request`; the last part sends the reply.
  void FinishPart(const std::shared_ptr<Request>& request);
  // COMMAND_CHECKPOINT from the scheduler: every shard thread writes its rows (WriteShardRows),
  // the last one replies with the list of files.
  void StartCheckpoint(Message&& request);
  void WriteShardRows(Shard* shard, CheckpointJob& job);
  // Loads the rows this server owns from options_.resume_dir. REQUIRES: shard threads not
  // started.
  Status LoadCheckpoint();
  // The slot range of this server in shard_map_.
  std::pair<uint32_t, uint32_t> OwnSlots() const;

  const ServerOptions options_;
  const int rank_;
  RpcNode* rpc_;
  TableLayout layout_;
  ShardMap shard_map_;
  int num_workers_ = 0;
  std::vector<std::unique_ptr<Shard>> shards_;

  Mutex mu_;
  CondVar stopped_cv_;
  bool started_ TS_GUARDED_BY(mu_) = false;
  std::vector<Message> early_requests_ TS_GUARDED_BY(mu_);  // arrived before Start()
  bool shutdown_requested_ TS_GUARDED_BY(mu_) = false;
  Status abort_status_ TS_GUARDED_BY(mu_);
  std::atomic<int64_t> rejected_{0};
  // BSP: the step each worker must push next. A worker pushes every step to every server and
  // sends step c+1 only after step c's push was acknowledged, so its pushes arrive in order,
  // one per step, from the clock the server started at (0, or a resumed checkpoint's step).
  Mutex clock_mu_;
  std::vector<int64_t> next_push_clock_ TS_GUARDED_BY(clock_mu_);
};

// Runs a server node to completion: registers with the scheduler, serves until SHUTDOWN.
Status RunServerNode(const ServerOptions& options, RpcNode* rpc,
                     std::chrono::milliseconds register_timeout);

}  // namespace tessera::server
