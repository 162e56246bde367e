#include "worker/worker_node.h"

#include "core/checkpoint.h"
#include "kernels/random_math.h"

namespace tessera::worker {

Status StartWorkerRpc(RpcNode* rpc, std::shared_ptr<std::atomic<bool>> aborted_by_peer,
                      std::function<void(const Status&)> on_abort) {
  return rpc->Start([rpc, aborted_by_peer, on_abort](Message&& m) {
    switch (m.header.command()) {
      case proto::COMMAND_ABORT: {
        proto::AbortNotice notice;
        Status parsed = ParseControlBody(m, &notice);
        aborted_by_peer->store(true);
        const Status reason = parsed.ok() && notice.code() != 0
                                  ? Status(static_cast<StatusCode>(notice.code()), notice.reason())
                                  : Status::Aborted(parsed.ok() ? notice.reason() : "job aborted");
        rpc->Poison(reason);
        if (on_abort) on_abort(reason);
        return;
      }
      case proto::COMMAND_SHUTDOWN:
        (void)rpc->Reply(m, Message());
        return;
      default:
        (void)rpc->ReplyError(m, Status::InvalidArgument("a worker does not handle " +
                                                         proto::Command_Name(m.header.command())));
    }
  });
}

std::unique_ptr<Heartbeater> StartWorkerHeartbeat(RpcNode* rpc, const RecoveryOptions& recovery,
                                                  std::shared_ptr<std::atomic<bool>> aborted) {
  if (recovery.heartbeat_interval.count() <= 0) return nullptr;
  auto on_lost = [rpc, aborted, on_abort = recovery.on_abort, dir = recovery.checkpoint_dir,
                  step = recovery.current_step, env = recovery.env](const Status& lost) {
    const std::string latest = dir.empty() ? "" : checkpoint::FindLatest(env, dir);
    const Status reason(lost.code(), rpc->self().ToString() + ": " + lost.message() + " at step " +
                                         std::to_string(step->load()) + "; " +
                                         checkpoint::ResumeHint(latest, dir));
    aborted->store(true);
    rpc->Poison(reason);
    if (on_abort) on_abort(reason);
  };
  auto step = recovery.current_step;
  return std::make_unique<Heartbeater>(rpc, recovery.heartbeat_interval, recovery.heartbeat_timeout,
                                       on_lost,
                                       [step] { return step->load(std::memory_order_relaxed); });
}

Status ExplainFailure(const Status& failure, const RecoveryOptions& recovery) {
  if (failure.code() != StatusCode::kNonFinite) return failure;
  const std::string& dir = recovery.checkpoint_dir;
  const std::string latest = dir.empty() ? "" : checkpoint::FindLatest(recovery.env, dir);
  if (latest.empty()) {
    return Status(failure.code(), failure.message() + "; no checkpoint was written" +
                                      (dir.empty() ? " (no --checkpoint-dir)" : ""));
  }
  return Status(failure.code(), failure.message() + "; the newest checkpoint, " + latest +
                                    ", holds the last finite model: resume from it (--resume " +
                                    latest + ") with a lower --lr");
}

Status FinishWorker(RpcNode* rpc, std::chrono::milliseconds timeout) {
  Message done;
  done.header.set_command(proto::COMMAND_DONE);
  return rpc->CallAndWait(NodeId::Scheduler(), std::move(done), timeout).status();
}

void ShuffleIndices(std::vector<uint32_t>* order, uint64_t seed) {
  ShuffleIndices(order->data(), order->size(), seed);
}

void ShuffleIndices(uint32_t* order, size_t n, uint64_t seed) {
  uint64_t state = kernels::SplitMix64(seed);
  for (size_t i = n; i > 1; --i) {
    state = kernels::SplitMix64(state);
    const size_t j = static_cast<size_t>((static_cast<unsigned __int128>(state) * i) >> 64);
    std::swap(order[i - 1], order[j]);
  }
}

uint64_t EpochSeed(uint64_t seed, int epoch, int worker_rank) {
  return seed ^ (0x5851F42D4C957F2Dull * (epoch + 1)) ^ (0x2545F4914F6CDD1Dull * (worker_rank + 1));
}

}  // namespace tessera::worker
