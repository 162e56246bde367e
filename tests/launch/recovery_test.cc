#include "launch/recovery.h"

#include <gtest/gtest.h>

#include "core/checkpoint.h"
#include "tests/testing/test_util.h"

namespace tessera::launch {
namespace {

// The tables and manifest of an MF job as the launcher describes them.
struct MfJob {
  TrainOptions options;
  std::vector<proto::TableDescription> tables;
  proto::CheckpointManifest manifest;

  MfJob() {
    options.embedded_default = true;  // no data file to fingerprint
    server::ServerOptions servers;
    for (uint32_t t = 0; t < 2; ++t) {
      server::TableOptions table;
      table.table_id = t;
      table.dim = options.mf.dim + 1;
      table.optimizer = options.optimizer;
      servers.tables.push_back(table);
    }
    tables = DescribeTables(servers, /*ctr=*/false);
    manifest.set_num_workers(2);
    manifest.mutable_model()->set_type("mf");
    manifest.mutable_model()->set_dim(options.mf.dim);
    for (const auto& t : tables) *manifest.mutable_model()->add_tables() = t;
  }
};

TEST(RecoveryTest, DescribeTablesNamesMfAndCtrTablesWithTheirOptimizerState) {
  MfJob job;
  ASSERT_EQ(job.tables.size(), 2u);
  EXPECT_EQ(job.tables[0].name(), "user");
  EXPECT_EQ(job.tables[1].name(), "item");
  EXPECT_EQ(job.tables[0].dim(), 33);
  EXPECT_EQ(job.tables[0].optimizer(), "adagrad");
  EXPECT_EQ(job.tables[0].state_floats(), 33);
}

TEST(RecoveryTest, MatchingCheckpointFits) {
  MfJob job;
  EXPECT_TRUE(CheckCheckpointFits(job.manifest, "ck/step-9", job.options, job.tables, 2).ok());
}

TEST(RecoveryTest, WrongModelDimOptimizerOrWorkersIsRefusedSayingWhich) {
  MfJob job;
  auto refused = [&](const proto::CheckpointManifest& m, int workers) {
    Status s = CheckCheckpointFits(m, "ck/step-9", job.options, job.tables, workers);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    return s.message();
  };
  proto::CheckpointManifest other = job.manifest;
  other.mutable_model()->set_type("deepfm");
  EXPECT_NE(refused(other, 2).find("it holds a deepfm model, this run trains mf"),
            std::string::npos);
  other = job.manifest;
  other.mutable_model()->set_dim(16);
  EXPECT_NE(refused(other, 2).find("--dim 16, this run 32"), std::string::npos);
  other = job.manifest;
  other.mutable_model()->mutable_tables(1)->set_optimizer("adam");
  EXPECT_NE(refused(other, 2).find("table item has rows of 33 weights trained with adam"),
            std::string::npos);
  EXPECT_NE(refused(job.manifest, 3).find("written by 2 workers"), std::string::npos);
}

TEST(RecoveryTest, ResumeFromADirectoryWithoutManifestFailsBeforeTraining) {
  testing::TempDir dir;
  MfJob job;
  job.options.resume = dir.path();
  auto resume = PrepareResume(Env::Default(), job.options, job.tables, 1);
  EXPECT_EQ(resume.status().code(), StatusCode::kNotFound);
  // auto with nothing there: a fresh start, not an error (a first run under a requeue script).
  job.options.resume = "auto";
  job.options.checkpoint_dir = dir.path();
  auto fresh = PrepareResume(Env::Default(), job.options, job.tables, 1);
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->dir, "");
}

}  // namespace
}  // namespace tessera::launch
