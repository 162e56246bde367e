// The scheduler role (rank 0): membership, the shard map, reductions/barriers for the workers,
// and orderly shutdown or abort of the job.
//
// Threads: requests arrive on the transport's delivery thread and are answered there without
// blocking; Run() (the caller's thread) waits for the job to finish and then shuts servers down.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "core/rpc.h"
#include "core/shard_map.h"

namespace tessera::scheduler {

struct SchedulerOptions {
  int num_servers = 1;
  int num_workers = 1;
  // How long to wait for every node to register.
  std::chrono::milliseconds register_timeout{120000};
  // How long to wait for servers to acknowledge SHUTDOWN.
  std::chrono::milliseconds shutdown_timeout{30000};
};

class Scheduler {
 public:
  // Borrows `rpc`, which must not be started yet.
  Scheduler(const SchedulerOptions& options, RpcNode* rpc);

  // Starts answering requests.
  Status Start();
  // Blocks until every worker has reported DONE (then shuts the servers down and returns OK) or
  // the job aborts (returns the reason). Also fails if registration does not finish in time.
  Status Run();

 private:
  struct PendingReduce {
    std::vector<std::vector<double>> values;  // by worker rank
    std::vector<Message> requests;            // by worker rank
    std::vector<bool> received;               // by worker rank
    proto::ReduceOp op = proto::REDUCE_OP_SUM;
    size_t length = 0;
    int arrived = 0;
  };

  void HandleRequest(Message&& request);
  void HandleRegister(Message&& request);
  void HandleReduce(Message&& request);
  void HandleDone(Message&& request);
  void HandleAbort(Message&& request);
  // Records the first failure, answers everyone waiting with it, and wakes Run(). REQUIRES(mu_).
  void AbortLocked(const Status& reason);

  const SchedulerOptions options_;
  RpcNode* rpc_;
  const ShardMap shard_map_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<NodeId, proto::RegisterRequest> registered_;  // GUARDED_BY(mu_)
  std::vector<Message> register_requests_;               // GUARDED_BY(mu_)
  bool all_registered_ = false;                          // GUARDED_BY(mu_)
  std::map<uint64_t, PendingReduce> reduces_;            // GUARDED_BY(mu_)
  std::vector<Message> done_requests_;                   // GUARDED_BY(mu_)
  Status abort_status_;                                  // GUARDED_BY(mu_)
};

}  // namespace tessera::scheduler
