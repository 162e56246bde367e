// `tessera export` and `tessera recommend` (launch/export.h) refuse a non-finite model (exit
// status 3) instead of writing or ranking with nan, and name --checkpoint when it is missing.
#include "launch/export.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "core/checkpoint.h"
#include "core/logging.h"
#include "core/row_file.h"
#include "launch/npy.h"
#include "tests/testing/test_util.h"

namespace tessera::launch {
namespace {

using testing::TempDir;

constexpr int kRowDim = 3;  // 2 factors + the bias

// An MF checkpoint of step 1 under `root` (one worker; tables user and item, 2 rows each, SGD:
// no state); item key 2's first factor is `item_value`. Returns its directory.
std::string WriteMfCheckpoint(const std::string& root, float item_value) {
  Env* env = Env::Default();
  const std::string tmp = root + "/" + checkpoint::TmpDirName(1);
  TS_CHECK_OK(checkpoint::MakeDirs(env, tmp));
  proto::CheckpointManifest manifest;
  manifest.set_format_version(checkpoint::kFormatVersion);
  manifest.set_step(1);
  manifest.set_num_servers(1);
  manifest.set_num_workers(1);
  proto::ModelDescription* model = manifest.mutable_model();
  model->set_type("mf");
  model->set_dim(kRowDim - 1);
  model->set_global_bias(3.5);
  for (uint32_t t = 0; t < 2; ++t) {
    proto::TableDescription* table = model->add_tables();
    table->set_table_id(t);
    table->set_name(t == 0 ? "user" : "item");
    table->set_dim(kRowDim);
    table->set_optimizer("sgd");
    table->set_num_rows(2);
    checkpoint::RowFileHeader header;
    header.table_id = t;
    header.dim = kRowDim;
    header.slot_end = 16384;
    header.num_rows = 2;
    auto writer = checkpoint::RowFileWriter::Create(
        env, tmp + "/" + checkpoint::RowFileName(0, 0, t), header);
    TS_CHECK_OK(writer.status());
    for (uint64_t key : {1, 2}) {
      std::vector<float> row = {0.5f * key, -0.25f, 0.1f};
      if (t == 1 && key == 2) row[0] = item_value;
      TS_CHECK_OK((*writer)->Append(key, row.data()));
    }
    auto entry = (*writer)->Finish();
    TS_CHECK_OK(entry.status());
    *manifest.add_files() = *entry;
  }
  proto::WorkerCheckpoint position;  // the manifest is cross-checked against it
  position.set_step(1);
  auto entry = checkpoint::WriteWorkerPosition(env, tmp, 0, position);
  TS_CHECK_OK(entry.status());
  *manifest.add_files() = *entry;
  TS_CHECK_OK(checkpoint::WriteManifest(env, tmp, manifest));
  TS_CHECK_OK(checkpoint::Commit(env, root, 1));
  return root + "/" + checkpoint::StepDirName(1);
}

Status RecommendUser1(const std::string& export_dir) {
  RecommendOptions options;
  options.export_dir = export_dir;
  options.user = "1";
  std::FILE* out = std::tmpfile();
  Status s = Recommend(options, out);
  std::fclose(out);
  return s;
}

TEST(ExportTest, FiniteCheckpointIsExportedAndRankedFrom) {
  TempDir dir;
  ExportOptions options;
  options.checkpoint = WriteMfCheckpoint(dir.Join("ckpt"), 0.75f);
  options.out = dir.Join("export");
  ASSERT_TRUE(ExportCheckpoint(options).ok());
  EXPECT_TRUE(RecommendUser1(options.out).ok());
}

TEST(ExportTest, NonFiniteRowIsRefusedWithStatusNonFinite) {
  for (float bad : {NAN, INFINITY}) {
    TempDir dir;
    ExportOptions options;
    options.checkpoint = WriteMfCheckpoint(dir.Join("ckpt"), bad);
    options.out = dir.Join("export");
    Status s = ExportCheckpoint(options);
    EXPECT_EQ(s.code(), StatusCode::kNonFinite) << s.ToString();
    EXPECT_NE(s.message().find("table item, key 2"), std::string::npos) << s.message();
    EXPECT_FALSE(std::filesystem::exists(options.out + "/model.json"));
  }
}

TEST(ExportTest, RecommendRefusesAnExportWithANonFiniteValue) {
  TempDir dir;
  ExportOptions options;
  options.checkpoint = WriteMfCheckpoint(dir.Join("ckpt"), 0.75f);
  options.out = dir.Join("export");
  ASSERT_TRUE(ExportCheckpoint(options).ok());
  const std::vector<float> embeddings = {0.5f, -0.25f, NAN, -0.25f};
  ASSERT_TRUE(WriteNpy(options.out + "/item/embeddings.npy", embeddings.data(), {2, 2}).ok());
  Status s = RecommendUser1(options.out);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite) << s.ToString();
  EXPECT_NE(s.message().find("item/embeddings.npy"), std::string::npos) << s.message();
}

TEST(ExportTest, MissingCheckpointNamesTheCheckpointFlag) {
  TempDir dir;
  ExportOptions options;
  options.checkpoint = dir.Join("nonexist");
  options.out = dir.Join("export");
  Status s = ExportCheckpoint(options);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "--checkpoint " + options.checkpoint + ": no such checkpoint");
}

}  // namespace
}  // namespace tessera::launch
