// Checkpoints on the server side: COMMAND_CHECKPOINT (every shard thread writes the rows of its
// slots as row files, core/row_file.h) and loading the rows this server owns on resume.
#include <algorithm>

#include "core/logging.h"
#include "core/row_file.h"
#include "kernels/finite.h"
#include "server/server.h"

namespace tessera::server {

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
    MutexLock lock(&mu_);
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
    shard->Enqueue(std::move(item));
  }
}

void Server::WriteShardRows(Shard* shard, CheckpointJob& job) {
  Status status;
  std::vector<proto::CheckpointFile> files;
  if (shard->applied_clock() != job.step) {
    status = Status::FailedPrecondition(
        "server:" + std::to_string(rank_) + " was asked for a checkpoint of step " +
        std::to_string(job.step) + " but has applied the pushes of " +
        std::to_string(shard->applied_clock()) + " steps");
  }
  const auto [slot_begin, slot_end] = OwnSlots();
  for (uint32_t t = 0; status.ok() && t < shard->num_tables(); ++t) {
    const EmbeddingTable& table = shard->table(t);
    checkpoint::RowFileHeader header;
    header.table_id = t;
    header.dim = static_cast<uint32_t>(table.dim());
    header.state_floats = static_cast<uint32_t>(table.state_floats());
    header.slot_begin = slot_begin;
    header.slot_end = slot_end;
    header.num_rows = static_cast<uint64_t>(table.size());
    const std::string name = checkpoint::RowFileName(rank_, shard->index(), t);
    auto writer = checkpoint::RowFileWriter::Create(options_.env, job.dir + "/" + name, header);
    if (!writer.ok()) {
      status = writer.status();
      break;
    }
    // Never a non-finite row in a checkpoint, whatever let it through (the pushes' check fails
    // the step before a checkpoint is asked for; this one costs a scan next to the write).
    const int width = table.row_floats();
    table.ForEach([&](uint64_t key, const float* row) {
      if (status.ok() && kernels::FindNonFinite(row, width) < width) {
        status = Status::NonFinite(
            "non-finite model: table " + std::to_string(t) + ", key " + std::to_string(key) +
            " is not finite on server:" + std::to_string(rank_) + "; checkpoint of step " +
            std::to_string(job.step) + " not written");
      }
      if (status.ok()) status = (*writer)->Append(key, row);
    });
    if (!status.ok()) break;
    auto entry = (*writer)->Finish();
    if (!entry.ok()) {
      status = entry.status();
      break;
    }
    files.push_back(std::move(*entry));
  }
  Status error;
  {
    MutexLock lock(&job.mu);
    for (auto& f : files) job.files.push_back(std::move(f));
    if (!status.ok() && job.error.ok()) job.error = status;
  }
  if (job.remaining.fetch_sub(1) != 1) return;
  std::vector<proto::CheckpointFile> all_files;
  {
    // The last shard thread: every other one has finished with the job.
    MutexLock lock(&job.mu);
    error = job.error;
    all_files = std::move(job.files);
  }
  if (!error.ok()) {
    TS_LOG(ERROR) << "checkpoint of step " << job.step << " failed: " << error.message();
    (void)rpc_->ReplyError(job.request, error);
    return;
  }
  proto::CheckpointRequest reply;
  reply.set_step(job.step);
  reply.set_dir(job.dir);
  std::sort(all_files.begin(), all_files.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  for (auto& f : all_files) *reply.add_files() = std::move(f);
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
    TS_ASSIGN_OR_RETURN(auto reader, checkpoint::RowFileReader::Open(options_.env, dir, entry));
    const checkpoint::RowFileHeader& header = reader->header();
    const EmbeddingTable& shape = shards_[0]->table(t);
    if (static_cast<int>(header.dim) != shape.dim() ||
        static_cast<int>(header.state_floats) != shape.state_floats()) {
      return Status::InvalidArgument(
          "table " + std::to_string(t) + " in the checkpoint has rows of " +
          std::to_string(header.dim) + " weights + " + std::to_string(header.state_floats) +
          " optimizer floats, this job's have " + std::to_string(shape.dim()) + " + " +
          std::to_string(shape.state_floats()) + " (a different --dim, --emb-dim or optimizer)");
    }
    row.resize(shape.row_floats());
    // A non-finite row is reported once the file's checksum has passed (a corrupt file is
    // DataLoss, a file of a diverged model NonFinite).
    Status finite;
    for (uint64_t i = 0; i < header.num_rows; ++i) {
      uint64_t key;
      TS_RETURN_IF_ERROR(reader->Next(&key, row.data()));
      if (finite.ok() &&
          kernels::FindNonFinite(row.data(), shape.row_floats()) < shape.row_floats()) {
        finite = Status::NonFinite("non-finite model: " + reader->path() + ": table " +
                                   std::to_string(t) + ", key " + std::to_string(key) +
                                   " is not finite; resume from an earlier checkpoint");
      }
      const uint32_t slot = SlotOf(t, key);
      if (shard_map_.ServerOfSlot(slot) != rank_) continue;
      shards_[slot % shards_.size()]->table(t).Restore(key, row.data());
      ++restored;
    }
    TS_RETURN_IF_ERROR(reader->Finish());
    TS_RETURN_IF_ERROR(finite);
    ++files_read;
    bytes += entry.size_bytes();
  }
  for (auto& shard : shards_) shard->RestoreClock(manifest.step());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  TS_LOG(INFO) << "restored " << restored << " rows of step " << manifest.step() << " from "
               << files_read << " file(s) of " << dir << " (" << bytes / 1e6 << " MB in " << seconds
               << " s)";
  return OkStatus();
}

}  // namespace tessera::server
