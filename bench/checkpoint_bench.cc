// Checkpoint write and restore throughput of real Server objects (threads of this process, the
// in-process transport): `servers` servers hold `rows` rows of one Adagrad table between them,
// created through pulls as in training; then the scheduler's part of a checkpoint (every server
// writes its rows on its shard threads, in parallel, with CRC-32 and fsync) is timed, and so is
// a fresh set of servers loading it (read, checksum, insert).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>

#include "bench/benches.h"
#include "core/checkpoint.h"
#include "core/inproc_transport.h"
#include "core/logging.h"
#include "kernels/random_math.h"
#include "server/server.h"

namespace tessera::bench {
namespace {

constexpr std::chrono::milliseconds kWait(600000);

class BenchCluster {
 public:
  BenchCluster(const CheckpointBenchOptions& o, const std::string& resume_dir,
               const proto::CheckpointManifest& manifest)
      : map_(ShardMap::Even(o.servers, 1)) {
    scheduler_transport_ = std::make_unique<InProcTransport>(&hub_, NodeId::Scheduler());
    scheduler_ = std::make_unique<RpcNode>(scheduler_transport_.get());
    TS_CHECK_OK(scheduler_->Start(nullptr));
    worker_transport_ = std::make_unique<InProcTransport>(&hub_, NodeId::Worker(0));
    worker_ = std::make_unique<RpcNode>(worker_transport_.get());
    TS_CHECK_OK(worker_->Start(nullptr));
    server::ServerOptions options;
    server::TableOptions table;
    table.dim = o.dim;
    table.optimizer.kind = kernels::OptimizerKind::kAdagrad;
    table.initial_capacity = o.rows / o.servers + 1024;
    options.tables = {table};
    options.num_shard_threads = o.server_threads;
    options.resume_dir = resume_dir;
    options.resume_manifest = manifest;
    for (int r = 0; r < o.servers; ++r) {
      transports_.push_back(std::make_unique<InProcTransport>(&hub_, NodeId::Server(r)));
      rpcs_.push_back(std::make_unique<RpcNode>(transports_.back().get()));
      auto s = server::Server::Create(options, r, rpcs_.back().get());
      TS_CHECK(s.ok()) << s.status().ToString();
      servers_.push_back(std::move(*s));
      server::Server* raw = servers_.back().get();
      TS_CHECK_OK(rpcs_.back()->Start([raw](Message&& m) { raw->HandleRequest(std::move(m)); }));
    }
  }
  ~BenchCluster() {
    worker_->Stop();
    scheduler_->Stop();
    for (auto& rpc : rpcs_) rpc->Stop();
    for (auto& s : servers_) s->Stop();
  }

  // Starts every server at once (a restore loads the checkpoint here).
  Status StartAll() {
    std::vector<std::future<Status>> started;
    for (auto& s : servers_) {
      started.push_back(std::async(std::launch::async, [&] { return s->Start(map_, 1); }));
    }
    Status result;
    for (auto& f : started) {
      Status s = f.get();
      if (result.ok()) result = s;
    }
    return result;
  }

  // Creates rows for keys SplitMix64(1..rows) with pulls of 8192 keys (as training would).
  void Populate(int64_t rows) {
    constexpr int64_t kBatch = 8192;
    uint64_t key = 0;
    for (int64_t done = 0; done < rows;) {
      std::vector<std::vector<uint64_t>> per_server(map_.num_servers());
      for (int64_t i = 0; i < kBatch && done < rows; ++i, ++done) {
        key = kernels::SplitMix64(key + 1);
        per_server[map_.ServerOf(0, key)].push_back(key);
      }
      std::vector<std::future<StatusOr<Message>>> replies;
      for (int r = 0; r < map_.num_servers(); ++r) {
        Message m;
        m.header.set_command(proto::COMMAND_PULL);
        m.header.set_dtype(proto::DTYPE_FLOAT32);
        auto* t = m.header.add_tables();
        t->set_table_id(0);
        t->set_num_keys(per_server[r].size());
        m.frames.push_back(Frame::FromVector(std::move(per_server[r])));
        replies.push_back(worker_->Call(NodeId::Server(r), std::move(m)));
      }
      for (auto& f : replies) TS_CHECK_OK(RpcNode::Wait(f, kWait, "pull").status());
    }
  }

  // The scheduler's part: every server writes its rows (in parallel), then the manifest and the
  // commit. Returns the bytes written.
  uint64_t Checkpoint(const std::string& root, int64_t step, proto::CheckpointManifest* out) {
    const std::string tmp = root + "/" + checkpoint::TmpDirName(step);
    TS_CHECK_OK(checkpoint::MakeDirs(Env::Default(), tmp));
    proto::CheckpointManifest manifest;
    manifest.set_format_version(checkpoint::kFormatVersion);
    manifest.set_step(step);
    *manifest.mutable_shard_map() = map_.ToProto();
    proto::CheckpointRequest ask;
    ask.set_step(step);
    ask.set_dir(tmp);
    std::vector<std::future<StatusOr<Message>>> replies;
    for (int r = 0; r < map_.num_servers(); ++r) {
      replies.push_back(
          scheduler_->Call(NodeId::Server(r), MakeControlMessage(proto::COMMAND_CHECKPOINT, ask)));
    }
    uint64_t bytes = 0;
    for (auto& f : replies) {
      auto reply = RpcNode::Wait(f, kWait, "checkpoint");
      TS_CHECK(reply.ok()) << reply.status().ToString();
      proto::CheckpointRequest files;
      TS_CHECK_OK(ParseControlBody(*reply, &files));
      for (const auto& file : files.files()) {
        bytes += file.size_bytes();
        *manifest.add_files() = file;
      }
    }
    TS_CHECK_OK(checkpoint::WriteManifest(Env::Default(), tmp, manifest));
    TS_CHECK_OK(checkpoint::Commit(Env::Default(), root, step));
    *out = manifest;
    return bytes;
  }

  int64_t Rows() const {
    int64_t n = 0;
    for (const auto& s : servers_) n += s->stats().rows;
    return n;
  }

 private:
  InProcHub hub_;
  ShardMap map_;
  std::unique_ptr<Transport> scheduler_transport_, worker_transport_;
  std::unique_ptr<RpcNode> scheduler_, worker_;
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::unique_ptr<RpcNode>> rpcs_;
  std::vector<std::unique_ptr<server::Server>> servers_;
};

// The baseline of the write figure: the same bytes as plain sequential writes of 4 MiB blocks and
// an fsync, from one thread per server in parallel (what the disk allows, without tables,
// checksums or formats).
double RawWriteSeconds(const std::string& dir, uint64_t bytes, int writers) {
  std::vector<char> block(4 << 20, 1);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      const std::string path = dir + "/raw-" + std::to_string(w);
      std::FILE* f = std::fopen(path.c_str(), "wb");
      TS_CHECK(f != nullptr) << path;
      for (uint64_t left = bytes / writers; left > 0;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left, block.size()));
        TS_CHECK_EQ(std::fwrite(block.data(), 1, n, f), n);
        left -= n;
      }
      TS_CHECK_EQ(std::fflush(f), 0);
      TS_CHECK_EQ(fsync(fileno(f)), 0);
      std::fclose(f);
      std::remove(path.c_str());
    });
  }
  for (auto& t : threads) t.join();
  return SecondsSince(start);
}

// Drops the page cache, so a restore reads from the disk; false where that is not allowed.
bool DropPageCache() {
  sync();
  std::FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("3\n", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

bool RunCheckpointBench(const CheckpointBenchOptions& o, JsonLines* json) {
  const std::string root = o.dir + "/tessera-checkpoint-bench-" + std::to_string(getpid());
  std::printf(
      "\n== checkpoint write / restore: %lld rows, dim %d + Adagrad, %d servers x %d "
      "shard thread(s), in %s\n",
      static_cast<long long>(o.rows), o.dim, o.servers, o.server_threads, root.c_str());
  std::printf("%-26s %10s %10s %10s %12s\n", "phase", "seconds", "GB", "GB/s", "rows/s");
  auto line = [&](const char* phase, double seconds, uint64_t bytes) {
    std::printf("%-26s %10.2f %10.2f %10.3f %12s\n", phase, seconds, bytes / 1e9,
                bytes / 1e9 / seconds, Human(o.rows / seconds).c_str());
  };
  proto::CheckpointManifest manifest;
  uint64_t bytes = 0;
  {
    BenchCluster cluster(o, "", {});
    TS_CHECK_OK(cluster.StartAll());
    const auto populate = Clock::now();
    cluster.Populate(o.rows);
    std::printf("%-26s %10.2f   (%lld rows created through pulls)\n", "create rows",
                SecondsSince(populate), static_cast<long long>(cluster.Rows()));
    const auto write = Clock::now();
    bytes = cluster.Checkpoint(root, 0, &manifest);
    const double seconds = SecondsSince(write);
    line("write (CRC-32 + fsync)", seconds, bytes);
    const double raw = RawWriteSeconds(root, bytes, o.servers);
    line("raw write, same bytes", raw, bytes);
    std::printf("%-26s %10.2f x\n", "checkpoint / raw write", raw / seconds);
    json->Write("checkpoint_write", {{"rows", static_cast<double>(o.rows)},
                                     {"dim", o.dim},
                                     {"servers", o.servers},
                                     {"bytes", static_cast<double>(bytes)},
                                     {"seconds", seconds},
                                     {"gb_per_s", bytes / 1e9 / seconds},
                                     {"raw_gb_per_s", bytes / 1e9 / raw}});
  }
  const std::string dir = root + "/" + checkpoint::StepDirName(0);
  for (const bool cold : {false, true}) {
    if (cold && !DropPageCache()) {
      std::printf("(cannot drop the page cache here: no cold-cache restore figure)\n");
      break;
    }
    BenchCluster restored(o, dir, manifest);
    const auto start = Clock::now();
    Status s = restored.StartAll();
    const double seconds = SecondsSince(start);
    if (!s.ok()) {
      std::fprintf(stderr, "restore: %s\n", s.ToString().c_str());
      return false;
    }
    if (restored.Rows() != o.rows) {
      std::fprintf(stderr, "restore: %lld rows, expected %lld\n",
                   static_cast<long long>(restored.Rows()), static_cast<long long>(o.rows));
      return false;
    }
    line(cold ? "restore (cold page cache)" : "restore (files in cache)", seconds, bytes);
    json->Write(cold ? "checkpoint_restore_cold" : "checkpoint_restore",
                {{"rows", static_cast<double>(o.rows)},
                 {"bytes", static_cast<double>(bytes)},
                 {"seconds", seconds},
                 {"gb_per_s", bytes / 1e9 / seconds}});
  }
  std::error_code ignored;
  std::filesystem::remove_all(root, ignored);
  return true;
}

}  // namespace tessera::bench
