// The node side of joining a job: every server and worker registers with the scheduler, which
// answers once all expected nodes have registered with the shard map and everyone's address.
#pragma once

#include <chrono>
#include <vector>

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

// REDUCE over the workers through the scheduler: every worker sends `values` for the same
// `round` (numbered by the workers, in the same order everywhere) and gets the element-wise sum
// (or max) over all workers, combined in worker-rank order. Also a barrier.
StatusOr<std::vector<double>> ReduceAcrossWorkers(RpcNode& rpc, uint64_t round,
                                                  const std::vector<double>& values,
                                                  proto::ReduceOp op,
                                                  std::chrono::milliseconds timeout);

// This machine's host name (for messages that name a node).
std::string HostName();

}  // namespace tessera
