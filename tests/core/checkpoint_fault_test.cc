// The checkpoint module through FaultEnv (tests/testing/fault_env.h): a failed write, a full
// disk, a crash before a rename and a CRC mismatch each name the file and leave the previous
// checkpoint complete, found by FindLatest and readable; the row file layout is pinned byte for
// byte, so checkpoints written before a change still load after it.
#include <gtest/gtest.h>

#include <cstring>

#include "core/checkpoint.h"
#include "core/row_file.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/test_util.h"

namespace tessera::checkpoint {
namespace {

using testing::FaultEnv;
using testing::TempDir;

// Writes a complete checkpoint of `step` under `root` through `env`: one row file and one worker
// position. Returns the status of the first failure.
Status WriteCheckpoint(Env* env, const std::string& root, int64_t step) {
  const std::string tmp = root + "/" + TmpDirName(step);
  TS_RETURN_IF_ERROR(MakeDirs(env, tmp));
  proto::CheckpointManifest manifest;
  manifest.set_format_version(kFormatVersion);
  manifest.set_step(step);
  manifest.set_num_workers(1);
  RowFileHeader header;
  header.table_id = 0;
  header.dim = 3;
  header.state_floats = 1;
  header.slot_begin = 0;
  header.slot_end = 16384;
  header.num_rows = 100;
  TS_ASSIGN_OR_RETURN(auto rows,
                      RowFileWriter::Create(env, tmp + "/" + RowFileName(0, 0, 0), header));
  for (uint64_t key = 0; key < header.num_rows; ++key) {
    const float row[4] = {float(key), float(step), 0.5f, -1.0f};
    TS_RETURN_IF_ERROR(rows->Append(key * 7919, row));
  }
  TS_ASSIGN_OR_RETURN(*manifest.add_files(), rows->Finish());
  proto::WorkerCheckpoint position;
  position.set_step(step);
  TS_ASSIGN_OR_RETURN(*manifest.add_files(), WriteWorkerPosition(env, tmp, 0, position));
  TS_RETURN_IF_ERROR(WriteManifest(env, tmp, manifest));
  return Commit(env, root, step);
}

// What a restarted process does: clean up, find the newest checkpoint, read all of it.
StatusOr<int64_t> ResumeStep(const std::string& root) {
  Env* env = Env::Default();
  RemoveIncomplete(env, root);
  const std::string dir = FindLatest(env, root);
  if (dir.empty()) return Status::NotFound("no checkpoint under " + root);
  TS_ASSIGN_OR_RETURN(proto::CheckpointManifest manifest, ReadManifest(env, dir));
  TS_RETURN_IF_ERROR(VerifyFiles(env, dir, manifest, /*checksums=*/true));
  TS_ASSIGN_OR_RETURN(auto rows, RowFileReader::Open(env, dir, manifest.files(0)));
  float row[4];
  uint64_t key;
  for (uint64_t i = 0; i < rows->header().num_rows; ++i) {
    TS_RETURN_IF_ERROR(rows->Next(&key, row));
    if (key != i * 7919 || row[1] != float(manifest.step())) return Status::DataLoss("wrong row");
  }
  TS_RETURN_IF_ERROR(rows->Finish());
  TS_ASSIGN_OR_RETURN(proto::WorkerCheckpoint position, ReadWorkerPosition(env, dir, manifest, 0));
  return position.step();
}

TEST(CheckpointFaultTest, FailedWriteNamesTheFileAndLeavesThePreviousCheckpoint) {
  TempDir root;
  FaultEnv env;
  ASSERT_TRUE(WriteCheckpoint(&env, root.path(), 10).ok());
  env.FailWrites("worker-0.state");
  Status s = WriteCheckpoint(&env, root.path(), 20);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(root.Join(TmpDirName(20)) + "/worker-0.state: Input/output error"),
            std::string::npos)
      << s.message();
  EXPECT_EQ(*ResumeStep(root.path()), 10);
  EXPECT_FALSE(Env::Default()->FileExists(root.Join(TmpDirName(20))));
}

TEST(CheckpointFaultTest, FullDiskNamesTheFileAndLeavesThePreviousCheckpoint) {
  TempDir root;
  FaultEnv env;
  ASSERT_TRUE(WriteCheckpoint(&env, root.path(), 10).ok());
  const uint64_t used = env.bytes_written();
  env.SetDiskBytes(used + 1000);  // the next row file (64 + 100 x 24 bytes) does not fit
  Status s = WriteCheckpoint(&env, root.path(), 20);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(RowFileName(0, 0, 0) + ": No space left on device"), std::string::npos)
      << s.message();
  EXPECT_EQ(env.bytes_written(), used + 1000);  // what fitted was written, as on a real disk
  EXPECT_EQ(*ResumeStep(root.path()), 10);
}

TEST(CheckpointFaultTest, CrashBeforeTheManifestIsRenamedLeavesThePreviousCheckpoint) {
  TempDir root;
  FaultEnv env;
  ASSERT_TRUE(WriteCheckpoint(&env, root.path(), 10).ok());
  env.CrashBeforeRename(std::string(kManifestName) + ".writing");
  Status s = WriteCheckpoint(&env, root.path(), 20);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(kManifestName), std::string::npos) << s.message();
  EXPECT_TRUE(env.crashed());
  // Nothing works in a crashed process any more.
  EXPECT_FALSE(MakeDirs(&env, root.Join("later")).ok());
  EXPECT_FALSE(ReadManifest(&env, root.Join("step-10")).ok());
  EXPECT_FALSE(Env::Default()->FileExists(root.Join("step-20")));
  EXPECT_EQ(*ResumeStep(root.path()), 10);
  EXPECT_FALSE(Env::Default()->FileExists(root.Join(TmpDirName(20))));
}

TEST(CheckpointFaultTest, CrashBeforeTheDirectoryRenameLeavesLatestOnThePreviousCheckpoint) {
  TempDir root;
  FaultEnv env;
  ASSERT_TRUE(WriteCheckpoint(&env, root.path(), 10).ok());
  env.CrashBeforeRename(TmpDirName(20));
  Status s = WriteCheckpoint(&env, root.path(), 20);
  EXPECT_NE(s.message().find(TmpDirName(20)), std::string::npos) << s.message();
  // `latest` still names step 10, whose files all check out ...
  EXPECT_EQ(FindLatest(Env::Default(), root.path()), root.Join("step-10"));
  auto manifest = ReadManifest(Env::Default(), root.Join("step-10"));
  ASSERT_TRUE(manifest.ok());
  EXPECT_TRUE(VerifyFiles(Env::Default(), root.Join("step-10"), *manifest, true).ok());
  // ... and step-20.tmp has its manifest: the next start completes its rename, while `latest`
  // (never updated) keeps naming step 10, which a resume picks.
  EXPECT_EQ(*ResumeStep(root.path()), 10);
  EXPECT_TRUE(Env::Default()->FileExists(root.Join("step-20") + "/" + kManifestName));
  EXPECT_FALSE(Env::Default()->FileExists(root.Join(TmpDirName(20))));
}

TEST(CheckpointFaultTest, CrcMismatchNamesTheFileAndThePreviousCheckpointStillLoads) {
  TempDir root;
  ASSERT_TRUE(WriteCheckpoint(Env::Default(), root.path(), 10).ok());
  ASSERT_TRUE(WriteCheckpoint(Env::Default(), root.path(), 20).ok());
  const std::string path = root.Join("step-20") + "/" + RowFileName(0, 0, 0);
  std::string bytes = testing::ReadFile(path);
  bytes[100] ^= 0x01;
  testing::WriteFile(path, bytes);
  Status s = ResumeStep(root.path()).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("checksum mismatch in checkpoint file " + path), std::string::npos)
      << s.message();
  // The one before is untouched and loads.
  Env* env = Env::Default();
  auto manifest = ReadManifest(env, root.Join("step-10"));
  ASSERT_TRUE(manifest.ok());
  EXPECT_TRUE(VerifyFiles(env, root.Join("step-10"), *manifest, /*checksums=*/true).ok());
  EXPECT_EQ(ReadWorkerPosition(env, root.Join("step-10"), *manifest, 0)->step(), 10);
}

TEST(CheckpointFaultTest, RowFileLayoutIsUnchanged) {
  // The bytes a row file has held since format version 1, built by hand.
  TempDir dir;
  RowFileHeader header;
  header.table_id = 2;
  header.dim = 2;
  header.state_floats = 1;
  header.slot_begin = 100;
  header.slot_end = 200;
  header.num_rows = 2;
  auto writer = RowFileWriter::Create(Env::Default(), dir.Join("t.rows"), header);
  ASSERT_TRUE(writer.ok());
  const float a[3] = {1.0f, -2.0f, 0.25f}, b[3] = {3.5f, 0.0f, 7.0f};
  ASSERT_TRUE((*writer)->Append(0x0102030405060708ull, a).ok());
  ASSERT_TRUE((*writer)->Append(42, b).ok());
  auto entry = (*writer)->Finish();
  ASSERT_TRUE(entry.ok());

  std::string want("TSROWS01", 8);
  auto u32 = [&](uint32_t v) { want.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { want.append(reinterpret_cast<const char*>(&v), 8); };
  auto f32 = [&](float v) { want.append(reinterpret_cast<const char*>(&v), 4); };
  for (uint32_t v : {1u, 2u, 2u, 1u, 100u, 200u}) u32(v);  // version, table, dim, state, slots
  u64(2);
  want.append(24, '\0');
  u64(0x0102030405060708ull);
  for (float v : a) f32(v);
  u64(42);
  for (float v : b) f32(v);
  EXPECT_EQ(testing::ReadFile(dir.Join("t.rows")), want);
  EXPECT_EQ(entry->name(), "t.rows");
  EXPECT_EQ(entry->kind(), proto::CheckpointFile::KIND_ROWS);
  EXPECT_EQ(entry->size_bytes(), want.size());
  EXPECT_EQ(entry->table_id(), 2u);
  EXPECT_EQ(entry->num_rows(), 2u);
  EXPECT_EQ(entry->slot_begin(), 100u);
  EXPECT_EQ(entry->slot_end(), 200u);
  EXPECT_EQ(entry->crc32(), Crc32(want.data(), want.size()));

  // A writer that is given fewer rows than its header announces refuses to finish.
  auto short_writer = RowFileWriter::Create(Env::Default(), dir.Join("s.rows"), header);
  ASSERT_TRUE((*short_writer)->Append(1, a).ok());
  EXPECT_FALSE((*short_writer)->Finish().ok());
}

TEST(CheckpointFaultTest, ManualClockMovesOnlyWhenAdvancedOrSleptOn) {
  FaultEnv env;
  env.UseManualClock();
  const Env::Clock::time_point start = env.Now();
  EXPECT_EQ(env.Now(), start);
  env.AdvanceClock(std::chrono::seconds(7));
  EXPECT_EQ(env.Now() - start, std::chrono::seconds(7));
  env.SleepFor(std::chrono::hours(1));  // returns at once
  EXPECT_EQ(env.Now() - start, std::chrono::seconds(7) + std::chrono::hours(1));
}

TEST(CheckpointFaultTest, SpecOfTheTestHookParsesOrSaysWhatIsWrong) {
  auto env = FaultEnv::FromSpec(Env::Default(), "disk_bytes=10,create_delay_ms=0,manual_clock=1");
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  TempDir dir;
  auto file = (*env)->NewWritableFile(dir.Join("f"));
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE((*file)->Append("0123456789", 10).ok());
  EXPECT_NE((*file)->Append("x", 1).message().find("No space left on device"), std::string::npos);
  auto bad = FaultEnv::FromSpec(Env::Default(), "disk_bytes=ten");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("disk_bytes=ten"), std::string::npos);
}

}  // namespace
}  // namespace tessera::checkpoint
