#include "core/cluster.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "core/logging.h"

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

}  // namespace tessera
