// What every worker role (MF, CTR) does around its training loop: answer the scheduler's ABORT by
// failing every call still waiting, and tell the scheduler when this worker fails, so that no
// other node waits for it.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "core/cluster.h"
#include "core/rpc.h"
#include "worker/recovery.h"

namespace tessera::worker {

// Starts `rpc` with the worker's request handler. *aborted_by_peer becomes true when the
// scheduler aborts the job because of another node; the handler runs on the transport's thread.
// `on_abort` (may be empty) is called with the reason as well.
Status StartWorkerRpc(RpcNode* rpc, std::shared_ptr<std::atomic<bool>> aborted_by_peer,
                      std::function<void(const Status&)> on_abort);

// Heartbeats to the scheduler when recovery.heartbeat_interval > 0 (else nullptr). If the
// scheduler stops answering, every call of `rpc` fails from then on and on_abort is called.
std::unique_ptr<Heartbeater> StartWorkerHeartbeat(RpcNode* rpc, const RecoveryOptions& recovery,
                                                  std::shared_ptr<std::atomic<bool>> aborted);

// This worker's own failure as it reports it: a non-finite model (Status::NonFinite) gets the
// checkpoint to go back to (the newest under recovery.checkpoint_dir, the last finite one: a
// non-finite value is never checkpointed); any other failure is returned unchanged.
Status ExplainFailure(const Status& failure, const RecoveryOptions& recovery);

// How long a worker whose call a stopped peer refused waits for the scheduler's ABORT.
inline constexpr std::chrono::milliseconds kAbortGrace{1000};

// Runs a worker role's body between StartWorkerRpc and rpc->Stop(); a failure of this worker
// (not an abort caused by another node) is reported to the scheduler first (ExplainFailure).
template <typename Result>
StatusOr<Result> RunWorkerNode(RpcNode* rpc, const RecoveryOptions& recovery,
                               const std::function<StatusOr<Result>()>& body) {
  auto aborted_by_peer = std::make_shared<std::atomic<bool>>(false);
  TS_RETURN_IF_ERROR(StartWorkerRpc(rpc, aborted_by_peer, recovery.on_abort));
  std::unique_ptr<Heartbeater> heartbeat = StartWorkerHeartbeat(rpc, recovery, aborted_by_peer);
  StatusOr<Result> result = body();
  heartbeat.reset();
  // An ABORT (or the scheduler lost) poisons the rpc with the job's reason, which this worker
  // then ends with. A server that stopped for the abort refuses a call at once (Unavailable),
  // which can come before this worker has the ABORT: then wait a moment for it.
  if (!result.ok()) {
    const bool refused = result.status().code() == StatusCode::kUnavailable;
    const Status why = rpc->WaitPoisoned(refused ? kAbortGrace : std::chrono::milliseconds(0));
    if (!why.ok()) result = why;
  }
  if (!result.ok() && !aborted_by_peer->load()) {
    result = ExplainFailure(result.status(), recovery);
    ReportFailure(rpc, result.status());
  }
  rpc->Stop();
  return result;
}

// Tells the scheduler this worker is done. Also the final barrier: the scheduler answers once
// every worker has finished (and the servers have shut down).
Status FinishWorker(RpcNode* rpc, std::chrono::milliseconds timeout);

// Fisher-Yates shuffle with a counter-based generator: the same permutation for the same seed
// on every platform (std::shuffle's is implementation-defined).
void ShuffleIndices(std::vector<uint32_t>* order, uint64_t seed);
// The same shuffle of order[0, n).
void ShuffleIndices(uint32_t* order, size_t n, uint64_t seed);

// The shuffling seed of one worker's epoch.
uint64_t EpochSeed(uint64_t seed, int epoch, int worker_rank);

}  // namespace tessera::worker
