#include "server/server.h"

#include <algorithm>

#include "core/checkpoint.h"
#include "core/logging.h"

namespace tessera::server {

Server::Server(const ServerOptions& options, int rank, RpcNode* rpc)
    : options_(options), rank_(rank), rpc_(rpc) {}

Server::~Server() { Stop(); }

StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options, int rank,
                                                 RpcNode* rpc) {
  if (options.tables.empty()) return Status::InvalidArgument("a server needs at least one table");
  if (options.threads_per_shard < 1 || options.threads_per_shard > 2) {
    return Status::InvalidArgument("threads per shard must be 1 or 2, got " +
                                   std::to_string(options.threads_per_shard));
  }
  if (options.num_shard_threads < 1 || options.num_shard_threads > 64) {
    return Status::InvalidArgument("server shard threads must be in [1, 64], got " +
                                   std::to_string(options.num_shard_threads));
  }
  std::unique_ptr<Server> server(new Server(options, rank, rpc));
  for (size_t t = 0; t < options.tables.size(); ++t) {
    if (options.tables[t].table_id != t) {
      return Status::InvalidArgument("table options must be indexed by table id");
    }
    server->layout_.dims.push_back(options.tables[t].dim);
  }
  for (int i = 0; i < options.num_shard_threads; ++i) {
    TS_ASSIGN_OR_RETURN(auto shard,
                        Shard::Create(i, options.tables, /*helper=*/options.threads_per_shard > 1));
    server->shards_.push_back(std::move(shard));
  }
  return server;
}

Status Server::Start(const ShardMap& shard_map, int num_workers) {
  if (num_workers < 1) return Status::InvalidArgument("no workers");
  std::vector<Message> early;
  shard_map_ = shard_map;
  num_workers_ = num_workers;
  if (!options_.resume_dir.empty()) {
    TS_RETURN_IF_ERROR(LoadCheckpoint().WithContext("resume from " + options_.resume_dir));
  }
  ShardContext context;
  context.server_rank = rank_;
  context.num_workers = num_workers;
  context.deterministic = options_.deterministic;
  context.finish_part = [this](const std::shared_ptr<Request>& request) { FinishPart(request); };
  context.write_checkpoint = [this](Shard* shard, CheckpointJob& job) {
    WriteShardRows(shard, job);
  };
  for (auto& shard : shards_) {
    shard->Start(context,
                 "server:" + std::to_string(rank_) + "/shard" + std::to_string(shard->index()));
  }
  {
    MutexLock lock(&clock_mu_);
    next_push_clock_.assign(static_cast<size_t>(num_workers), StepsApplied());
  }
  {
    MutexLock lock(&mu_);
    started_ = true;
    early.swap(early_requests_);
  }
  for (Message& m : early) HandleRequest(std::move(m));
  TS_LOG(INFO) << "serving " << options_.tables.size() << " table(s) with " << shards_.size()
               << " shard thread(s)"
               << (options_.threads_per_shard > 1 ? " (and a helper thread each)" : "")
               << (options_.deterministic ? ", deterministic" : "");
  return OkStatus();
}

void Server::Stop() {
  for (auto& shard : shards_) shard->Close();
  for (auto& shard : shards_) shard->Join();
}

ServerStats Server::stats() const {
  ServerStats s;
  for (const auto& shard : shards_) {
    s.pulls += shard->pulls.load();
    s.pushes += shard->pushes.load();
    s.keys_pulled += shard->keys_pulled.load();
    s.keys_pushed += shard->keys_pushed.load();
    for (uint32_t t = 0; t < shard->num_tables(); ++t) s.rows += shard->table(t).size();
  }
  if (!shards_.empty()) {
    s.pulls /= static_cast<int64_t>(shards_.size());
    s.pushes /= static_cast<int64_t>(shards_.size());
  }
  s.rejected = rejected_.load();
  return s;
}

int64_t Server::StepsApplied() const {
  int64_t steps = INT64_MAX;
  for (const auto& shard : shards_) {
    steps = std::min(steps, shard->steps_applied.load(std::memory_order_relaxed));
  }
  return shards_.empty() ? 0 : steps;
}

const float* Server::PeekRow(uint32_t table_id, uint64_t key) const {
  if (table_id >= options_.tables.size()) return nullptr;
  int shard = static_cast<int>(SlotOf(table_id, key) % shards_.size());
  return static_cast<const Shard&>(*shards_[shard]).table(table_id).Find(key);
}

void Server::HandleRequest(Message&& request) {
  const proto::Command command = request.header.command();
  if (command == proto::COMMAND_PULL || command == proto::COMMAND_PUSH) {
    {
      MutexLock lock(&mu_);
      if (!started_) {
        early_requests_.push_back(std::move(request));
        return;
      }
    }
    Message copy_for_error;
    copy_for_error.header = request.header;
    Status s = ValidateAndRoute(std::move(request));
    if (!s.ok()) {
      ++rejected_;
      TS_LOG(WARNING) << "rejected " << copy_for_error.DebugString() << ": " << s.message();
      (void)rpc_->ReplyError(copy_for_error, s);
    }
    return;
  }
  switch (command) {
    case proto::COMMAND_SHUTDOWN: {
      (void)rpc_->Reply(request, Message());
      MutexLock lock(&mu_);
      shutdown_requested_ = true;
      stopped_cv_.SignalAll();
      return;
    }
    case proto::COMMAND_ABORT: {
      proto::AbortNotice notice;
      Status parsed = ParseControlBody(request, &notice);
      Abort(parsed.ok() && notice.code() != 0
                ? Status(static_cast<StatusCode>(notice.code()), notice.reason())
                : Status::Aborted(parsed.ok() ? notice.reason() : "job aborted"));
      return;
    }
    case proto::COMMAND_ECHO: {
      Message reply;
      reply.frames = request.frames;
      (void)rpc_->Reply(request, std::move(reply));
      return;
    }
    case proto::COMMAND_CHECKPOINT:
      return StartCheckpoint(std::move(request));
    default: {
      ++rejected_;
      Status s =
          Status::InvalidArgument("a server does not handle " + proto::Command_Name(command));
      TS_LOG(WARNING) << s.message();
      (void)rpc_->ReplyError(request, s);
    }
  }
}

Status Server::ValidateAndRoute(Message&& message) {
  if (message.header.is_reply()) return Status::InvalidArgument("unexpected reply");
  TS_RETURN_IF_ERROR(ValidateKeyValueMessage(layout_, &message));
  TS_ASSIGN_OR_RETURN(NodeId sender, NodeId::FromProto(message.header.sender()));
  if (sender.role != Role::kWorker || sender.rank >= num_workers_) {
    return Status::InvalidArgument("data request from " + sender.ToString() +
                                   ", which is not a worker of this job");
  }
  if (message.header.shard_map_version() != 0 &&
      message.header.shard_map_version() != shard_map_.version()) {
    return Status::FailedPrecondition(
        "shard map version " + std::to_string(message.header.shard_map_version()) +
        " is not the current " + std::to_string(shard_map_.version()));
  }
  if (message.header.clock() < 0) return Status::InvalidArgument("negative clock");

  auto request = std::make_shared<Request>();
  request->worker_rank = sender.rank;
  const proto::Header& h = message.header;
  uint64_t key_offset = 0, value_offset = 0;
  for (const auto& t : h.tables()) {
    request->key_offset.push_back(key_offset);
    request->value_offset.push_back(value_offset);
    key_offset += t.num_keys();
    value_offset += t.num_keys() * static_cast<uint64_t>(layout_.DimOf(t.table_id()));
  }
  if (h.command() == proto::COMMAND_PULL) {
    void* out = nullptr;
    request->reply_frame = Frame::Allocate(value_offset * sizeof(float), &out);
    request->reply_values = static_cast<float*>(out);
  }

  // Every key must belong to this server; with several shard threads, split keys among them.
  const uint64_t* keys = message.frames[0].as<uint64_t>();
  const size_t num_shards = shards_.size();
  std::vector<std::vector<uint32_t>> positions(num_shards > 1 ? num_shards : 0);
  for (int ti = 0; ti < h.tables_size(); ++ti) {
    const uint32_t table_id = h.tables(ti).table_id();
    const uint64_t begin = request->key_offset[ti];
    const uint64_t end = begin + h.tables(ti).num_keys();
    for (uint64_t i = begin; i < end; ++i) {
      const uint32_t slot = SlotOf(table_id, keys[i]);
      if (shard_map_.ServerOfSlot(slot) != rank_) {
        return Status::InvalidArgument(
            "key " + std::to_string(keys[i]) + " of table " + std::to_string(table_id) +
            " belongs to server:" + std::to_string(shard_map_.ServerOfSlot(slot)));
      }
      if (num_shards > 1) positions[slot % num_shards].push_back(static_cast<uint32_t>(i));
    }
  }
  if (h.command() == proto::COMMAND_PUSH) {
    // The consistency check (BSP): a push is applied only at the step its worker is at.
    MutexLock lock(&clock_mu_);
    int64_t& expected = next_push_clock_[static_cast<size_t>(sender.rank)];
    if (h.clock() != expected) {
      return Status::FailedPrecondition("push for step " + std::to_string(h.clock()) + " from " +
                                        sender.ToString() + ", whose next step is " +
                                        std::to_string(expected) + " (BSP)");
    }
    ++expected;
  }
  request->message = std::move(message);
  request->remaining.store(static_cast<int>(num_shards));
  for (size_t s = 0; s < num_shards; ++s) {
    WorkItem item;
    item.request = request;
    if (num_shards == 1) {
      item.all = true;
    } else {
      item.positions = std::move(positions[s]);
    }
    shards_[s]->Enqueue(std::move(item));
  }
  return OkStatus();
}

void Server::FinishPart(const std::shared_ptr<Request>& request) {
  if (request->remaining.fetch_sub(1) != 1) return;
  const Status error = request->FirstError();
  if (!error.ok()) {
    ++rejected_;
    (void)rpc_->ReplyError(request->message, error);
    return;
  }
  Message reply;
  reply.header.set_clock(request->message.header.clock());
  if (request->message.header.command() == proto::COMMAND_PULL) {
    *reply.header.mutable_tables() = request->message.header.tables();
    reply.header.set_dtype(proto::DTYPE_FLOAT32);
    reply.frames.push_back(std::move(request->reply_frame));
  }
  Status sent = rpc_->Reply(request->message, std::move(reply));
  if (!sent.ok()) TS_VLOG(1) << "reply not sent: " << sent.message();
}

void Server::Abort(const Status& reason) {
  {
    MutexLock lock(&mu_);
    if (abort_status_.ok()) abort_status_ = reason;
    stopped_cv_.SignalAll();
  }
  if (options_.on_abort) options_.on_abort(reason);
}

Status Server::WaitForShutdown(std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  if (!stopped_cv_.WaitFor(&mu_, timeout, [&]() TS_REQUIRES(mu_) {
        return shutdown_requested_ || !abort_status_.ok();
      })) {
    return Status::DeadlineExceeded("server:" + std::to_string(rank_) +
                                    " received no SHUTDOWN in time");
  }
  return abort_status_;
}

Status RunServerNode(const ServerOptions& options, RpcNode* rpc,
                     std::chrono::milliseconds register_timeout) {
  const int rank = rpc->self().rank;
  TS_ASSIGN_OR_RETURN(auto server, Server::Create(options, rank, rpc));
  TS_RETURN_IF_ERROR(
      rpc->Start([s = server.get()](Message&& m) { s->HandleRequest(std::move(m)); }));
  auto view = RegisterWithScheduler(*rpc, register_timeout);
  if (!view.ok()) {
    rpc->Stop();
    return view.status().WithContext("server:" + std::to_string(rank) + " registration");
  }
  std::unique_ptr<Heartbeater> heartbeat;
  if (options.heartbeat_interval.count() > 0) {
    heartbeat = std::make_unique<Heartbeater>(
        rpc, options.heartbeat_interval, options.heartbeat_timeout,
        [s = server.get(), rank, dir = options.checkpoint_dir,
         env = options.env](const Status& lost) {
          const std::string latest = dir.empty() ? "" : checkpoint::FindLatest(env, dir);
          s->Abort(Status(lost.code(), "server:" + std::to_string(rank) + ": " + lost.message() +
                                           " at step " + std::to_string(s->StepsApplied()) + "; " +
                                           checkpoint::ResumeHint(latest, dir)));
        });
  }
  Status result = server->Start(view->shard_map, view->num_workers);
  if (!result.ok()) {
    // No other node may wait for this server (a checkpoint it cannot load).
    ReportFailure(rpc, result);
    (void)server->WaitForShutdown(std::chrono::seconds(10));
    heartbeat.reset();
    rpc->Stop();
    return result;
  }
  result = server->WaitForShutdown(std::chrono::hours(24 * 365));
  heartbeat.reset();
  rpc->Stop();
  server->Stop();
  ServerStats st = server->stats();
  TS_LOG(INFO) << "stopped: " << st.rows << " rows, " << st.pulls << " pulls (" << st.keys_pulled
               << " keys), " << st.pushes << " pushes (" << st.keys_pushed << " keys), "
               << st.rejected << " rejected";
  return result;
}

}  // namespace tessera::server
