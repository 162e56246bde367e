#include "core/checkpoint.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>

#include "core/logging.h"
#include "tests/testing/test_util.h"

namespace tessera::checkpoint {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

Env* Posix() { return Env::Default(); }

proto::CheckpointFile WriteBytes(const std::string& dir, const std::string& name,
                                 const std::string& bytes) {
  auto writer = FileWriter::Create(Posix(), dir + "/" + name);
  TS_CHECK(writer.ok()) << writer.status().ToString();
  // Two appends across the buffer boundary would be the same; one is enough for the CRC.
  TS_CHECK_OK((*writer)->Append(bytes.data(), bytes.size()));
  auto entry = (*writer)->Finish();
  TS_CHECK(entry.ok()) << entry.status().ToString();
  return *entry;
}

proto::CheckpointManifest SampleManifest() {
  proto::CheckpointManifest m;
  m.set_format_version(kFormatVersion);
  m.set_step(1234);
  m.set_created("2026-12-03T10:00:00Z");
  m.set_num_servers(2);
  m.set_num_workers(3);
  m.set_config("  dim = 32\n  lr = 0.05\n");
  proto::ModelDescription* model = m.mutable_model();
  model->set_type("deepfm");
  model->set_global_bias(3.25);
  model->set_emb_dim(16);
  model->set_num_dense_params(187457);
  auto* t = model->add_tables();
  t->set_table_id(0);
  t->set_name("embedding");
  t->set_dim(16);
  t->set_state_floats(33);
  t->set_optimizer("adam");
  t->set_num_rows(1ull << 40);
  auto* layer = model->add_layers();
  layer->set_name("mlp.0.w");
  layer->set_offset(14);
  layer->add_shape(429);
  layer->add_shape(400);
  auto* range = m.mutable_shard_map()->add_ranges();
  range->set_begin(0);
  range->set_end(16384);
  auto* f = m.add_files();
  f->set_name("server-0-shard-0-table-0.rows");
  f->set_size_bytes(123456789012ull);
  f->set_crc32(0xDEADBEEFu);
  f->set_kind(proto::CheckpointFile::KIND_ROWS);
  f->set_slot_begin(0);
  f->set_slot_end(8192);
  return m;
}

TEST(CheckpointTest, ManifestRoundTripsThroughJson) {
  TempDir dir;
  const proto::CheckpointManifest written = SampleManifest();
  ASSERT_TRUE(WriteManifest(Posix(), dir.path(), written).ok());
  auto read = ReadManifest(Posix(), dir.path());
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  proto::CheckpointManifest sealed = written;  // as written: with its checksum
  sealed.set_checksum(ManifestChecksum(written));
  EXPECT_EQ(read->SerializeAsString(), sealed.SerializeAsString());
  // Human-readable: field names as in the .proto.
  EXPECT_NE(ReadFile(dir.Join(kManifestName)).find("\"num_dense_params\""), std::string::npos);
}

TEST(CheckpointTest, ManifestThatDoesNotParseOrHasAnotherVersionIsRefused) {
  TempDir dir;
  WriteFile(dir.Join(kManifestName), "{ \"step\": ");
  auto bad = ReadManifest(Posix(), dir.path());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("does not parse"), std::string::npos);

  proto::CheckpointManifest other = SampleManifest();
  other.set_format_version(kFormatVersion + 1);
  ASSERT_TRUE(WriteManifest(Posix(), dir.path(), other).ok());
  auto newer = ReadManifest(Posix(), dir.path());
  EXPECT_EQ(newer.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(newer.status().message().find("format version"), std::string::npos);

  TempDir empty;
  auto none = ReadManifest(Posix(), empty.path());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("not a complete checkpoint"), std::string::npos);
}

TEST(CheckpointTest, WriterRecordsSizeAndZlibCrcAndReaderVerifiesThem) {
  TempDir dir;
  std::string bytes(5 << 20, '\0');  // larger than the 4 MiB buffer
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + (i >> 9));
  const proto::CheckpointFile entry = WriteBytes(dir.path(), "a.bin", bytes);
  EXPECT_EQ(entry.name(), "a.bin");
  EXPECT_EQ(entry.size_bytes(), bytes.size());
  EXPECT_EQ(entry.crc32(),
            static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(bytes.data()),
                                        static_cast<uInt>(bytes.size()))));
  auto reader = FileReader::Open(Posix(), dir.path(), entry);
  ASSERT_TRUE(reader.ok());
  std::string back(bytes.size(), '\0');
  ASSERT_TRUE((*reader)->Read(back.data(), back.size()).ok());
  EXPECT_TRUE((*reader)->Finish().ok());
  EXPECT_EQ(back, bytes);
}

TEST(CheckpointTest, ChecksumMismatchTruncatedAndMissingFilesAreRefusedNamingTheFile) {
  TempDir dir;
  proto::CheckpointManifest manifest;
  *manifest.add_files() = WriteBytes(dir.path(), "rows.bin", std::string(1000, 'x'));
  *manifest.add_files() = WriteBytes(dir.path(), "state.bin", "position");
  ASSERT_TRUE(VerifyFiles(Posix(), dir.path(), manifest, /*checksums=*/true).ok());

  // One byte changed, same size: only the checksum can tell.
  std::string flipped = ReadFile(dir.Join("rows.bin"));
  flipped[500] = 'y';
  WriteFile(dir.Join("rows.bin"), flipped);
  EXPECT_TRUE(VerifyFiles(Posix(), dir.path(), manifest, /*checksums=*/false).ok());
  Status mismatch = VerifyFiles(Posix(), dir.path(), manifest, /*checksums=*/true);
  EXPECT_EQ(mismatch.code(), StatusCode::kDataLoss);
  EXPECT_NE(mismatch.message().find("checksum mismatch"), std::string::npos) << mismatch.message();
  EXPECT_NE(mismatch.message().find("rows.bin"), std::string::npos);

  WriteFile(dir.Join("rows.bin"), std::string(999, 'x'));
  Status truncated = VerifyFiles(Posix(), dir.path(), manifest, /*checksums=*/false);
  EXPECT_EQ(truncated.code(), StatusCode::kDataLoss);
  EXPECT_NE(truncated.message().find("rows.bin is 999 bytes, the manifest says 1000"),
            std::string::npos)
      << truncated.message();

  std::filesystem::remove(dir.Join("state.bin"));
  *manifest.mutable_files(0) = WriteBytes(dir.path(), "rows.bin", std::string(1000, 'x'));
  Status missing = VerifyFiles(Posix(), dir.path(), manifest, /*checksums=*/false);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("state.bin is missing"), std::string::npos) << missing.message();
}

TEST(CheckpointTest, ProtoFilesRoundTripAndRefuseGarbage) {
  TempDir dir;
  proto::WorkerCheckpoint position;
  position.set_step(77);
  position.set_epoch(2);
  position.set_loss_sum(1.5);
  auto entry = WriteProtoFile(Posix(), dir.Join("worker-0.state"), position);
  ASSERT_TRUE(entry.ok());
  proto::WorkerCheckpoint back;
  ASSERT_TRUE(ReadProtoFile(Posix(), dir.path(), *entry, &back).ok());
  EXPECT_EQ(back.SerializeAsString(), position.SerializeAsString());

  const proto::CheckpointFile garbage = WriteBytes(dir.path(), "bad.state", "\xff\xff\xff\xff");
  Status s = ReadProtoFile(Posix(), dir.path(), garbage, &back);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("does not parse"), std::string::npos) << s.message();
}

TEST(CheckpointTest, CommitRenamesPointsLatestAndPruneKeepsTheNewest) {
  TempDir root;
  for (int64_t step : {10, 20, 30}) {
    const std::string tmp = root.Join(TmpDirName(step));
    ASSERT_TRUE(MakeDirs(Posix(), tmp).ok());
    proto::CheckpointManifest m = SampleManifest();
    m.set_step(step);
    ASSERT_TRUE(WriteManifest(Posix(), tmp, m).ok());
    ASSERT_TRUE(Commit(Posix(), root.path(), step).ok());
    EXPECT_FALSE(std::filesystem::exists(tmp));
    EXPECT_EQ(FindLatest(Posix(), root.path()), root.Join(StepDirName(step)));
  }
  EXPECT_EQ(ReadFile(root.Join(kLatestName)), "step-30\n");
  // An interrupted checkpoint: a .tmp directory without a manifest is not a checkpoint.
  ASSERT_TRUE(MakeDirs(Posix(), root.Join(TmpDirName(40))).ok());
  EXPECT_FALSE(Commit(Posix(), root.path(), 40).ok());
  EXPECT_EQ(FindLatest(Posix(), root.path()), root.Join("step-30"));
  // Pruning after a commit of step 20 (a run resumed from step 10) keeps step 30, which is not
  // its to delete, and the newest one up to step 20.
  ASSERT_TRUE(Prune(Posix(), root.path(), 1, 20).ok());
  EXPECT_FALSE(std::filesystem::exists(root.Join("step-10")));
  EXPECT_TRUE(std::filesystem::exists(root.Join("step-20")));
  EXPECT_TRUE(std::filesystem::exists(root.Join("step-30")));
  RemoveIncomplete(Posix(), root.path());
  EXPECT_FALSE(std::filesystem::exists(root.Join(TmpDirName(40))));
  // A crash between the manifest and the rename: the next start finishes the commit.
  ASSERT_TRUE(MakeDirs(Posix(), root.Join(TmpDirName(50))).ok());
  ASSERT_TRUE(WriteManifest(Posix(), root.Join(TmpDirName(50)), SampleManifest()).ok());
  RemoveIncomplete(Posix(), root.path());
  EXPECT_TRUE(std::filesystem::exists(root.Join("step-50/manifest.json")));
  EXPECT_FALSE(std::filesystem::exists(root.Join(TmpDirName(50))));
  // `latest` lost (a crash between the rename and its update): the highest complete one wins.
  std::filesystem::remove(root.Join(kLatestName));
  EXPECT_EQ(FindLatest(Posix(), root.path()), root.Join("step-50"));
}

TEST(CheckpointTest, ResolveResumeFindsTheNewestOrSaysWhyNot) {
  TempDir root;
  auto none = ResolveResume(Posix(), "auto", root.path());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, "");  // nothing yet: start fresh
  EXPECT_EQ(ResolveResume(Posix(), "auto", "").status().code(), StatusCode::kInvalidArgument);
  auto missing = ResolveResume(Posix(), root.Join("step-5"), root.path());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(MakeDirs(Posix(), root.Join("step-5")).ok());
  auto incomplete = ResolveResume(Posix(), root.Join("step-5"), root.path());
  EXPECT_NE(incomplete.status().message().find("not a complete checkpoint"), std::string::npos);
  ASSERT_TRUE(WriteManifest(Posix(), root.Join("step-5"), SampleManifest()).ok());
  EXPECT_EQ(*ResolveResume(Posix(), root.Join("step-5"), ""), root.Join("step-5"));
  EXPECT_EQ(*ResolveResume(Posix(), "auto", root.path()), root.Join("step-5"));
  EXPECT_EQ(ParseStepDirName("step-12"), 12);
  EXPECT_EQ(ParseStepDirName("step-12.tmp"), -1);
  EXPECT_EQ(ParseStepDirName("latest"), -1);
}

TEST(CheckpointTest, ResumeHintNamesTheCheckpointAndTheFlagsToUse) {
  EXPECT_EQ(ResumeHint("ck/step-9", "ck"),
            "last complete checkpoint ck/step-9: continue with --resume ck/step-9 (or --resume "
            "auto --checkpoint-dir ck)");
  EXPECT_EQ(ResumeHint("", "ck"), "no checkpoint was completed: a new run starts from scratch");
  EXPECT_EQ(ResumeHint("", ""),
            "no checkpoint was completed (no --checkpoint-dir): a new run starts from scratch");
}

}  // namespace
}  // namespace tessera::checkpoint
