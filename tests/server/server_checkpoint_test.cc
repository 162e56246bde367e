// Checkpoints of the server role: rows written per slot range on the shard threads, and loaded
// again by a job with a different number of servers (2 -> 3 -> 2), bit for bit; a failed write,
// a full disk, a crash before the commit's rename and a corrupt file (through FaultEnv) each
// leave the previous checkpoint to resume from.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "core/checkpoint.h"
#include "core/inproc_transport.h"
#include "core/logging.h"
#include "core/row_file.h"
#include "server/server.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/test_util.h"

namespace tessera::server {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kWait(10000);
constexpr int kDim = 4;

std::vector<TableOptions> Tables(kernels::OptimizerKind kind) {
  std::vector<TableOptions> tables;
  for (uint32_t t = 0; t < 2; ++t) {
    TableOptions table;
    table.table_id = t;
    table.dim = kDim;
    table.seed = 5;
    table.optimizer.kind = kind;
    table.optimizer.lr = 0.1f;
    tables.push_back(table);
  }
  return tables;
}

// `num_servers` servers (each with `shard_threads` shard threads), one worker and a node playing
// the scheduler, over the in-process transport.
class Cluster {
 public:
  Cluster(int num_servers, int shard_threads, kernels::OptimizerKind kind,
          const std::string& resume_dir = "", const proto::CheckpointManifest& manifest = {},
          Env* env = Env::Default())
      : map_(ShardMap::Even(num_servers, 1)), env_(env) {
    scheduler_transport_ = std::make_unique<InProcTransport>(&hub_, NodeId::Scheduler());
    scheduler_ = std::make_unique<RpcNode>(scheduler_transport_.get());
    TS_CHECK_OK(scheduler_->Start(nullptr));
    worker_transport_ = std::make_unique<InProcTransport>(&hub_, NodeId::Worker(0));
    worker_ = std::make_unique<RpcNode>(worker_transport_.get());
    TS_CHECK_OK(worker_->Start(nullptr));
    ServerOptions options;
    options.tables = Tables(kind);
    options.num_shard_threads = shard_threads;
    options.resume_dir = resume_dir;
    options.resume_manifest = manifest;
    options.env = env;
    for (int r = 0; r < num_servers; ++r) {
      transports_.push_back(std::make_unique<InProcTransport>(&hub_, NodeId::Server(r)));
      rpcs_.push_back(std::make_unique<RpcNode>(transports_.back().get()));
      auto server = Server::Create(options, r, rpcs_.back().get());
      TS_CHECK(server.ok()) << server.status().ToString();
      servers_.push_back(std::move(*server));
      Server* s = servers_.back().get();
      TS_CHECK_OK(rpcs_.back()->Start([s](Message&& m) { s->HandleRequest(std::move(m)); }));
      start_status_ = servers_.back()->Start(map_, 1);
      if (!start_status_.ok()) return;
    }
  }
  ~Cluster() {
    worker_->Stop();
    scheduler_->Stop();
    for (auto& rpc : rpcs_) rpc->Stop();
    for (auto& s : servers_) s->Stop();
  }

  // Step `clock`: pushes a gradient for every key of both tables (derived from key and clock)
  // to its server; every server gets a push (maybe empty), as BSP requires.
  void Step(int64_t clock, const std::vector<uint64_t>& keys) {
    std::vector<std::future<StatusOr<Message>>> acks;
    for (int r = 0; r < map_.num_servers(); ++r) {
      Message m;
      m.header.set_command(proto::COMMAND_PUSH);
      m.header.set_clock(clock);
      m.header.set_dtype(proto::DTYPE_FLOAT32);
      std::vector<uint64_t> mine;
      std::vector<float> grads;
      for (uint32_t t = 0; t < 2; ++t) {
        uint64_t count = 0;
        for (uint64_t k : keys) {
          if (map_.ServerOf(t, k) != r) continue;
          mine.push_back(k);
          for (int j = 0; j < kDim; ++j) {
            grads.push_back(0.01f * static_cast<float>((k * 7 + j * 3 + clock + t) % 11) - 0.05f);
          }
          ++count;
        }
        auto* table = m.header.add_tables();
        table->set_table_id(t);
        table->set_num_keys(count);
      }
      m.frames.push_back(Frame::FromVector(std::move(mine)));
      m.frames.push_back(Frame::FromVector(std::move(grads)));
      acks.push_back(worker_->Call(NodeId::Server(r), std::move(m)));
    }
    for (auto& a : acks) TS_CHECK_OK(RpcNode::Wait(a, kWait, "push").status());
  }

  // Step `clock` on server 0 alone: a NaN gradient for `key` of table 0 (what a forged push
  // could carry); the push's reply is NonFinite.
  void PushNaN(int64_t clock, uint64_t key) {
    Message m;
    m.header.set_command(proto::COMMAND_PUSH);
    m.header.set_clock(clock);
    m.header.set_dtype(proto::DTYPE_FLOAT32);
    auto* table = m.header.add_tables();
    table->set_table_id(0);
    table->set_num_keys(1);
    m.frames.push_back(Frame::FromVector(std::vector<uint64_t>{key}));
    std::vector<float> grads(kDim, 0.0f);
    grads[1] = NAN;
    m.frames.push_back(Frame::FromVector(std::move(grads)));
    auto ack = worker_->Call(NodeId::Server(0), std::move(m));
    TS_CHECK(RpcNode::Wait(ack, kWait, "push").status().code() == StatusCode::kNonFinite);
  }

  // What the scheduler does: asks every server for its rows of `step`, writes the manifest and
  // commits the checkpoint under `root`. Returns its directory.
  std::string Checkpoint(const std::string& root, int64_t step) {
    auto dir = TryCheckpoint(root, step);
    TS_CHECK(dir.ok()) << dir.status().ToString();
    return *dir;
  }
  StatusOr<std::string> TryCheckpoint(const std::string& root, int64_t step) {
    const std::string tmp = root + "/" + checkpoint::TmpDirName(step);
    TS_RETURN_IF_ERROR(checkpoint::MakeDirs(env_, tmp));
    proto::CheckpointManifest manifest;
    manifest.set_format_version(checkpoint::kFormatVersion);
    manifest.set_step(step);
    manifest.set_num_servers(map_.num_servers());
    *manifest.mutable_shard_map() = map_.ToProto();
    for (int r = 0; r < map_.num_servers(); ++r) {
      proto::CheckpointRequest ask;
      ask.set_step(step);
      ask.set_dir(tmp);
      TS_ASSIGN_OR_RETURN(
          Message reply,
          scheduler_->CallAndWait(NodeId::Server(r),
                                  MakeControlMessage(proto::COMMAND_CHECKPOINT, ask), kWait));
      proto::CheckpointRequest files;
      TS_RETURN_IF_ERROR(ParseControlBody(reply, &files));
      for (const auto& f : files.files()) *manifest.add_files() = f;
    }
    TS_RETURN_IF_ERROR(checkpoint::WriteManifest(env_, tmp, manifest));
    TS_RETURN_IF_ERROR(checkpoint::Commit(env_, root, step));
    return root + "/" + checkpoint::StepDirName(step);
  }

  StatusOr<Message> CheckpointReply(int server, int64_t step, const std::string& dir) {
    proto::CheckpointRequest ask;
    ask.set_step(step);
    ask.set_dir(dir);
    return scheduler_->CallAndWait(NodeId::Server(server),
                                   MakeControlMessage(proto::COMMAND_CHECKPOINT, ask), kWait);
  }

  // Weights and optimizer state of a row, from whichever server owns it now.
  std::vector<float> Row(uint32_t table, uint64_t key, int row_floats) const {
    const float* row = servers_[map_.ServerOf(table, key)]->PeekRow(table, key);
    if (row == nullptr) return {};
    return std::vector<float>(row, row + row_floats);
  }
  int64_t Rows() const {
    int64_t n = 0;
    for (const auto& s : servers_) n += s->stats().rows;
    return n;
  }

  Status start_status_;

 private:
  InProcHub hub_;
  ShardMap map_;
  Env* const env_;
  std::unique_ptr<Transport> scheduler_transport_, worker_transport_;
  std::unique_ptr<RpcNode> scheduler_, worker_;
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::unique_ptr<RpcNode>> rpcs_;
  std::vector<std::unique_ptr<Server>> servers_;
};

std::vector<uint64_t> RandomKeys(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> keys(n);
  for (auto& k : keys) k = rng();
  return keys;
}

class ServerCheckpointTest : public ::testing::TestWithParam<kernels::OptimizerKind> {};

TEST_P(ServerCheckpointTest, RowsMoveFromTwoToThreeServersAndBackBitForBit) {
  const kernels::OptimizerKind kind = GetParam();
  const int row_floats = kDim + kernels::OptimizerStateFloats(kind, kDim);
  const std::vector<uint64_t> keys = RandomKeys(600, 42);
  testing::TempDir root;

  Cluster two(2, 2, kind);
  ASSERT_TRUE(two.start_status_.ok());
  for (int64_t c = 0; c < 3; ++c) two.Step(c, keys);
  const std::string first = two.Checkpoint(root.path(), 3);

  Cluster three(3, 1, kind, first, *checkpoint::ReadManifest(Env::Default(), first));
  ASSERT_TRUE(three.start_status_.ok()) << three.start_status_.ToString();
  EXPECT_EQ(three.Rows(), two.Rows());
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint64_t k : keys) ASSERT_EQ(three.Row(t, k, row_floats), two.Row(t, k, row_floats));
  }
  // The optimizer state came along too: the same next step gives the same rows, and the
  // restored servers accept step 3 (they continue at the checkpoint's clock).
  two.Step(3, keys);
  three.Step(3, keys);
  const std::string second = three.Checkpoint(root.path(), 4);

  Cluster back(2, 3, kind, second, *checkpoint::ReadManifest(Env::Default(), second));
  ASSERT_TRUE(back.start_status_.ok()) << back.start_status_.ToString();
  EXPECT_EQ(back.Rows(), two.Rows());
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint64_t k : keys) {
      ASSERT_EQ(back.Row(t, k, row_floats), two.Row(t, k, row_floats)) << "table " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ServerCheckpointTest,
                         ::testing::Values(kernels::OptimizerKind::kSgd,
                                           kernels::OptimizerKind::kAdagrad,
                                           kernels::OptimizerKind::kAdam,
                                           kernels::OptimizerKind::kFtrl));

TEST(ServerCheckpointTest, CheckpointOfAStepNotYetAppliedIsRefused) {
  testing::TempDir root;
  Cluster one(1, 1, kernels::OptimizerKind::kAdagrad);
  one.Step(0, RandomKeys(10, 1));
  auto reply = one.CheckpointReply(0, 5, root.path());
  EXPECT_EQ(reply.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(reply.status().message().find("applied the pushes of 1 steps"), std::string::npos)
      << reply.status().message();
}

TEST(ServerCheckpointTest, CorruptRowFileOrOtherOptimizerIsRefusedAtStart) {
  testing::TempDir root;
  const std::vector<uint64_t> keys = RandomKeys(50, 3);
  std::string dir;
  {
    Cluster one(1, 1, kernels::OptimizerKind::kAdagrad);
    one.Step(0, keys);
    dir = one.Checkpoint(root.path(), 1);
  }
  const proto::CheckpointManifest manifest = *checkpoint::ReadManifest(Env::Default(), dir);
  // Rows of another shape (adam keeps 2 dim + 1 state floats, adagrad dim).
  Cluster adam(1, 1, kernels::OptimizerKind::kAdam, dir, manifest);
  EXPECT_EQ(adam.start_status_.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(adam.start_status_.message().find("optimizer"), std::string::npos)
      << adam.start_status_.message();
  // One flipped byte in a row file.
  const std::string path = dir + "/" + manifest.files(0).name();
  std::string bytes = testing::ReadFile(path);
  bytes[bytes.size() - 3] ^= 0x40;
  testing::WriteFile(path, bytes);
  Cluster corrupt(1, 1, kernels::OptimizerKind::kAdagrad, dir, manifest);
  EXPECT_EQ(corrupt.start_status_.code(), StatusCode::kDataLoss);
  EXPECT_NE(corrupt.start_status_.message().find("checksum mismatch"), std::string::npos)
      << corrupt.start_status_.message();
}

TEST(ServerCheckpointTest, ShardWithANonFiniteRowWritesNoCheckpoint) {
  testing::TempDir root;
  Cluster one(1, 1, kernels::OptimizerKind::kSgd);
  one.Step(0, RandomKeys(10, 1));
  one.PushNaN(1, 12345);
  const std::string tmp = root.Join(checkpoint::TmpDirName(2));
  ASSERT_TRUE(checkpoint::MakeDirs(Env::Default(), tmp).ok());
  auto reply = one.CheckpointReply(0, 2, tmp);
  EXPECT_EQ(reply.status().code(), StatusCode::kNonFinite) << reply.status().ToString();
  EXPECT_NE(reply.status().message().find("key 12345 is not finite on server:0; checkpoint of "
                                          "step 2 not written"),
            std::string::npos)
      << reply.status().message();
}

TEST(ServerCheckpointTest, NonFiniteRowInACheckpointIsRefusedAtStartAfterItsChecksum) {
  testing::TempDir root;
  std::string dir;
  {
    Cluster one(1, 1, kernels::OptimizerKind::kSgd);
    one.Step(0, RandomKeys(10, 1));
    dir = one.Checkpoint(root.path(), 1);
  }
  // The row file rewritten with one row of infinities, its manifest entry updated to match.
  proto::CheckpointManifest manifest = *checkpoint::ReadManifest(Env::Default(), dir);
  for (auto& entry : *manifest.mutable_files()) {
    auto reader = checkpoint::RowFileReader::Open(Env::Default(), dir, entry);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    const checkpoint::RowFileHeader header = (*reader)->header();
    std::vector<std::pair<uint64_t, std::vector<float>>> rows(header.num_rows);
    for (auto& [key, row] : rows) {
      row.resize(header.dim + header.state_floats);
      ASSERT_TRUE((*reader)->Next(&key, row.data()).ok());
    }
    ASSERT_TRUE((*reader)->Finish().ok());
    reader->reset();
    if (!rows.empty()) rows.back().second[0] = INFINITY;
    auto writer =
        checkpoint::RowFileWriter::Create(Env::Default(), dir + "/" + entry.name(), header);
    ASSERT_TRUE(writer.ok());
    for (const auto& [key, row] : rows) ASSERT_TRUE((*writer)->Append(key, row.data()).ok());
    auto written = (*writer)->Finish();
    ASSERT_TRUE(written.ok());
    entry = *written;
  }
  ASSERT_TRUE(checkpoint::WriteManifest(Env::Default(), dir, manifest).ok());
  Cluster resumed(1, 1, kernels::OptimizerKind::kSgd, dir, manifest);
  EXPECT_EQ(resumed.start_status_.code(), StatusCode::kNonFinite)
      << resumed.start_status_.ToString();
  EXPECT_NE(resumed.start_status_.message().find("is not finite; resume from an earlier"),
            std::string::npos)
      << resumed.start_status_.message();
}

// The faults a checkpoint of step 4 meets after a good one of step 3.
enum class Fault { kFailedWrite, kFullDisk, kCrashBeforeRename, kCrcMismatch };

class ServerCheckpointFaultTest : public ::testing::TestWithParam<Fault> {};

TEST_P(ServerCheckpointFaultTest, FailureNamesTheFileAndThePreviousCheckpointStillResumes) {
  const Fault fault = GetParam();
  const kernels::OptimizerKind kind = kernels::OptimizerKind::kAdagrad;
  const int row_floats = kDim + kernels::OptimizerStateFloats(kind, kDim);
  const std::vector<uint64_t> keys = RandomKeys(300, 7);
  testing::TempDir root;
  testing::FaultEnv env;
  Cluster two(2, 2, kind, "", {}, &env);
  ASSERT_TRUE(two.start_status_.ok());
  for (int64_t c = 0; c < 3; ++c) two.Step(c, keys);
  const std::string first = two.Checkpoint(root.path(), 3);
  std::map<std::pair<uint32_t, uint64_t>, std::vector<float>> at_step_3;
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint64_t k : keys) at_step_3[{t, k}] = two.Row(t, k, row_floats);
  }
  two.Step(3, keys);

  const std::string bad_file = checkpoint::RowFileName(1, 0, 1);
  switch (fault) {
    case Fault::kFailedWrite:
      env.FailWrites(bad_file);
      break;
    case Fault::kFullDisk:
      env.SetDiskBytes(env.bytes_written() + 5000);  // less than the rows of step 4
      break;
    case Fault::kCrashBeforeRename:
      // The manifest is written but never renamed into place.
      env.CrashBeforeRename(std::string(checkpoint::kManifestName) + ".writing");
      break;
    case Fault::kCrcMismatch:
      break;
  }
  auto second = two.TryCheckpoint(root.path(), 4);
  switch (fault) {
    case Fault::kFailedWrite:
      ASSERT_FALSE(second.ok());
      EXPECT_NE(second.status().message().find(bad_file), std::string::npos)
          << second.status().message();
      EXPECT_NE(second.status().message().find("Input/output error"), std::string::npos);
      break;
    case Fault::kFullDisk:
      ASSERT_FALSE(second.ok());
      EXPECT_NE(second.status().message().find(".rows: No space left on device"), std::string::npos)
          << second.status().message();
      break;
    case Fault::kCrashBeforeRename:
      ASSERT_FALSE(second.ok());
      EXPECT_TRUE(env.crashed());
      EXPECT_NE(second.status().message().find(checkpoint::kManifestName), std::string::npos)
          << second.status().message();
      break;
    case Fault::kCrcMismatch: {
      // Written and committed, then one byte of a row file changes on disk.
      ASSERT_TRUE(second.ok()) << second.status().ToString();
      const std::string path = *second + "/" + bad_file;
      std::string bytes = testing::ReadFile(path);
      bytes[bytes.size() / 2] ^= 0x08;
      testing::WriteFile(path, bytes);
      Cluster corrupt(1, 1, kind, *second, *checkpoint::ReadManifest(Env::Default(), *second));
      EXPECT_EQ(corrupt.start_status_.code(), StatusCode::kDataLoss);
      EXPECT_NE(
          corrupt.start_status_.message().find("checksum mismatch in checkpoint file " + path),
          std::string::npos)
          << corrupt.start_status_.message();
      break;
    }
  }

  // A new process (the POSIX Env) cleans up what the failure left and resumes from step 3.
  Env* posix = Env::Default();
  checkpoint::RemoveIncomplete(posix, root.path());
  if (fault != Fault::kCrcMismatch) {
    EXPECT_EQ(checkpoint::FindLatest(posix, root.path()), first);
    EXPECT_FALSE(posix->FileExists(root.path() + "/" + checkpoint::TmpDirName(4)));
  }
  auto manifest = checkpoint::ReadManifest(posix, first);
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  ASSERT_TRUE(checkpoint::VerifyFiles(posix, first, *manifest, /*checksums=*/true).ok());
  Cluster resumed(3, 1, kind, first, *manifest);
  ASSERT_TRUE(resumed.start_status_.ok()) << resumed.start_status_.ToString();
  for (uint32_t t = 0; t < 2; ++t) {
    for (uint64_t k : keys) ASSERT_EQ(resumed.Row(t, k, row_floats), (at_step_3[{t, k}]));
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, ServerCheckpointFaultTest,
                         ::testing::Values(Fault::kFailedWrite, Fault::kFullDisk,
                                           Fault::kCrashBeforeRename, Fault::kCrcMismatch));

}  // namespace
}  // namespace tessera::server
