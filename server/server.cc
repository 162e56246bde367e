#include "server/server.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>

#include "core/checkpoint.h"
#include "core/fork_join.h"
#include "core/logging.h"
#include "kernels/device_resources.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::server {

struct Server::Request {
  Message message;
  int worker_rank = 0;
  std::vector<uint64_t> key_offset;    // per header table: index of its first key
  std::vector<uint64_t> value_offset;  // per header table: index of its first value float
  Frame reply_frame;
  float* reply_values = nullptr;
  std::atomic<int> remaining{0};
  std::mutex error_mu;
  Status error;  // GUARDED_BY(error_mu): the first failure of any part

  void Fail(const Status& s) {
    std::lock_guard lock(error_mu);
    if (error.ok()) error = s;
  }
};

struct Server::CheckpointJob {
  Message request;
  int64_t step = 0;
  std::string dir;
  std::atomic<int> remaining{0};
  std::mutex mu;
  std::vector<proto::CheckpointFile> files;  // GUARDED_BY(mu)
  Status error;                              // GUARDED_BY(mu)
};

struct Server::Shard {
  int index = 0;
  std::vector<std::unique_ptr<EmbeddingTable>> tables;  // by table id; this thread's rows only
  BlockingQueue<WorkItem> queue;
  std::thread thread;
  // Every push with clock < applied_clock has been applied.
  int64_t applied_clock = 0;
  std::atomic<int64_t> steps_applied{0};  // applied_clock, readable from other threads
  std::map<int64_t, int> pushes_applied;  // non-deterministic mode
  std::map<int64_t, std::vector<std::optional<WorkItem>>> held;  // deterministic mode
  std::deque<WorkItem> parked_pulls;                             // clock > applied_clock
  std::vector<float*> rows;                                      // scratch
  std::vector<uint64_t> keys;                                    // scratch
  std::vector<float> grads;                                      // scratch
  // The shard thread's compute resources; with threads_per_shard 2 a helper thread that takes
  // half of large requests' rows (updates through the kernels' context, pull copies directly).
  std::unique_ptr<kernels::DeviceResources> device;
  TwoWayFork* helper = nullptr;  // device's helper thread, or null
  // Per worker: the keys and rows of its last pull (whole requests only). A worker pushes the
  // keys it just pulled, so the push can reuse the rows instead of probing the index again.
  // Rows never move (EmbeddingTable's arena contract), and the keys are compared before reuse.
  struct PullCache {
    Frame keys;
    std::vector<std::pair<uint32_t, uint64_t>> tables;  // (table id, keys) as in the header
    std::vector<float*> rows;

    bool Matches(const proto::Header& h, const Frame& other) const {
      if (keys.size() != other.size() || tables.size() != static_cast<size_t>(h.tables_size())) {
        return false;
      }
      for (size_t t = 0; t < tables.size(); ++t) {
        if (tables[t].first != h.tables(t).table_id() ||
            tables[t].second != h.tables(t).num_keys()) {
          return false;
        }
      }
      return keys.data() == other.data() ||
             std::memcmp(keys.data(), other.data(), keys.size()) == 0;
    }
  };
  std::vector<PullCache> last_pull;  // by worker rank
  std::atomic<int64_t> pulls{0}, pushes{0}, keys_pulled{0}, keys_pushed{0};
};

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
    auto shard = std::make_unique<Shard>();
    shard->index = i;
    kernels::DeviceOptions device_options;
    device_options.cpu_threads = options.threads_per_shard;
    TS_ASSIGN_OR_RETURN(shard->device, kernels::DeviceResources::Create(device_options));
    shard->helper = shard->device->helper();
    for (const TableOptions& t : options.tables) {
      TS_ASSIGN_OR_RETURN(auto table, EmbeddingTable::Create(t));
      shard->tables.push_back(std::move(table));
    }
    server->shards_.push_back(std::move(shard));
  }
  return server;
}

Status Server::Start(const ShardMap& shard_map, int num_workers) {
  if (num_workers < 1) return Status::InvalidArgument("no workers");
  std::vector<Message> early;
  shard_map_ = shard_map;
  num_workers_ = num_workers;
  for (auto& shard : shards_) shard->last_pull.resize(num_workers);
  if (!options_.resume_dir.empty()) {
    TS_RETURN_IF_ERROR(LoadCheckpoint().WithContext("resume from " + options_.resume_dir));
  }
  for (auto& shard : shards_) {
    Shard* s = shard.get();
    s->thread = std::thread([this, s] {
      logging::SetThreadLogTag("server:" + std::to_string(rank_) + "/shard" +
                               std::to_string(s->index));
      ShardLoop(s);
    });
  }
  {
    std::lock_guard lock(mu_);
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
  for (auto& shard : shards_) shard->queue.Close();
  for (auto& shard : shards_) {
    if (shard->thread.joinable()) shard->thread.join();
  }
}

ServerStats Server::stats() const {
  ServerStats s;
  for (const auto& shard : shards_) {
    s.pulls += shard->pulls.load();
    s.pushes += shard->pushes.load();
    s.keys_pulled += shard->keys_pulled.load();
    s.keys_pushed += shard->keys_pushed.load();
    for (const auto& t : shard->tables) s.rows += t->size();
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
  return static_cast<const EmbeddingTable&>(*shards_[shard]->tables[table_id]).Find(key);
}

void Server::HandleRequest(Message&& request) {
  const proto::Command command = request.header.command();
  if (command == proto::COMMAND_PULL || command == proto::COMMAND_PUSH) {
    {
      std::lock_guard lock(mu_);
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
      std::lock_guard lock(mu_);
      shutdown_requested_ = true;
      stopped_cv_.notify_all();
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
    shards_[s]->queue.Push(std::move(item));
  }
  return OkStatus();
}

void Server::ShardLoop(Shard* shard) {
  while (auto item = shard->queue.Pop()) Process(shard, *item);
  // Closed: answer whatever is still parked so no worker waits for a stopped server.
  for (WorkItem& pull : shard->parked_pulls) {
    pull.request->Fail(Status::Unavailable("server:" + std::to_string(rank_) + " stopped"));
    FinishPart(pull.request);
  }
  shard->parked_pulls.clear();
}

void Server::Process(Shard* shard, WorkItem& item) {
  if (item.checkpoint) return WriteShardRows(shard, *item.checkpoint);
  const proto::Header& h = item.request->message.header;
  const int64_t clock = h.clock();
  if (h.command() == proto::COMMAND_PULL) {
    if (clock <= shard->applied_clock) {
      ServePull(shard, item);
    } else {
      shard->parked_pulls.push_back(std::move(item));
    }
    return;
  }
  if (clock < shard->applied_clock) {
    item.request->Fail(Status::FailedPrecondition("push for step " + std::to_string(clock) +
                                                  " arrived after that step was closed"));
    FinishPart(item.request);
    return;
  }
  if (options_.deterministic) {
    auto& slots = shard->held[clock];
    if (slots.empty()) slots.resize(num_workers_);
    auto& slot = slots[item.request->worker_rank];
    if (slot.has_value()) {
      item.request->Fail(Status::InvalidArgument("second push for step " + std::to_string(clock)));
      FinishPart(item.request);
      return;
    }
    slot = std::move(item);
    // Apply whole steps, each in worker-rank order, as soon as all their pushes are here.
    while (true) {
      auto it = shard->held.find(shard->applied_clock);
      if (it == shard->held.end()) break;
      bool complete = std::all_of(it->second.begin(), it->second.end(),
                                  [](const auto& w) { return w.has_value(); });
      if (!complete) break;
      for (auto& w : it->second) ApplyPush(shard, *w);
      shard->held.erase(it);
      ++shard->applied_clock;
      shard->steps_applied.store(shard->applied_clock, std::memory_order_relaxed);
    }
  } else {
    ApplyPush(shard, item);
    ++shard->pushes_applied[clock];
    while (true) {
      auto it = shard->pushes_applied.find(shard->applied_clock);
      if (it == shard->pushes_applied.end() || it->second < num_workers_) break;
      shard->pushes_applied.erase(it);
      ++shard->applied_clock;
      shard->steps_applied.store(shard->applied_clock, std::memory_order_relaxed);
    }
  }
  // Serve the pulls this push released, in arrival order.
  std::deque<WorkItem> still_parked;
  for (WorkItem& pull : shard->parked_pulls) {
    if (pull.request->message.header.clock() <= shard->applied_clock) {
      ServePull(shard, pull);
    } else {
      still_parked.push_back(std::move(pull));
    }
  }
  shard->parked_pulls.swap(still_parked);
}

void Server::ServePull(Shard* shard, WorkItem& item) {
  Request& r = *item.request;
  const proto::Header& h = r.message.header;
  const bool create = (h.flags() & proto::FLAG_NO_CREATE) == 0;
  const uint64_t* keys = r.message.frames[0].as<uint64_t>();
  int64_t served = 0;
  Shard::PullCache* cache = nullptr;
  if (item.all && create) {
    cache = &shard->last_pull[r.worker_rank];
    cache->keys = r.message.frames[0];
    cache->tables.clear();
    for (const auto& t : h.tables()) cache->tables.emplace_back(t.table_id(), t.num_keys());
    cache->rows.resize(TotalKeys(h));
  }
  for (int ti = 0; ti < h.tables_size(); ++ti) {
    const uint32_t table_id = h.tables(ti).table_id();
    EmbeddingTable& table = *shard->tables[table_id];
    const int dim = table.dim();
    const uint64_t begin = r.key_offset[ti];
    const uint64_t n = h.tables(ti).num_keys();
    float* out = r.reply_values + r.value_offset[ti];
    if (item.all) {
      float** rows = shard->rows.data();
      if (cache != nullptr) {
        rows = cache->rows.data() + begin;
      } else {
        shard->rows.resize(n);
        rows = shard->rows.data();
      }
      table.FindBatch(keys + begin, static_cast<int64_t>(n), create, rows);
      CopyRows(shard, table, keys + begin, rows, n, out);
      served += static_cast<int64_t>(n);
      continue;
    }
    shard->keys.clear();
    for (uint32_t p : item.positions) {
      if (p >= begin && p < begin + n) shard->keys.push_back(keys[p]);
    }
    shard->rows.resize(shard->keys.size());
    table.FindBatch(shard->keys.data(), static_cast<int64_t>(shard->keys.size()), create,
                    shard->rows.data());
    size_t k = 0;
    for (uint32_t p : item.positions) {
      if (p < begin || p >= begin + n) continue;
      float* dst = out + (p - begin) * dim;
      if (shard->rows[k] != nullptr) {
        std::memcpy(dst, shard->rows[k], dim * sizeof(float));
      } else {
        table.InitialWeights(shard->keys[k], dst);
      }
      ++k;
    }
    served += static_cast<int64_t>(k);
  }
  shard->pulls.fetch_add(1, std::memory_order_relaxed);
  shard->keys_pulled.fetch_add(served, std::memory_order_relaxed);
  FinishPart(item.request);
}

void Server::ApplyPush(Shard* shard, WorkItem& item) {
  Request& r = *item.request;
  const proto::Header& h = r.message.header;
  const uint64_t* keys = r.message.frames[0].as<uint64_t>();
  const float* grads = r.message.frames[1].as<float>();
  int64_t applied = 0;
  // Rows of the same keys' pull, if this worker's last pull asked for exactly these keys.
  float* const* cached_rows = nullptr;
  if (item.all) {
    const Shard::PullCache& cache = shard->last_pull[r.worker_rank];
    if (cache.Matches(h, r.message.frames[0])) cached_rows = cache.rows.data();
  }
  for (int ti = 0; ti < h.tables_size(); ++ti) {
    const uint32_t table_id = h.tables(ti).table_id();
    EmbeddingTable& table = *shard->tables[table_id];
    const int dim = table.dim();
    const uint64_t begin = r.key_offset[ti];
    const uint64_t n = h.tables(ti).num_keys();
    const float* table_grads = grads + r.value_offset[ti];
    int64_t count = static_cast<int64_t>(n);
    const uint64_t* table_keys = keys + begin;
    if (!item.all) {
      shard->keys.clear();
      shard->grads.clear();
      for (uint32_t p : item.positions) {
        if (p < begin || p >= begin + n) continue;
        shard->keys.push_back(keys[p]);
        const float* g = table_grads + (p - begin) * dim;
        shard->grads.insert(shard->grads.end(), g, g + dim);
      }
      count = static_cast<int64_t>(shard->keys.size());
      table_keys = shard->keys.data();
      table_grads = shard->grads.data();
    }
    float* const* rows;
    if (cached_rows != nullptr) {
      rows = cached_rows + begin;
    } else {
      shard->rows.resize(count);
      table.FindBatch(table_keys, count, /*create=*/true, shard->rows.data());
      rows = shard->rows.data();
    }
    Status s = UpdateRows(shard, table.options().optimizer, rows, table_grads, count, dim);
    if (!s.ok()) r.Fail(s);
    applied += count;
  }
  shard->pushes.fetch_add(1, std::memory_order_relaxed);
  shard->keys_pushed.fetch_add(applied, std::memory_order_relaxed);
  FinishPart(item.request);
}

namespace {

// Work below this many floats (rows x dim) stays on the shard thread. In-process MF on 2 cores
// (batches of 16384, ~15k user rows) gained from the split at dim 128 (2.25M vs 1.3M ratings/s)
// and lost at dim 32, where the hand-over costs about what the helper saves.
constexpr uint64_t kSplitMinFloats = uint64_t{1} << 20;

void CopyRowRange(const EmbeddingTable& table, const uint64_t* keys, float* const* rows,
                  uint64_t begin, uint64_t end, float* out) {
  const int dim = table.dim();
  constexpr uint64_t kAhead = 8;  // fetch the weights of a row a few copies ahead
  const int weight_lines = (dim * 4 + 63) / 64;
  for (uint64_t i = begin; i < end; ++i) {
    if (i + kAhead < end && rows[i + kAhead] != nullptr) {
      const char* ahead = reinterpret_cast<const char*>(rows[i + kAhead]);
      for (int l = 0; l < weight_lines; ++l) __builtin_prefetch(ahead + 64 * l);
    }
    if (rows[i] != nullptr) {
      std::memcpy(out + i * dim, rows[i], dim * sizeof(float));
    } else {
      table.InitialWeights(keys[i], out + i * dim);
    }
  }
}

}  // namespace

void Server::CopyRows(Shard* shard, const EmbeddingTable& table, const uint64_t* keys,
                      float* const* rows, uint64_t n, float* out) {
  if (shard->helper == nullptr || n * static_cast<uint64_t>(table.dim()) < kSplitMinFloats) {
    return CopyRowRange(table, keys, rows, 0, n, out);
  }
  const uint64_t half = n / 2;
  shard->helper->Run([&] { CopyRowRange(table, keys, rows, 0, half, out); },
                     [&] { CopyRowRange(table, keys, rows, half, n, out); });
}

Status Server::UpdateRows(Shard* shard, const kernels::OptimizerParams& p, float* const* rows,
                          const float* grads, int64_t count, int dim) {
  // The kernel splits a large update over the shard's helper thread (the same bits).
  return kernels::ApplySparseUpdate(shard->device->context(), p, rows, grads, count, dim);
}

void Server::FinishPart(const std::shared_ptr<Request>& request) {
  if (request->remaining.fetch_sub(1) != 1) return;
  Status error;
  {
    std::lock_guard lock(request->error_mu);
    error = request->error;
  }
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

std::pair<uint32_t, uint32_t> Server::OwnSlots() const {
  for (const auto& r : shard_map_.ranges()) {
    if (r.server_rank == rank_) return {r.begin, r.end};
  }
  return {0, 0};
}

void Server::StartCheckpoint(Message&& request) {
  proto::CheckpointRequest body;
  Status s = ParseControlBody(request, &body);
  StatusOr<NodeId> sender = NodeId::FromProto(request.header.sender());
  if (s.ok() && (!sender.ok() || sender->role != Role::kScheduler)) {
    s = Status::InvalidArgument("CHECKPOINT must come from the scheduler");
  }
  {
    std::lock_guard lock(mu_);
    if (s.ok() && !started_) s = Status::FailedPrecondition("CHECKPOINT before the server started");
  }
  if (!s.ok()) {
    ++rejected_;
    TS_LOG(WARNING) << "rejected CHECKPOINT: " << s.message();
    (void)rpc_->ReplyError(request, s);
    return;
  }
  auto job = std::make_shared<CheckpointJob>();
  job->request = std::move(request);
  job->step = body.step();
  job->dir = body.dir();
  job->remaining.store(static_cast<int>(shards_.size()));
  // Queued behind every request already here: the rows written are those of the step boundary
  // (no push of step >= `step` can arrive before the workers hear the checkpoint is done).
  for (auto& shard : shards_) {
    WorkItem item;
    item.checkpoint = job;
    shard->queue.Push(std::move(item));
  }
}

void Server::WriteShardRows(Shard* shard, CheckpointJob& job) {
  Status status;
  std::vector<proto::CheckpointFile> files;
  if (shard->applied_clock != job.step) {
    status = Status::FailedPrecondition(
        "server:" + std::to_string(rank_) + " was asked for a checkpoint of step " +
        std::to_string(job.step) + " but has applied the pushes of " +
        std::to_string(shard->applied_clock) + " steps");
  }
  const auto [slot_begin, slot_end] = OwnSlots();
  std::vector<char> record;
  for (size_t t = 0; status.ok() && t < shard->tables.size(); ++t) {
    if (options_.checkpoint_file_delay.count() > 0) {
      std::this_thread::sleep_for(options_.checkpoint_file_delay);
    }
    const EmbeddingTable& table = *shard->tables[t];
    const std::string name = "server-" + std::to_string(rank_) + "-shard-" +
                             std::to_string(shard->index) + "-table-" + std::to_string(t) + ".rows";
    auto writer = checkpoint::FileWriter::Create(job.dir + "/" + name);
    if (!writer.ok()) {
      status = writer.status();
      break;
    }
    checkpoint::RowFileHeader header;
    header.table_id = static_cast<uint32_t>(t);
    header.dim = static_cast<uint32_t>(table.dim());
    header.state_floats = static_cast<uint32_t>(table.state_floats());
    header.slot_begin = slot_begin;
    header.slot_end = slot_end;
    header.num_rows = static_cast<uint64_t>(table.size());
    status = (*writer)->Append(&header, sizeof(header));
    const size_t row_bytes = sizeof(float) * table.row_floats();
    record.resize(sizeof(uint64_t) + row_bytes);
    table.ForEach([&](uint64_t key, const float* row) {
      if (!status.ok()) return;
      std::memcpy(record.data(), &key, sizeof(key));
      std::memcpy(record.data() + sizeof(key), row, row_bytes);
      status = (*writer)->Append(record.data(), record.size());
    });
    if (!status.ok()) break;
    auto entry = (*writer)->Finish();
    if (!entry.ok()) {
      status = entry.status();
      break;
    }
    entry->set_kind(proto::CheckpointFile::KIND_ROWS);
    entry->set_table_id(header.table_id);
    entry->set_num_rows(header.num_rows);
    entry->set_slot_begin(slot_begin);
    entry->set_slot_end(slot_end);
    files.push_back(std::move(*entry));
  }
  {
    std::lock_guard lock(job.mu);
    for (auto& f : files) job.files.push_back(std::move(f));
    if (!status.ok() && job.error.ok()) job.error = status;
  }
  if (job.remaining.fetch_sub(1) != 1) return;
  if (!job.error.ok()) {
    TS_LOG(ERROR) << "checkpoint of step " << job.step << " failed: " << job.error.message();
    (void)rpc_->ReplyError(job.request, job.error);
    return;
  }
  proto::CheckpointRequest reply;
  reply.set_step(job.step);
  reply.set_dir(job.dir);
  std::sort(job.files.begin(), job.files.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  for (auto& f : job.files) *reply.add_files() = std::move(f);
  (void)rpc_->Reply(job.request, MakeControlMessage(proto::COMMAND_CHECKPOINT, reply));
}

Status Server::LoadCheckpoint() {
  const std::string& dir = options_.resume_dir;
  const proto::CheckpointManifest& manifest = options_.resume_manifest;
  const auto start = std::chrono::steady_clock::now();
  const auto [own_begin, own_end] = OwnSlots();
  std::vector<float> row;
  int64_t restored = 0, files_read = 0;
  uint64_t bytes = 0;
  for (const auto& entry : manifest.files()) {
    if (entry.kind() != proto::CheckpointFile::KIND_ROWS) continue;
    if (entry.slot_end() <= own_begin || entry.slot_begin() >= own_end) continue;
    const uint32_t t = entry.table_id();
    if (t >= options_.tables.size()) {
      return Status::InvalidArgument(entry.name() + " holds table " + std::to_string(t) +
                                     ", which this job does not have");
    }
    TS_ASSIGN_OR_RETURN(auto reader, checkpoint::FileReader::Open(dir, entry));
    checkpoint::RowFileHeader header;
    TS_RETURN_IF_ERROR(reader->Read(&header, sizeof(header)));
    TS_RETURN_IF_ERROR(checkpoint::CheckRowFileHeader(header, entry, reader->path()));
    const EmbeddingTable& shape = *shards_[0]->tables[t];
    if (static_cast<int>(header.dim) != shape.dim() ||
        static_cast<int>(header.state_floats) != shape.state_floats()) {
      return Status::InvalidArgument(
          "table " + std::to_string(t) + " in the checkpoint has rows of " +
          std::to_string(header.dim) + " weights + " + std::to_string(header.state_floats) +
          " optimizer floats, this job's have " + std::to_string(shape.dim()) + " + " +
          std::to_string(shape.state_floats()) + " (a different --dim, --emb-dim or optimizer)");
    }
    row.resize(shape.row_floats());
    for (uint64_t i = 0; i < header.num_rows; ++i) {
      uint64_t key;
      TS_RETURN_IF_ERROR(reader->Read(&key, sizeof(key)));
      TS_RETURN_IF_ERROR(reader->Read(row.data(), sizeof(float) * row.size()));
      const uint32_t slot = SlotOf(t, key);
      if (shard_map_.ServerOfSlot(slot) != rank_) continue;
      shards_[slot % shards_.size()]->tables[t]->Restore(key, row.data());
      ++restored;
    }
    TS_RETURN_IF_ERROR(reader->Finish());
    ++files_read;
    bytes += entry.size_bytes();
  }
  for (auto& shard : shards_) {
    shard->applied_clock = manifest.step();
    shard->steps_applied.store(manifest.step());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  TS_LOG(INFO) << "restored " << restored << " rows of step " << manifest.step() << " from "
               << files_read << " file(s) of " << dir << " (" << bytes / 1e6 << " MB in " << seconds
               << " s)";
  return OkStatus();
}

void Server::Abort(const Status& reason) {
  {
    std::lock_guard lock(mu_);
    if (abort_status_.ok()) abort_status_ = reason;
    stopped_cv_.notify_all();
  }
  if (options_.on_abort) options_.on_abort(reason);
}

Status Server::WaitForShutdown(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!stopped_cv_.wait_for(lock, timeout,
                            [&] { return shutdown_requested_ || !abort_status_.ok(); })) {
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
        [s = server.get(), rank, dir = options.checkpoint_dir](const Status& lost) {
          const std::string latest = dir.empty() ? "" : checkpoint::FindLatest(dir);
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
