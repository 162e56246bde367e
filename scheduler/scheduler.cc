#include "scheduler/scheduler.h"

#include <algorithm>

#include "core/logging.h"

namespace tessera::scheduler {

Scheduler::Scheduler(const SchedulerOptions& options, RpcNode* rpc)
    : options_(options), rpc_(rpc), shard_map_(ShardMap::Even(options.num_servers, 1)) {}

Status Scheduler::Start() {
  if (options_.num_servers < 1 || options_.num_workers < 1) {
    return Status::InvalidArgument("a job needs at least one server and one worker");
  }
  return rpc_->Start([this](Message&& m) { HandleRequest(std::move(m)); });
}

void Scheduler::HandleRequest(Message&& request) {
  switch (request.header.command()) {
    case proto::COMMAND_REGISTER:
      return HandleRegister(std::move(request));
    case proto::COMMAND_REDUCE:
      return HandleReduce(std::move(request));
    case proto::COMMAND_DONE:
      return HandleDone(std::move(request));
    case proto::COMMAND_ABORT:
      return HandleAbort(std::move(request));
    case proto::COMMAND_ECHO: {
      Message reply;
      reply.frames = request.frames;
      (void)rpc_->Reply(request, std::move(reply));
      return;
    }
    default: {
      Status s = Status::InvalidArgument("the scheduler does not handle " +
                                         proto::Command_Name(request.header.command()));
      TS_LOG(WARNING) << s.message();
      (void)rpc_->ReplyError(request, s);
    }
  }
}

void Scheduler::HandleRegister(Message&& request) {
  proto::RegisterRequest body;
  Status s = ParseControlBody(request, &body);
  StatusOr<NodeId> node = s.ok() ? NodeId::FromProto(body.node()) : StatusOr<NodeId>(s);
  if (!node.ok()) {
    (void)rpc_->ReplyError(request, node.status().WithContext("bad REGISTER"));
    return;
  }
  const NodeId id = *node;
  const int limit = id.role == Role::kServer   ? options_.num_servers
                    : id.role == Role::kWorker ? options_.num_workers
                                               : 0;
  std::lock_guard lock(mu_);
  if (!abort_status_.ok()) {
    (void)rpc_->ReplyError(request, abort_status_);
    return;
  }
  if (id.rank >= limit) {
    (void)rpc_->ReplyError(
        request, Status::InvalidArgument(id.ToString() + " is not part of this job (" +
                                         std::to_string(options_.num_servers) + " servers, " +
                                         std::to_string(options_.num_workers) + " workers)"));
    return;
  }
  if (!registered_.emplace(id, body).second || all_registered_) {
    (void)rpc_->ReplyError(request, Status::AlreadyExists(id.ToString() + " registered twice"));
    return;
  }
  if (!body.endpoint().empty()) (void)rpc_->transport().AddPeer(id, body.endpoint());
  TS_LOG(INFO) << id.ToString() << " joined from " << body.host() << " (pid " << body.pid()
               << (body.endpoint().empty() ? "" : ", " + body.endpoint()) << ")";
  register_requests_.push_back(std::move(request));
  if (static_cast<int>(registered_.size()) < options_.num_servers + options_.num_workers) return;

  all_registered_ = true;
  proto::ClusterInfo info;
  info.set_num_servers(options_.num_servers);
  info.set_num_workers(options_.num_workers);
  *info.mutable_shard_map() = shard_map_.ToProto();
  for (const auto& [peer, reg] : registered_) {
    auto* p = info.add_peers();
    *p->mutable_node() = peer.ToProto();
    p->set_endpoint(reg.endpoint());
    p->set_host(reg.host());
  }
  *info.add_peers()->mutable_node() = NodeId::Scheduler().ToProto();
  info.mutable_peers()->rbegin()->set_endpoint(rpc_->transport().endpoint());
  for (const auto& r : shard_map_.ranges()) {
    TS_LOG(INFO) << "server:" << r.server_rank << " owns slots [" << r.begin << ", " << r.end
                 << ")";
  }
  TS_LOG(INFO) << "all " << registered_.size() << " nodes registered; shard map version "
               << shard_map_.version();
  for (const Message& waiting : register_requests_) {
    (void)rpc_->Reply(waiting, MakeControlMessage(proto::COMMAND_REGISTER, info));
  }
  register_requests_.clear();
  changed_.notify_all();
}

void Scheduler::HandleReduce(Message&& request) {
  proto::ReduceRequest body;
  Status s = ParseControlBody(request, &body);
  StatusOr<NodeId> node = NodeId::FromProto(request.header.sender());
  if (s.ok() && !node.ok()) s = node.status();
  if (s.ok() && (node->role != Role::kWorker || node->rank >= options_.num_workers)) {
    s = Status::InvalidArgument("REDUCE from " + node->ToString() + ", which is not a worker");
  }
  if (!s.ok()) {
    (void)rpc_->ReplyError(request, s.WithContext("bad REDUCE"));
    return;
  }
  std::lock_guard lock(mu_);
  if (!abort_status_.ok()) {
    (void)rpc_->ReplyError(request, abort_status_);
    return;
  }
  PendingReduce& pending = reduces_[body.round()];
  const int rank = node->rank;
  if (pending.arrived == 0) {
    pending.values.assign(options_.num_workers, {});
    pending.requests.resize(options_.num_workers);
    pending.received.assign(options_.num_workers, false);
    pending.op = body.op();
    pending.length = body.values_size();
  }
  if (pending.received[rank] || pending.op != body.op() ||
      pending.length != static_cast<size_t>(body.values_size())) {
    AbortLocked(Status::Internal("workers disagree on reduce round " +
                                 std::to_string(body.round()) + " (" + node->ToString() + ")"));
    return;
  }
  pending.received[rank] = true;
  pending.values[rank].assign(body.values().begin(), body.values().end());
  pending.requests[rank] = std::move(request);
  if (++pending.arrived < options_.num_workers) return;

  proto::ReduceReply reply;
  reply.set_round(body.round());
  const size_t n = pending.values[0].size();
  std::vector<double> result = pending.values[0];
  for (int w = 1; w < options_.num_workers; ++w) {
    for (size_t i = 0; i < n; ++i) {
      result[i] = pending.op == proto::REDUCE_OP_MAX ? std::max(result[i], pending.values[w][i])
                                                     : result[i] + pending.values[w][i];
    }
  }
  for (double v : result) reply.add_values(v);
  for (const Message& waiting : pending.requests) {
    (void)rpc_->Reply(waiting, MakeControlMessage(proto::COMMAND_REDUCE, reply));
  }
  reduces_.erase(body.round());
}

void Scheduler::HandleDone(Message&& request) {
  std::lock_guard lock(mu_);
  if (!abort_status_.ok()) {
    (void)rpc_->ReplyError(request, abort_status_);
    return;
  }
  done_requests_.push_back(std::move(request));
  if (static_cast<int>(done_requests_.size()) == options_.num_workers) changed_.notify_all();
}

void Scheduler::HandleAbort(Message&& request) {
  proto::AbortNotice body;
  Status s = ParseControlBody(request, &body);
  StatusOr<NodeId> node = NodeId::FromProto(request.header.sender());
  std::string who = node.ok() ? node->ToString() : "an unknown node";
  std::lock_guard lock(mu_);
  StatusCode code =
      s.ok() && body.code() != 0 ? static_cast<StatusCode>(body.code()) : StatusCode::kAborted;
  AbortLocked(Status(code, s.ok() ? body.reason() : who + " aborted"));
}

void Scheduler::AbortLocked(const Status& reason) {
  if (!abort_status_.ok()) return;
  abort_status_ = reason;
  TS_LOG(ERROR) << "job aborted: " << reason.message();
  for (const Message& m : register_requests_) (void)rpc_->ReplyError(m, reason);
  register_requests_.clear();
  for (auto& [round, pending] : reduces_) {
    for (size_t w = 0; w < pending.requests.size(); ++w) {
      if (pending.received[w]) (void)rpc_->ReplyError(pending.requests[w], reason);
    }
  }
  reduces_.clear();
  for (const Message& m : done_requests_) (void)rpc_->ReplyError(m, reason);
  done_requests_.clear();
  changed_.notify_all();
}

Status Scheduler::Run() {
  std::unique_lock lock(mu_);
  if (!changed_.wait_for(lock, options_.register_timeout,
                         [&] { return all_registered_ || !abort_status_.ok(); })) {
    std::string missing;
    for (int r = 0; r < options_.num_servers; ++r)
      if (!registered_.count(NodeId::Server(r))) missing += " server:" + std::to_string(r);
    for (int r = 0; r < options_.num_workers; ++r)
      if (!registered_.count(NodeId::Worker(r))) missing += " worker:" + std::to_string(r);
    AbortLocked(Status::DeadlineExceeded("nodes did not register within " +
                                         std::to_string(options_.register_timeout.count()) +
                                         " ms:" + missing));
  }
  changed_.wait(lock, [&] {
    return static_cast<int>(done_requests_.size()) == options_.num_workers || !abort_status_.ok();
  });
  std::vector<NodeId> nodes;
  for (const auto& [id, reg] : registered_) nodes.push_back(id);
  if (!abort_status_.ok()) {
    Status reason = abort_status_;
    lock.unlock();
    proto::AbortNotice notice;
    notice.set_reason(reason.message());
    notice.set_code(static_cast<int>(reason.code()));
    for (const NodeId& id : nodes) {
      (void)rpc_->Send(id, MakeControlMessage(proto::COMMAND_ABORT, notice));
    }
    return reason;
  }
  std::vector<Message> done = std::move(done_requests_);
  lock.unlock();
  TS_LOG(INFO) << "all workers done; shutting down";
  // Servers first: once they have acknowledged, no worker traffic can be left in flight.
  std::vector<std::pair<NodeId, std::future<StatusOr<Message>>>> acks;
  for (const NodeId& id : nodes) {
    if (id.role != Role::kServer) continue;
    Message m;
    m.header.set_command(proto::COMMAND_SHUTDOWN);
    acks.emplace_back(id, rpc_->Call(id, std::move(m)));
  }
  Status result;
  for (auto& [id, future] : acks) {
    auto ack = RpcNode::Wait(future, options_.shutdown_timeout, "SHUTDOWN to " + id.ToString());
    if (!ack.ok() && result.ok()) result = ack.status();
  }
  for (const Message& m : done) (void)rpc_->Reply(m, Message());
  return result;
}

}  // namespace tessera::scheduler
