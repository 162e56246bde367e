#include "core/cluster.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "core/escape.h"
#include "core/logging.h"
#include "proto/checkpoint.pb.h"

namespace tessera {

std::string HostName() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

StatusOr<ClusterView> RegisterWithScheduler(RpcNode& rpc, std::chrono::milliseconds timeout) {
  proto::RegisterRequest request;
  *request.mutable_node() = rpc.self().ToProto();
  request.set_endpoint(rpc.transport().endpoint());
  request.set_host(HostName());
  request.set_pid(static_cast<int>(getpid()));
  // The scheduler may not be listening yet (threads of one process start in any order):
  // retry "unavailable" with a short backoff until the deadline.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto backoff = std::chrono::milliseconds(1);
  StatusOr<Message> reply = Status::Unavailable("not sent");
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    reply =
        rpc.CallAndWait(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_REGISTER, request),
                        std::max(left, std::chrono::milliseconds(1)));
    if (reply.ok() || reply.status().code() != StatusCode::kUnavailable ||
        std::chrono::steady_clock::now() + backoff >= deadline) {
      break;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  }
  if (!reply.ok()) return reply.status();
  proto::ClusterInfo info;
  TS_RETURN_IF_ERROR(ParseControlBody(*reply, &info));
  ClusterView view;
  view.num_servers = info.num_servers();
  view.num_workers = info.num_workers();
  TS_ASSIGN_OR_RETURN(view.shard_map, ShardMap::FromProto(info.shard_map()));
  if (view.shard_map.num_servers() != view.num_servers) {
    return Status::DataLoss("shard map names " + std::to_string(view.shard_map.num_servers()) +
                            " servers, cluster has " + std::to_string(view.num_servers));
  }
  for (const auto& peer : info.peers()) {
    TS_ASSIGN_OR_RETURN(NodeId id, NodeId::FromProto(peer.node()));
    if (!peer.endpoint().empty()) TS_RETURN_IF_ERROR(rpc.transport().AddPeer(id, peer.endpoint()));
  }
  return view;
}

StatusOr<std::vector<double>> ReduceAcrossWorkers(RpcNode& rpc, uint64_t round,
                                                  const std::vector<double>& values,
                                                  proto::ReduceOp op,
                                                  std::chrono::milliseconds timeout) {
  proto::ReduceRequest request;
  request.set_round(round);
  request.set_op(op);
  for (double v : values) request.add_values(v);
  TS_ASSIGN_OR_RETURN(Message reply,
                      rpc.CallAndWait(NodeId::Scheduler(),
                                      MakeControlMessage(proto::COMMAND_REDUCE, request), timeout));
  proto::ReduceReply body;
  TS_RETURN_IF_ERROR(ParseControlBody(reply, &body));
  if (body.values_size() != static_cast<int>(values.size())) {
    return Status::DataLoss("reduce reply has " + std::to_string(body.values_size()) +
                            " values, expected " + std::to_string(values.size()));
  }
  return std::vector<double>(body.values().begin(), body.values().end());
}

void ReportFailure(RpcNode* rpc, const Status& failure) {
  proto::AbortNotice notice;
  *notice.mutable_node() = rpc->self().ToProto();
  // The reason may quote a data line: escape it, or protobuf refuses the message (UTF-8 only).
  notice.set_reason(EscapeUntrusted(rpc->self().ToString() + ": " + failure.message()));
  notice.set_code(static_cast<int>(failure.code()));
  (void)rpc->Send(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_ABORT, notice));
}

Heartbeater::Heartbeater(RpcNode* rpc, std::chrono::milliseconds interval,
                         std::chrono::milliseconds timeout,
                         std::function<void(const Status&)> on_lost, std::function<int64_t()> step)
    : rpc_(rpc),
      interval_(interval),
      timeout_(timeout),
      on_lost_(std::move(on_lost)),
      step_(std::move(step)) {
  thread_ = std::thread([this] { Loop(); });
}

Heartbeater::~Heartbeater() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  stop_cv_.SignalAll();
  thread_.join();
}

void Heartbeater::Loop() {
  using Clock = std::chrono::steady_clock;
  auto last_answer = Clock::now();
  // Silence counts only once the scheduler has answered: until then it may still be starting
  // (or cleaning up after a crash), and registration has a timeout of its own.
  bool answered = false;
  std::vector<std::future<StatusOr<Message>>> in_flight;
  {
    MutexLock lock(&mu_);
    if (stop_) return;
  }
  while (true) {
    proto::Heartbeat beat;
    if (step_) beat.set_step(step_());
    in_flight.push_back(
        rpc_->Call(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_HEARTBEAT, beat)));
    // Any answer (even an error reply) shows the scheduler is alive.
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      if (it->wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        ++it;
        continue;
      }
      StatusOr<Message> reply = it->get();
      if (reply.ok() || reply.status().code() != StatusCode::kCancelled) {
        last_answer = Clock::now();
        answered = true;
      }
      it = in_flight.erase(it);
    }
    const auto silent = Clock::now() - last_answer;
    {
      MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (answered && silent > timeout_) {
      const double seconds = std::chrono::duration<double>(silent).count();
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.1f", seconds);
      on_lost_(Status::Unavailable("lost the scheduler: no answer to heartbeats for " +
                                   std::string(buf) + " s"));
      return;
    }
    MutexLock lock(&mu_);
    if (stop_cv_.WaitFor(&mu_, interval_, [this]() TS_REQUIRES(mu_) { return stop_; })) return;
  }
}

}  // namespace tessera
