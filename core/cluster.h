// The node side of joining a job: every server and worker registers with the scheduler, which
// answers once all expected nodes have registered with the shard map and everyone's address.
#pragma once

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "core/mutex.h"
#include "core/rpc.h"
#include "core/shard_map.h"

namespace tessera {

struct ClusterView {
  int num_servers = 0;
  int num_workers = 0;
  ShardMap shard_map;
};

// Sends REGISTER for rpc.self() (with the transport's endpoint), waits for the ClusterInfo, adds
// every peer's address to the transport, and returns the view. kDeadlineExceeded after `timeout`.
StatusOr<ClusterView> RegisterWithScheduler(RpcNode& rpc, std::chrono::milliseconds timeout);

// Rounds of ReduceAcrossWorkers with this bit set are the workers' signal polls: the scheduler's
// reply says whether a signal asked for a checkpoint (ReduceReply.checkpoint_requested).
inline constexpr uint64_t kSignalPollRound = uint64_t{1} << 62;

// REDUCE over the workers through the scheduler: every worker sends `values` for the same
// `round` (numbered by the workers, in the same order everywhere) and gets the element-wise sum
// (or max) over all workers, combined in worker-rank order. Also a barrier.
StatusOr<std::vector<double>> ReduceAcrossWorkers(RpcNode& rpc, uint64_t round,
                                                  const std::vector<double>& values,
                                                  proto::ReduceOp op,
                                                  std::chrono::milliseconds timeout);

// Liveness (DESIGN.md "Failure handling"): sends HEARTBEAT to the scheduler every `interval` from
// a thread of its own (joined by the destructor). When, after a first answer, no heartbeat has
// been answered for `timeout`, calls on_lost once, from that thread, with a Status naming the
// scheduler. `step`, if set, is called for the step to report (workers).
class Heartbeater {
 public:
  Heartbeater(RpcNode* rpc, std::chrono::milliseconds interval, std::chrono::milliseconds timeout,
              std::function<void(const Status&)> on_lost, std::function<int64_t()> step = {});
  ~Heartbeater();
  Heartbeater(const Heartbeater&) = delete;
  Heartbeater& operator=(const Heartbeater&) = delete;

 private:
  void Loop() TS_EXCLUDES(mu_);

  RpcNode* rpc_;
  const std::chrono::milliseconds interval_, timeout_;
  std::function<void(const Status&)> on_lost_;
  std::function<int64_t()> step_;
  Mutex mu_;
  CondVar stop_cv_;
  bool stop_ TS_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Sends ABORT (this node's failure, with its status code) to the scheduler, which stops the job
// with this reason, so that no other node waits for this one. Best effort: a failure to send is
// ignored.
void ReportFailure(RpcNode* rpc, const Status& failure);

// This machine's host name (for messages that name a node).
std::string HostName();

}  // namespace tessera
