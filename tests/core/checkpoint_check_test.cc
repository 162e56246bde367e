// The manifest's checksum and its cross-checks against the files (core/checkpoint_check.h).
#include "core/checkpoint_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>

#include "core/checkpoint.h"
#include "core/logging.h"
#include "core/row_file.h"
#include "tests/testing/test_util.h"

namespace tessera::checkpoint {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

Env* Posix() { return Env::Default(); }

bool Mentions(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

// A small but complete checkpoint at step 40: 2 workers, one table of 3 rows in 2 files, and
// (with dense) 5 dense parameters.
proto::CheckpointManifest WriteCheckpoint(const std::string& dir, bool dense) {
  proto::CheckpointManifest m;
  m.set_format_version(kFormatVersion);
  m.set_step(40);
  m.set_num_servers(1);
  m.set_num_workers(2);
  proto::ModelDescription* model = m.mutable_model();
  model->set_type(dense ? "deepfm" : "mf");
  model->set_global_bias(dense ? 0.0 : 3.5);
  auto* table = model->add_tables();
  table->set_table_id(0);
  table->set_name("user");
  table->set_dim(2);
  table->set_state_floats(2);
  table->set_optimizer("adagrad");
  table->set_num_rows(3);
  for (int file = 0; file < 2; ++file) {
    RowFileHeader header;
    header.table_id = 0;
    header.dim = 2;
    header.state_floats = 2;
    header.slot_begin = 0;
    header.slot_end = 16384;
    header.num_rows = file == 0 ? 2 : 1;
    auto writer = RowFileWriter::Create(Posix(), dir + "/" + RowFileName(0, file, 0), header);
    TS_CHECK(writer.ok());
    const float row[4] = {0.5f, -0.25f, 1.0f, 1.0f};
    for (uint64_t k = 0; k < header.num_rows; ++k) TS_CHECK_OK((*writer)->Append(k + 7, row));
    auto entry = (*writer)->Finish();
    TS_CHECK(entry.ok());
    *m.add_files() = *entry;
  }
  for (int rank = 0; rank < 2; ++rank) {
    proto::WorkerCheckpoint position;
    position.set_step(40);
    position.set_epoch(1);
    auto entry = WriteWorkerPosition(Posix(), dir, rank, position);
    TS_CHECK(entry.ok());
    *m.add_files() = *entry;
  }
  if (dense) {
    proto::DenseCheckpoint state;
    for (int i = 0; i < 5; ++i) state.add_params(0.125f * i);
    auto entry = WriteProtoFile(Posix(), dir + "/dense.state", state);
    TS_CHECK(entry.ok());
    entry->set_kind(proto::CheckpointFile::KIND_DENSE);
    *m.add_files() = *entry;
    model->set_num_dense_params(5);
    auto* layer = model->add_layers();
    layer->set_name("global_bias");
    layer->set_offset(4);
    layer->add_shape(1);
  }
  TS_CHECK_OK(WriteManifest(Posix(), dir, m));
  return m;
}

// Replaces the first match of `pattern` in DIR/manifest.json by `replacement` (a hand edit).
void EditManifest(const std::string& dir, const std::string& pattern,
                  const std::string& replacement) {
  const std::string path = dir + "/" + kManifestName;
  const std::string text = ReadFile(path);
  const std::string edited = std::regex_replace(text, std::regex(pattern), replacement,
                                                std::regex_constants::format_first_only);
  TS_CHECK(edited != text) << pattern << " not in " << text;
  WriteFile(path, edited);
}

TEST(CheckpointCheckTest, CompleteCheckpointPassesAndItsManifestCarriesItsChecksum) {
  for (bool dense : {false, true}) {
    TempDir dir;
    WriteCheckpoint(dir.path(), dense);
    auto read = ReadManifest(Posix(), dir.path());
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_NE(read->checksum(), 0u);
    EXPECT_EQ(read->checksum(), ManifestChecksum(*read));
    Status s = CheckManifestAgainstFiles(Posix(), dir.path(), *read);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
}

TEST(CheckpointCheckTest, HandEditedStepOrGlobalBiasIsRefusedByTheChecksumNamingTheManifest) {
  TempDir dir;
  WriteCheckpoint(dir.path(), false);
  EditManifest(dir.path(), "\"step\": \"40\"", "\"step\": \"41\"");
  auto step = ReadManifest(Posix(), dir.path());
  EXPECT_EQ(step.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(step.status(), dir.Join(kManifestName))) << step.status().message();
  EXPECT_TRUE(Mentions(step.status(), "checksum")) << step.status().message();
  // The files show which field was edited: the message names it.
  EXPECT_TRUE(Mentions(step.status(), "field step is 41, but")) << step.status().message();

  TempDir other;
  WriteCheckpoint(other.path(), false);
  EditManifest(other.path(), "\"global_bias\": 3.5", "\"global_bias\": 4.5");
  auto bias = ReadManifest(Posix(), other.path());
  EXPECT_EQ(bias.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(bias.status(), "edited or damaged")) << bias.status().message();
}

TEST(CheckpointCheckTest, ManifestOfTheOlderFormatWithoutChecksumIsRefused) {
  TempDir dir;
  WriteCheckpoint(dir.path(), false);
  EditManifest(dir.path(), "\"format_version\": 2", "\"format_version\": 1");
  auto old = ReadManifest(Posix(), dir.path());
  EXPECT_EQ(old.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Mentions(old.status(), "older Tessera")) << old.status().message();
}

// A manifest whose checksum was recomputed after the edit: the cross-checks still refuse it.
TEST(CheckpointCheckTest, ResealedManifestWhoseFieldsDisagreeWithTheFilesIsRefusedNamingTheField) {
  struct Case {
    std::string field;
    void (*edit)(proto::CheckpointManifest*);
  };
  const Case cases[] = {
      {"field step", [](proto::CheckpointManifest* m) { m->set_step(41); }},
      {"field num_workers", [](proto::CheckpointManifest* m) { m->set_num_workers(3); }},
      {"field model.tables",
       [](proto::CheckpointManifest* m) {
         m->mutable_model()->mutable_tables(0)->set_num_rows(4);
       }},
      {"field model.tables",
       [](proto::CheckpointManifest* m) { m->mutable_model()->mutable_tables(0)->set_dim(3); }},
      {"field model.num_dense_params",
       [](proto::CheckpointManifest* m) { m->mutable_model()->set_num_dense_params(6); }},
      {"field model.layers",
       [](proto::CheckpointManifest* m) { m->mutable_model()->mutable_layers(0)->set_offset(5); }},
      {"field model.global_bias",
       [](proto::CheckpointManifest* m) { m->mutable_model()->set_global_bias(NAN); }},
  };
  for (const Case& c : cases) {
    TempDir dir;
    proto::CheckpointManifest m = WriteCheckpoint(dir.path(), true);
    c.edit(&m);
    ASSERT_TRUE(WriteManifest(Posix(), dir.path(), m).ok());
    auto read = ReadManifest(Posix(), dir.path());
    if (!read.ok()) {  // NaN does not survive JSON: refused as it is read
      EXPECT_EQ(read.status().code(), StatusCode::kDataLoss) << c.field;
      continue;
    }
    Status s = CheckManifestAgainstFiles(Posix(), dir.path(), *read);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << c.field;
    EXPECT_TRUE(Mentions(s, c.field)) << c.field << ": " << s.message();
    EXPECT_TRUE(Mentions(s, dir.Join(kManifestName))) << s.message();
  }
}

TEST(CheckpointCheckTest, WorkerPositionOfAnotherStepIsRefused) {
  TempDir dir;
  proto::CheckpointManifest m = WriteCheckpoint(dir.path(), false);
  proto::WorkerCheckpoint position;
  position.set_step(80);  // a file from a later checkpoint copied in, its entry updated
  auto entry = WriteWorkerPosition(Posix(), dir.path(), 1, position);
  ASSERT_TRUE(entry.ok());
  for (auto& f : *m.mutable_files()) {
    if (f.name() == entry->name()) f = *entry;
  }
  Status s = CheckManifestAgainstFiles(Posix(), dir.path(), m);
  EXPECT_TRUE(Mentions(s, "field step is 40, but")) << s.message();
  EXPECT_TRUE(Mentions(s, "worker-1.state is at step 80")) << s.message();
}

}  // namespace
}  // namespace tessera::checkpoint
