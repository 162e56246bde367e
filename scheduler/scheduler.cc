#include "scheduler/scheduler.h"

#include <algorithm>
#include <csignal>
#include <ctime>

#include "core/checkpoint.h"
#include "core/cluster.h"
#include "core/escape.h"
#include "core/logging.h"

namespace tessera::scheduler {

Scheduler::Scheduler(const SchedulerOptions& options, RpcNode* rpc)
    : options_(options),
      rpc_(rpc),
      shard_map_(ShardMap::Even(options.num_servers, 1)),
      last_checkpoint_(options.resumed_from) {}

Status Scheduler::Start() {
  if (options_.num_servers < 1 || options_.num_workers < 1) {
    return Status::InvalidArgument("a job needs at least one server and one worker");
  }
  if (!options_.checkpoint_dir.empty()) {
    TS_RETURN_IF_ERROR(checkpoint::MakeDirs(options_.env, options_.checkpoint_dir)
                           .WithContext("--checkpoint-dir"));
    // Directories of checkpoints a crash interrupted; no node writes before registration ends.
    checkpoint::RemoveIncomplete(options_.env, options_.checkpoint_dir);
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
    case proto::COMMAND_CHECKPOINT:
      return HandleCheckpoint(std::move(request));
    case proto::COMMAND_HEARTBEAT:
      return HandleHeartbeat(std::move(request));
    case proto::COMMAND_SIGNAL: {
      proto::SignalNotice notice;
      if (ParseControlBody(request, &notice).ok()) RequestCheckpoint(notice.signal());
      return;
    }
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
  MutexLock lock(&mu_);
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
  TS_LOG(INFO) << id.ToString() << " joined from " << EscapeUntrusted(body.host()) << " (pid "
               << body.pid()
               << (body.endpoint().empty() ? "" : ", " + EscapeUntrusted(body.endpoint())) << ")";
  register_requests_.push_back(std::move(request));
  if (static_cast<int>(registered_.size()) < options_.num_servers + options_.num_workers) return;

  all_registered_ = true;
  const auto now = options_.env->Now();
  for (const auto& [peer, reg] : registered_) last_seen_[peer] = now;
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
  changed_.SignalAll();
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
  MutexLock lock(&mu_);
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
  if (body.round() & kSignalPollRound) {
    // A stop always comes with a checkpoint (also when a SIGTERM arrives while the checkpoint
    // of an earlier SIGUSR1 is being written: that one clears only what it was asked for).
    reply.set_checkpoint_requested(signal_checkpoint_ || signal_stop_);
    reply.set_stop_requested(signal_stop_);
    delivered_checkpoint_ |= signal_checkpoint_ || signal_stop_;
    delivered_stop_ |= signal_stop_;
  }
  for (const Message& waiting : pending.requests) {
    (void)rpc_->Reply(waiting, MakeControlMessage(proto::COMMAND_REDUCE, reply));
  }
  reduces_.erase(body.round());
}

void Scheduler::HandleDone(Message&& request) {
  MutexLock lock(&mu_);
  if (!abort_status_.ok()) {
    (void)rpc_->ReplyError(request, abort_status_);
    return;
  }
  done_requests_.push_back(std::move(request));
  if (static_cast<int>(done_requests_.size()) == options_.num_workers) changed_.SignalAll();
}

void Scheduler::RequestCheckpoint(int signal) {
  MutexLock lock(&mu_);
  const char* name = signal == SIGTERM ? "SIGTERM" : signal == SIGUSR1 ? "SIGUSR1" : "a signal";
  if (options_.checkpoint_dir.empty()) {
    if (signal == SIGTERM) {
      AbortLocked(Status::Cancelled(std::string("stopped by ") + name +
                                    " (no --checkpoint-dir, so nothing was saved)"));
    } else {
      TS_LOG(WARNING) << name << " received, but there is no --checkpoint-dir: ignored";
    }
    return;
  }
  TS_LOG(INFO) << name << " received: checkpoint at the next step"
               << (signal == SIGTERM ? ", then stop" : "");
  signal_checkpoint_ = true;
  signal_stop_ |= signal == SIGTERM;
}

void Scheduler::HandleHeartbeat(Message&& request) {
  proto::Heartbeat body;
  StatusOr<NodeId> node = NodeId::FromProto(request.header.sender());
  if (!ParseControlBody(request, &body).ok() || !node.ok()) {
    (void)rpc_->ReplyError(request, Status::InvalidArgument("bad HEARTBEAT"));
    return;
  }
  {
    MutexLock lock(&mu_);
    auto it = last_seen_.find(*node);
    if (it != last_seen_.end()) it->second = options_.env->Now();
    step_ = std::max(step_, body.step());
    CheckLivenessLocked();
  }
  (void)rpc_->Reply(request, Message());
}

void Scheduler::HandleCheckpoint(Message&& request) {
  proto::CheckpointRequest body;
  Status s = ParseControlBody(request, &body);
  StatusOr<NodeId> node = NodeId::FromProto(request.header.sender());
  if (s.ok() && !node.ok()) s = node.status();
  if (s.ok() && (node->role != Role::kWorker || node->rank >= options_.num_workers)) {
    s = Status::InvalidArgument("CHECKPOINT from " + node->ToString() + ", which is not a worker");
  }
  if (s.ok() && options_.checkpoint_dir.empty()) {
    s = Status::FailedPrecondition("CHECKPOINT, but the job has no --checkpoint-dir");
  }
  if (!s.ok()) {
    (void)rpc_->ReplyError(request, s.WithContext("bad CHECKPOINT"));
    return;
  }
  MutexLock lock(&mu_);
  if (!abort_status_.ok()) {
    (void)rpc_->ReplyError(request, abort_status_);
    return;
  }
  PendingCheckpoint& p = checkpoint_;
  if (p.arrived == 0) {
    p = PendingCheckpoint();
    p.step = body.step();
    p.dir = body.dir();
    p.requests.resize(options_.num_workers);
    p.received.assign(options_.num_workers, false);
  }
  const int rank = node->rank;
  if (checkpoint_ready_ || p.step != body.step() || p.received[rank]) {
    AbortLocked(Status::Internal("workers disagree on the checkpoint step (" + node->ToString() +
                                 " at step " + std::to_string(body.step()) + ", others at " +
                                 std::to_string(p.step) + ")"));
    return;
  }
  p.received[rank] = true;
  for (const auto& f : body.files()) p.files.push_back(f);
  if (rank == 0) {
    p.model = body.model();
    p.final = body.final();
  }
  p.requests[rank] = std::move(request);
  if (++p.arrived == options_.num_workers) {
    checkpoint_ready_ = true;
    changed_.SignalAll();
  }
}

void Scheduler::CheckLivenessLocked() {
  if (options_.heartbeat_timeout.count() <= 0 || !abort_status_.ok()) return;
  const auto now = options_.env->Now();
  for (const auto& [node, seen] : last_seen_) {
    if (now - seen <= options_.heartbeat_timeout) continue;
    const auto& reg = registered_.at(node);
    char silent[32];
    std::snprintf(silent, sizeof(silent), "%.1f",
                  std::chrono::duration<double>(now - seen).count());
    AbortLocked(Status::Unavailable(
        "lost " + node.ToString() + " (host " + reg.host() + ", pid " + std::to_string(reg.pid()) +
        "): no heartbeat for " + silent + " s; the job stopped at step " + std::to_string(step_) +
        "; " + checkpoint::ResumeHint(last_checkpoint_, options_.checkpoint_dir)));
    return;
  }
}

Status Scheduler::WriteCheckpoint(PendingCheckpoint& p) {
  const auto start = options_.env->Now();
  std::vector<std::pair<NodeId, std::future<StatusOr<Message>>>> calls;
  proto::CheckpointRequest ask;
  ask.set_step(p.step);
  ask.set_dir(p.dir);
  for (int r = 0; r < options_.num_servers; ++r) {
    calls.emplace_back(
        NodeId::Server(r),
        rpc_->Call(NodeId::Server(r), MakeControlMessage(proto::COMMAND_CHECKPOINT, ask)));
  }
  const auto deadline = start + options_.checkpoint_timeout;
  for (auto& [id, future] : calls) {
    // In slices: a node lost while the servers write must still end the job in time.
    while (future.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready) {
      MutexLock lock(&mu_);
      CheckLivenessLocked();
      if (!abort_status_.ok()) return abort_status_;
      if (options_.env->Now() > deadline) {
        return Status::DeadlineExceeded("CHECKPOINT of " + id.ToString() + ": no reply within " +
                                        std::to_string(options_.checkpoint_timeout.count()) +
                                        " ms");
      }
    }
    TS_ASSIGN_OR_RETURN(Message reply, future.get());
    proto::CheckpointRequest files;
    TS_RETURN_IF_ERROR(ParseControlBody(reply, &files));
    for (const auto& f : files.files()) p.files.push_back(f);
  }
  proto::CheckpointManifest manifest;
  manifest.set_format_version(checkpoint::kFormatVersion);
  manifest.set_step(p.step);
  char created[32];
  const std::time_t now = std::time(nullptr);
  std::tm utc;
  gmtime_r(&now, &utc);
  std::strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &utc);
  manifest.set_created(created);
  *manifest.mutable_model() = p.model;
  *manifest.mutable_shard_map() = shard_map_.ToProto();
  manifest.set_num_servers(options_.num_servers);
  manifest.set_num_workers(options_.num_workers);
  manifest.set_config(options_.config_summary);
  std::sort(p.files.begin(), p.files.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  uint64_t bytes = 0, rows = 0;
  for (const auto& f : p.files) {
    bytes += f.size_bytes();
    if (f.kind() == proto::CheckpointFile::KIND_ROWS) {
      rows += f.num_rows();
      for (auto& t : *manifest.mutable_model()->mutable_tables()) {
        if (t.table_id() == f.table_id()) t.set_num_rows(t.num_rows() + f.num_rows());
      }
    }
    *manifest.add_files() = f;
  }
  TS_RETURN_IF_ERROR(checkpoint::WriteManifest(options_.env, p.dir, manifest));
  TS_RETURN_IF_ERROR(checkpoint::Commit(options_.env, options_.checkpoint_dir, p.step));
  Status pruned =
      checkpoint::Prune(options_.env, options_.checkpoint_dir, options_.keep_checkpoints, p.step);
  if (!pruned.ok()) TS_LOG(WARNING) << "old checkpoints not deleted: " << pruned.message();
  const double seconds = std::chrono::duration<double>(options_.env->Now() - start).count();
  char line[160];
  std::snprintf(line, sizeof(line), "%d files, %llu rows, %.1f MB in %.2f s (%.2f GB/s)",
                manifest.files_size(), static_cast<unsigned long long>(rows), bytes / 1e6, seconds,
                bytes / 1e9 / std::max(seconds, 1e-9));
  TS_LOG(INFO) << "checkpoint " << options_.checkpoint_dir << "/" << checkpoint::StepDirName(p.step)
               << " written: " << line;
  return OkStatus();
}

void Scheduler::HandleAbort(Message&& request) {
  proto::AbortNotice body;
  Status s = ParseControlBody(request, &body);
  StatusOr<NodeId> node = NodeId::FromProto(request.header.sender());
  std::string who = node.ok() ? node->ToString() : "an unknown node";
  StatusCode code =
      s.ok() && body.code() != 0 ? static_cast<StatusCode>(body.code()) : StatusCode::kAborted;
  Abort(Status(code, s.ok() ? body.reason() : who + " aborted"));
}

void Scheduler::Abort(const Status& reason) {
  MutexLock lock(&mu_);
  AbortLocked(reason);
}

void Scheduler::AbortLocked(const Status& reason) {
  if (!abort_status_.ok()) return;
  abort_status_ = reason;
  TS_LOG(ERROR) << "job aborted: " << reason.message();
  // Calls of the Run() thread (a checkpoint's CHECKPOINT to the servers) end now.
  rpc_->FailPending(reason);
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
  for (size_t w = 0; w < checkpoint_.requests.size(); ++w) {
    if (checkpoint_.received[w]) (void)rpc_->ReplyError(checkpoint_.requests[w], reason);
  }
  checkpoint_ = PendingCheckpoint();
  checkpoint_ready_ = false;
  changed_.SignalAll();
}

Status Scheduler::Run() {
  // Explicit Lock/Unlock, not a MutexLock: the lock is let go while a checkpoint is written and
  // before the servers are shut down (the analysis follows both).
  mu_.Lock();
  if (!changed_.WaitFor(&mu_, options_.register_timeout, [&]() TS_REQUIRES(mu_) {
        return all_registered_ || !abort_status_.ok();
      })) {
    std::string missing;
    for (int r = 0; r < options_.num_servers; ++r)
      if (!registered_.count(NodeId::Server(r))) missing += " server:" + std::to_string(r);
    for (int r = 0; r < options_.num_workers; ++r)
      if (!registered_.count(NodeId::Worker(r))) missing += " worker:" + std::to_string(r);
    AbortLocked(Status::DeadlineExceeded("nodes did not register within " +
                                         std::to_string(options_.register_timeout.count()) +
                                         " ms:" + missing));
  }
  while (true) {
    changed_.WaitFor(&mu_, std::chrono::milliseconds(200), [&]() TS_REQUIRES(mu_) {
      return static_cast<int>(done_requests_.size()) == options_.num_workers ||
             !abort_status_.ok() || checkpoint_ready_;
    });
    CheckLivenessLocked();
    if (!abort_status_.ok() || static_cast<int>(done_requests_.size()) == options_.num_workers) {
      break;
    }
    if (!checkpoint_ready_) continue;
    PendingCheckpoint pending = std::move(checkpoint_);
    checkpoint_ = PendingCheckpoint();
    checkpoint_ready_ = false;
    mu_.Unlock();
    Status written = WriteCheckpoint(pending);
    mu_.Lock();
    if (!abort_status_.ok()) break;
    const std::string path = options_.checkpoint_dir + "/" + checkpoint::StepDirName(pending.step);
    if (!written.ok()) {
      AbortLocked(Status(written.code(),
                         "checkpoint of step " + std::to_string(pending.step) + " failed (" +
                             written.message() + "); the previous one is intact; " +
                             checkpoint::ResumeHint(last_checkpoint_, options_.checkpoint_dir)));
      break;
    }
    last_checkpoint_ = path;
    if (delivered_checkpoint_) signal_checkpoint_ = delivered_checkpoint_ = false;
    if (delivered_stop_) {
      signal_stop_ = delivered_stop_ = false;
      // The workers stop here, unless training is over anyway.
      stopped_by_signal_ = !pending.final;
    }
    proto::CheckpointReply reply;
    reply.set_path(path);
    for (const Message& m : pending.requests) {
      (void)rpc_->Reply(m, MakeControlMessage(proto::COMMAND_CHECKPOINT, reply));
    }
  }
  std::vector<NodeId> nodes;
  for (const auto& [id, reg] : registered_) nodes.push_back(id);
  if (!abort_status_.ok()) {
    Status reason = abort_status_;
    mu_.Unlock();
    proto::AbortNotice notice;
    notice.set_reason(EscapeUntrusted(reason.message()));
    notice.set_code(static_cast<int>(reason.code()));
    for (const NodeId& id : nodes) {
      (void)rpc_->Send(id, MakeControlMessage(proto::COMMAND_ABORT, notice));
    }
    return reason;
  }
  std::vector<Message> done = std::move(done_requests_);
  mu_.Unlock();
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
  if (result.ok()) {
    MutexLock relock(&mu_);
    if (stopped_by_signal_) {
      return Status::Cancelled("stopped by a signal after checkpoint " + last_checkpoint_ +
                               "; continue with --resume auto --checkpoint-dir " +
                               options_.checkpoint_dir);
    }
  }
  return result;
}

}  // namespace tessera::scheduler
