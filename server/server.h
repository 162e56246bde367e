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
// before c has been applied. With `deterministic`, the pushes of a step are applied in worker-
// rank order, so the model does not depend on message timing or on the number of servers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/blocking_queue.h"
#include "core/cluster.h"
#include "core/rpc.h"
#include "proto/checkpoint.pb.h"
#include "server/embedding_table.h"

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
  // Fault injection for tests: sleep this long before writing each checkpoint file.
  std::chrono::milliseconds checkpoint_file_delay{0};
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
  struct Request;
  struct CheckpointJob;
  struct WorkItem {
    std::shared_ptr<Request> request;
    std::shared_ptr<CheckpointJob> checkpoint;  // set: write this shard's rows instead
    std::vector<uint32_t> positions;  // key indices this shard thread owns (all when `all`)
    bool all = false;
  };
  struct Shard;

  Server(const ServerOptions& options, int rank, RpcNode* rpc);
  Status ValidateAndRoute(Message&& message);
  void ShardLoop(Shard* shard);
  void Process(Shard* shard, WorkItem& item);
  void ApplyPush(Shard* shard, WorkItem& item);
  void ServePull(Shard* shard, WorkItem& item);
  void FinishPart(const std::shared_ptr<Request>& request);
  // ApplySparseUpdate on `rows` with the shard's context (the kernel splits it over the shard's
  // helper when it has one).
  Status UpdateRows(Shard* shard, const kernels::OptimizerParams& p, float* const* rows,
                    const float* grads, int64_t count, int dim);
  // Copies the weights of rows[0..n) (or the initial weights of keys[i] where rows[i] is null)
  // to out, dim floats each; split with the shard's helper when it has one.
  void CopyRows(Shard* shard, const EmbeddingTable& table, const uint64_t* keys, float* const* rows,
                uint64_t n, float* out);
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

  std::mutex mu_;
  std::condition_variable stopped_cv_;
  bool started_ = false;                 // GUARDED_BY(mu_)
  std::vector<Message> early_requests_;  // GUARDED_BY(mu_): arrived before Start()
  bool shutdown_requested_ = false;      // GUARDED_BY(mu_)
  Status abort_status_;                  // GUARDED_BY(mu_)
  std::atomic<int64_t> rejected_{0};
};

// Runs a server node to completion: registers with the scheduler, serves until SHUTDOWN.
Status RunServerNode(const ServerOptions& options, RpcNode* rpc,
                     std::chrono::milliseconds register_timeout);

}  // namespace tessera::server
