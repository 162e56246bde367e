// One shard thread of a server: the only writer of the rows of its slots (slot %
// num_shard_threads == index), so rows need no locks. It serves its part of each PULL and PUSH
// in arrival order and holds the consistency rules of DESIGN.md "Consistency":
//
//   BSP gate       a PULL for step c waits (parked) until every worker's PUSH of every step
//                  before c has been applied here.
//   pull ahead     in a job of one worker, a PULL for step c flagged FLAG_AHEAD (the worker
//                  vouches that step c reads none of step c - 1's rows) is served once every
//                  push before c - 1 is applied, while the worker still computes step c - 1.
//   ordering       with `deterministic`, the pushes of a step are held until all have arrived and
//                  applied in worker-rank order, so the model does not depend on message timing.
//   pull cache     per worker, the rows of its whole pulls of the last two steps: the push of a
//                  step's keys reuses them instead of probing the index again.
//   finite rows    after each push the rows it updated are checked; the first non-finite one
//                  fails that push and every later pull and push (Status::NonFinite, exit 3).
//
// Ownership: the Server owns its Shards; a Shard owns its tables, queue and thread (and the
// helper thread of threads_per_shard 2). Requests are shared between the shard threads serving
// their parts; the last part to finish replies (ShardContext::finish_part).
//
// Threads: Enqueue, Close and the atomics (steps_applied, stats) from any thread; everything
// else runs on the shard thread, or before Start / after Join.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/blocking_queue.h"
#include "core/fork_join.h"
#include "core/message.h"
#include "core/mutex.h"
#include "kernels/device_resources.h"
#include "proto/checkpoint.pb.h"
#include "server/embedding_table.h"

namespace tessera::server {

// A validated PULL or PUSH and its reply, shared by the shard threads that serve its parts.
struct Request {
  Message message;
  int worker_rank = 0;
  std::vector<uint64_t> key_offset;    // per header table: index of its first key
  std::vector<uint64_t> value_offset;  // per header table: index of its first value float
  Frame reply_frame;
  float* reply_values = nullptr;
  std::atomic<int> remaining{0};  // parts not finished yet

  // Records the first failure of any part.
  void Fail(const Status& s) {
    MutexLock lock(&error_mu);
    if (error.ok()) error = s;
  }
  Status FirstError() {
    MutexLock lock(&error_mu);
    return error;
  }

  Mutex error_mu;
  Status error TS_GUARDED_BY(error_mu);
};

// COMMAND_CHECKPOINT from the scheduler: every shard thread writes its rows, the last one replies.
struct CheckpointJob {
  Message request;
  int64_t step = 0;
  std::string dir;
  std::atomic<int> remaining{0};
  Mutex mu;
  std::vector<proto::CheckpointFile> files TS_GUARDED_BY(mu);
  Status error TS_GUARDED_BY(mu);
};

struct WorkItem {
  std::shared_ptr<Request> request;
  std::shared_ptr<CheckpointJob> checkpoint;  // set: write this shard's rows instead
  std::vector<uint32_t> positions;            // key indices this shard thread owns (all when `all`)
  bool all = false;
};

class Shard;

// What a shard thread needs from its server. The callbacks run on the shard thread.
struct ShardContext {
  int server_rank = 0;
  int num_workers = 0;
  bool deterministic = false;  // apply the pushes of a step in worker-rank order
  // This shard thread's part of `request` is done (its error, if any, recorded with Fail).
  std::function<void(const std::shared_ptr<Request>&)> finish_part;
  // Write this shard's rows for `job` (runs behind every request queued before it).
  std::function<void(Shard*, CheckpointJob&)> write_checkpoint;
};

class Shard {
 public:
  // Creates the shard's tables; `helper`: a second thread takes half of large requests' rows.
  static StatusOr<std::unique_ptr<Shard>> Create(int index, const std::vector<TableOptions>& tables,
                                                 bool helper);
  ~Shard();

  // Starts the shard thread, its log lines tagged `log_tag`. REQUIRES: called once.
  void Start(const ShardContext& context, const std::string& log_tag);
  // Queues work for the shard thread (any thread).
  void Enqueue(WorkItem item) { queue_.Push(std::move(item)); }
  // Ends the queue: the thread answers what is still parked and exits. Any thread.
  void Close() { queue_.Close(); }
  // Waits for the thread to exit (after Close).
  void Join();

  int index() const { return index_; }
  // This shard thread's rows, by table id (the shard thread, or before Start / after Join).
  EmbeddingTable& table(uint32_t table_id) { return *tables_[table_id]; }
  const EmbeddingTable& table(uint32_t table_id) const { return *tables_[table_id]; }
  size_t num_tables() const { return tables_.size(); }
  // Every push with clock < applied_clock() has been applied (the shard thread).
  int64_t applied_clock() const { return applied_clock_; }
  // Resume: continue at `step`. REQUIRES: before Start.
  void RestoreClock(int64_t step);

  // Readable from any thread.
  std::atomic<int64_t> steps_applied{0};  // applied_clock()
  std::atomic<int64_t> pulls{0}, pushes{0}, keys_pulled{0}, keys_pushed{0};

 private:
  // Per worker and step: the keys and rows of a pull (whole requests only). A worker pushes the
  // keys it pulled for the same step, so the push can reuse the rows instead of probing the index
  // again. Rows never move (EmbeddingTable's arena contract), and the keys are compared before
  // reuse. Two per worker, by the parity of the step: a pull ahead (step c) arrives before the
  // push of step c - 1.
  struct PullCache {
    int64_t clock = -1;  // the pull's step; -1: none
    Frame keys;
    std::vector<std::pair<uint32_t, uint64_t>> tables;  // (table id, keys) as in the header
    std::vector<float*> rows;

    bool Matches(const proto::Header& h, const Frame& other) const;
  };

  explicit Shard(int index) : index_(index) {}
  void Loop();
  void Process(WorkItem& item);
  void ApplyPush(WorkItem& item);
  void ServePull(WorkItem& item);
  // A pull the BSP gate lets through now: its step's pushes before it are applied, or it is a
  // pull ahead (FLAG_AHEAD) one step past them in a job of one worker.
  bool MayServe(const proto::Header& h) const;
  // Copies the weights of rows[0..n) (or the initial weights of keys[i] where rows[i] is null)
  // to out, dim floats each; split with the shard's helper when it has one.
  void CopyRows(const EmbeddingTable& table, const uint64_t* keys, float* const* rows, uint64_t n,
                float* out);

  const int index_;
  ShardContext context_;
  std::vector<std::unique_ptr<EmbeddingTable>> tables_;  // by table id; this thread's rows only
  BlockingQueue<WorkItem> queue_;
  std::thread thread_;
  // The shard thread's compute resources: with threads_per_shard 2 a helper thread that takes half
  // of large requests' rows (a push's update inside the kernel, through device_'s context; a
  // pull's copies directly through device_->helper()).
  std::unique_ptr<kernels::DeviceResources> device_;

  // The BSP gate and ordering (the shard thread only).
  int64_t applied_clock_ = 0;
  std::map<int64_t, int> pushes_applied_;                         // non-deterministic mode
  std::map<int64_t, std::vector<std::optional<WorkItem>>> held_;  // deterministic mode
  std::deque<WorkItem> parked_pulls_;                             // !MayServe yet
  std::vector<std::array<PullCache, 2>> last_pull_;               // by worker rank, clock % 2

  // The first non-finite row a push left (Status::NonFinite naming step, table and key): from
  // then on every pull and push of this shard fails with it (the shard thread only).
  Status failure_;

  std::vector<float*> rows_;    // scratch
  std::vector<uint64_t> keys_;  // scratch
  std::vector<float> grads_;    // scratch
};

}  // namespace tessera::server
