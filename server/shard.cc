#include "server/shard.h"

#include <algorithm>
#include <cstring>

#include "core/logging.h"
#include "core/shard_map.h"
#include "kernels/cpu_simd.h"
#include "kernels/device_resources.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::server {

StatusOr<std::unique_ptr<Shard>> Shard::Create(int index, const std::vector<TableOptions>& tables,
                                               bool helper) {
  std::unique_ptr<Shard> shard(new Shard(index));
  kernels::DeviceOptions device;
  device.cpu_threads = helper ? 2 : 1;
  TS_ASSIGN_OR_RETURN(shard->device_, kernels::DeviceResources::Create(device));
  for (const TableOptions& t : tables) {
    TS_ASSIGN_OR_RETURN(auto table, EmbeddingTable::Create(t));
    shard->tables_.push_back(std::move(table));
  }
  return shard;
}

Shard::~Shard() {
  Close();
  Join();
}

void Shard::Start(const ShardContext& context, const std::string& log_tag) {
  context_ = context;
  last_pull_.resize(context.num_workers);
  thread_ = std::thread([this, log_tag] {
    logging::SetThreadLogTag(log_tag);
    Loop();
  });
}

void Shard::Join() {
  if (thread_.joinable()) thread_.join();
}

void Shard::RestoreClock(int64_t step) {
  applied_clock_ = step;
  steps_applied.store(step);
}

bool Shard::PullCache::Matches(const proto::Header& h, const Frame& other) const {
  if (keys.size() != other.size() || tables.size() != static_cast<size_t>(h.tables_size())) {
    return false;
  }
  for (size_t t = 0; t < tables.size(); ++t) {
    if (tables[t].first != h.tables(t).table_id() || tables[t].second != h.tables(t).num_keys()) {
      return false;
    }
  }
  return keys.data() == other.data() || std::memcmp(keys.data(), other.data(), keys.size()) == 0;
}

void Shard::Loop() {
  while (auto item = queue_.Pop()) Process(*item);
  // Closed: answer whatever is still parked so no worker waits for a stopped server.
  for (WorkItem& pull : parked_pulls_) {
    pull.request->Fail(
        Status::Unavailable("server:" + std::to_string(context_.server_rank) + " stopped"));
    context_.finish_part(pull.request);
  }
  parked_pulls_.clear();
}

void Shard::Process(WorkItem& item) {
  if (item.checkpoint) return context_.write_checkpoint(this, *item.checkpoint);
  const proto::Header& h = item.request->message.header;
  const int64_t clock = h.clock();
  if (h.command() == proto::COMMAND_PULL) {
    if (MayServe(h)) {
      ServePull(item);
    } else {
      parked_pulls_.push_back(std::move(item));
    }
    return;
  }
  if (clock < applied_clock_) {
    item.request->Fail(Status::FailedPrecondition("push for step " + std::to_string(clock) +
                                                  " arrived after that step was closed"));
    context_.finish_part(item.request);
    return;
  }
  if (context_.deterministic) {
    auto& slots = held_[clock];
    if (slots.empty()) slots.resize(context_.num_workers);
    auto& slot = slots[item.request->worker_rank];
    if (slot.has_value()) {
      item.request->Fail(Status::InvalidArgument("second push for step " + std::to_string(clock)));
      context_.finish_part(item.request);
      return;
    }
    slot = std::move(item);
    // Apply whole steps, each in worker-rank order, as soon as all their pushes are here.
    while (true) {
      auto it = held_.find(applied_clock_);
      if (it == held_.end()) break;
      bool complete = std::all_of(it->second.begin(), it->second.end(),
                                  [](const auto& w) { return w.has_value(); });
      if (!complete) break;
      for (auto& w : it->second) ApplyPush(*w);
      held_.erase(it);
      ++applied_clock_;
      steps_applied.store(applied_clock_, std::memory_order_relaxed);
    }
  } else {
    ApplyPush(item);
    ++pushes_applied_[clock];
    while (true) {
      auto it = pushes_applied_.find(applied_clock_);
      if (it == pushes_applied_.end() || it->second < context_.num_workers) break;
      pushes_applied_.erase(it);
      ++applied_clock_;
      steps_applied.store(applied_clock_, std::memory_order_relaxed);
    }
  }
  // Serve the pulls this push released, in arrival order.
  std::deque<WorkItem> still_parked;
  for (WorkItem& pull : parked_pulls_) {
    if (MayServe(pull.request->message.header)) {
      ServePull(pull);
    } else {
      still_parked.push_back(std::move(pull));
    }
  }
  parked_pulls_.swap(still_parked);
}

bool Shard::MayServe(const proto::Header& h) const {
  if (h.clock() <= applied_clock_) return true;
  // Ahead: every push of the steps before h.clock() - 1 is applied, and the one worker vouches
  // that the push of step h.clock() - 1 changes none of these rows.
  return (h.flags() & proto::FLAG_AHEAD) != 0 && context_.num_workers == 1 &&
         h.clock() == applied_clock_ + 1;
}

void Shard::ServePull(WorkItem& item) {
  Request& r = *item.request;
  if (!failure_.ok()) {  // a non-finite row: no worker gets rows any more
    r.Fail(failure_);
    return context_.finish_part(item.request);
  }
  const proto::Header& h = r.message.header;
  const bool create = (h.flags() & proto::FLAG_NO_CREATE) == 0;
  const uint64_t* keys = r.message.frames[0].as<uint64_t>();
  int64_t served = 0;
  PullCache* cache = nullptr;
  if (item.all && create) {
    cache = &last_pull_[r.worker_rank][h.clock() % 2];
    cache->clock = h.clock();
    cache->keys = r.message.frames[0];
    cache->tables.clear();
    for (const auto& t : h.tables()) cache->tables.emplace_back(t.table_id(), t.num_keys());
    cache->rows.resize(TotalKeys(h));
  }
  for (int ti = 0; ti < h.tables_size(); ++ti) {
    const uint32_t table_id = h.tables(ti).table_id();
    EmbeddingTable& table = *tables_[table_id];
    const int dim = table.dim();
    const uint64_t begin = r.key_offset[ti];
    const uint64_t n = h.tables(ti).num_keys();
    float* out = r.reply_values + r.value_offset[ti];
    if (item.all) {
      float** rows = rows_.data();
      if (cache != nullptr) {
        rows = cache->rows.data() + begin;
      } else {
        rows_.resize(n);
        rows = rows_.data();
      }
      table.FindBatch(keys + begin, static_cast<int64_t>(n), create, rows);
      CopyRows(table, keys + begin, rows, n, out);
      served += static_cast<int64_t>(n);
      continue;
    }
    keys_.clear();
    for (uint32_t p : item.positions) {
      if (p >= begin && p < begin + n) keys_.push_back(keys[p]);
    }
    rows_.resize(keys_.size());
    table.FindBatch(keys_.data(), static_cast<int64_t>(keys_.size()), create, rows_.data());
    size_t k = 0;
    for (uint32_t p : item.positions) {
      if (p < begin || p >= begin + n) continue;
      float* dst = out + (p - begin) * dim;
      if (rows_[k] != nullptr) {
        std::memcpy(dst, rows_[k], dim * sizeof(float));
      } else {
        table.InitialWeights(keys_[k], dst);
      }
      ++k;
    }
    served += static_cast<int64_t>(k);
  }
  pulls.fetch_add(1, std::memory_order_relaxed);
  keys_pulled.fetch_add(served, std::memory_order_relaxed);
  context_.finish_part(item.request);
}

void Shard::ApplyPush(WorkItem& item) {
  Request& r = *item.request;
  if (!failure_.ok()) {  // a non-finite row: nothing is applied any more
    r.Fail(failure_);
    return context_.finish_part(item.request);
  }
  const proto::Header& h = r.message.header;
  const uint64_t* keys = r.message.frames[0].as<uint64_t>();
  const float* grads = r.message.frames[1].as<float>();
  int64_t applied = 0;
  // Rows of this worker's pull of the same step, if it asked for exactly these keys.
  float* const* cached_rows = nullptr;
  if (item.all) {
    const PullCache& cache = last_pull_[r.worker_rank][h.clock() % 2];
    if (cache.clock == h.clock() && cache.Matches(h, r.message.frames[0])) {
      cached_rows = cache.rows.data();
    }
  }
  for (int ti = 0; ti < h.tables_size(); ++ti) {
    const uint32_t table_id = h.tables(ti).table_id();
    EmbeddingTable& table = *tables_[table_id];
    const int dim = table.dim();
    const uint64_t begin = r.key_offset[ti];
    const uint64_t n = h.tables(ti).num_keys();
    const float* table_grads = grads + r.value_offset[ti];
    int64_t count = static_cast<int64_t>(n);
    const uint64_t* table_keys = keys + begin;
    if (!item.all) {
      keys_.clear();
      grads_.clear();
      for (uint32_t p : item.positions) {
        if (p < begin || p >= begin + n) continue;
        keys_.push_back(keys[p]);
        const float* g = table_grads + (p - begin) * dim;
        grads_.insert(grads_.end(), g, g + dim);
      }
      count = static_cast<int64_t>(keys_.size());
      table_keys = keys_.data();
      table_grads = grads_.data();
    }
    float* const* rows;
    if (cached_rows != nullptr) {
      rows = cached_rows + begin;
    } else {
      rows_.resize(count);
      table.FindBatch(table_keys, count, /*create=*/true, rows_.data());
      rows = rows_.data();
    }
    // Every row is checked right after its update, while it is in cache: a non-finite one stops
    // the job before any checkpoint of this step (the worker waits for this reply first).
    int64_t bad = count;
    Status s = kernels::ApplySparseUpdate(device_->context(), table.options().optimizer, rows,
                                          table_grads, count, dim, &bad);
    if (!s.ok()) r.Fail(s);
    applied += count;
    if (s.ok() && bad < count && failure_.ok()) {
      failure_ = Status::NonFinite(
          "non-finite model at step " + std::to_string(h.clock() + 1) + ": table " +
          std::to_string(table_id) + ", key " + std::to_string(table_keys[bad]) +
          ": the row is not finite after server:" + std::to_string(context_.server_rank) +
          " applied the push of worker:" + std::to_string(r.worker_rank));
      TS_LOG(ERROR) << failure_.message();
    }
    if (!failure_.ok()) r.Fail(failure_);
  }
  pushes.fetch_add(1, std::memory_order_relaxed);
  keys_pushed.fetch_add(applied, std::memory_order_relaxed);
  context_.finish_part(item.request);
}

namespace {

// A pull's copies below this many floats (rows x dim) stay on the shard thread. In-process MF on
// 2 cores (batches of 16384, ~15k user rows) gained from the split at dim 128 (2.25M vs 1.3M
// ratings/s) and lost at dim 32, where the hand-over costs about what the helper saves. A push's
// update is split by the kernel (ApplySparseUpdate over the shard's context) at the same size.
constexpr uint64_t kSplitMinFloats = uint64_t{1} << 20;

// One row's weights, in 64-byte pieces of a fixed size that the compiler copies inline (one
// AVX-512 move each in CopyRowRange's widest clone), then float by float: a call to memcpy for
// each row of MF's 33 floats cost more than the copy.
inline void CopyRow(const float* row, int dim, float* out) {
  constexpr int kPiece = 16;
  int j = 0;
  for (; j + kPiece <= dim; j += kPiece) std::memcpy(out + j, row + j, kPiece * sizeof(float));
  for (; j < dim; ++j) out[j] = row[j];
}

[[TS_WIDE_SIMD]] void CopyRowRange(const EmbeddingTable& table, const uint64_t* keys,
                                   float* const* rows, uint64_t begin, uint64_t end, float* out) {
  const int dim = table.dim();
  constexpr uint64_t kAhead = 8;  // fetch the weights of a row a few copies ahead
  const int weight_lines = (dim * 4 + 63) / 64;
  for (uint64_t i = begin; i < end; ++i) {
    if (i + kAhead < end && rows[i + kAhead] != nullptr) {
      const char* ahead = reinterpret_cast<const char*>(rows[i + kAhead]);
      for (int l = 0; l < weight_lines; ++l) __builtin_prefetch(ahead + 64 * l);
    }
    if (rows[i] != nullptr) {
      CopyRow(rows[i], dim, out + i * dim);
    } else {
      table.InitialWeights(keys[i], out + i * dim);
    }
  }
}

}  // namespace

void Shard::CopyRows(const EmbeddingTable& table, const uint64_t* keys, float* const* rows,
                     uint64_t n, float* out) {
  TwoWayFork* helper = device_->helper();
  if (helper == nullptr || n * static_cast<uint64_t>(table.dim()) < kSplitMinFloats) {
    return CopyRowRange(table, keys, rows, 0, n, out);
  }
  const uint64_t half = n / 2;
  helper->Run([&] { CopyRowRange(table, keys, rows, 0, half, out); },
              [&] { CopyRowRange(table, keys, rows, half, n, out); });
}

}  // namespace tessera::server
