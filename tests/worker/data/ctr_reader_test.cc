// CtrReader across formats: detection, options, partitions, streaming, positions and the shared
// sample data.
#include "worker/data/ctr_reader.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"
#include "tests/worker/data/ctr_reader_test_util.h"

namespace tessera::worker {
namespace {

using ::tessera::testing::TempDir;
using ::tessera::testing::WriteFile;
using test_util::CriteoFields;
using test_util::CriteoLine;
using test_util::Options;
using test_util::RandomCriteo;
using test_util::RandomLibsvm;
using test_util::ReadError;
using test_util::ReadRows;
using test_util::ReadText;
using test_util::Row;
using test_util::ToRows;

// --- Detection, partitions, streaming, positions ------------------------------------------------

TEST(CtrReaderTest, AutoDetectsEachTextFormat) {
  TempDir dir;
  struct Case {
    std::string text;
    CtrFormat format;
  };
  for (const Case& c :
       {Case{"\n" + RandomCriteo(2, 1), CtrFormat::kCriteo},
        Case{"1 2:1 3:1\n", CtrFormat::kLibsvm}, Case{"1 0:2:1 1:3:1\n", CtrFormat::kLibffm},
        Case{"", CtrFormat::kLibsvm}}) {
    CtrSchema schema;
    ReadText(dir, c.text, Options(), &schema);
    EXPECT_EQ(schema.format, c.format) << c.text;
  }
}

TEST(CtrReaderTest, MissingFileIsNotFoundAndBadOptionsAreInvalidArgument) {
  TempDir dir;
  StatusOr<std::unique_ptr<CtrReader>> missing = CtrReader::Open(dir.Join("nope"), Options());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  std::string path = dir.Join("x");
  WriteFile(path, "1 1:1\n");
  CtrReadOptions options = Options();
  options.partition = 2;
  options.num_partitions = 2;
  EXPECT_EQ(CtrReader::Open(path, options).status().code(), StatusCode::kInvalidArgument);
  options = Options();
  options.num_threads = 0;
  EXPECT_EQ(CtrReader::Open(path, options).status().code(), StatusCode::kInvalidArgument);
  options = Options();
  options.chunk_bytes = 0;
  EXPECT_EQ(CtrReader::Open(path, options).status().code(), StatusCode::kInvalidArgument);
}

// Concatenates the rows of partitions 0..n-1 read with `threads` threads.
std::vector<Row> ReadPartitions(const std::string& path, int n, int threads,
                                CtrReadOptions options) {
  std::vector<Row> rows;
  options.num_partitions = n;
  options.num_threads = threads;
  for (int p = 0; p < n; ++p) {
    options.partition = p;
    std::vector<Row> part = ReadRows(path, options);
    rows.insert(rows.end(), part.begin(), part.end());
  }
  return rows;
}

TEST(CtrReaderTest, PartitionsTogetherReadEveryRowOnceForAnyThreadCount) {
  TempDir dir;
  for (const std::string& text :
       {RandomCriteo(3000, 6), RandomLibsvm(20000, 0, 7), RandomLibsvm(20000, 4, 8)}) {
    std::string path = dir.Join("data.txt");
    WriteFile(path, text);
    std::vector<Row> whole = ReadRows(path, Options());
    ASSERT_GT(whole.size(), 600u);
    for (int n : {1, 2, 3, 7, 64}) {
      for (int threads : {1, 2, 5}) {
        EXPECT_EQ(ReadPartitions(path, n, threads, Options()), whole)
            << n << " partitions, " << threads << " threads";
      }
    }
  }
}

// Reads the partition with Next until the end.
std::vector<Row> Stream(CtrReader* reader, size_t* calls = nullptr) {
  std::vector<Row> rows;
  CtrBlock block;
  for (;;) {
    StatusOr<bool> more = reader->Next(&block);
    EXPECT_TRUE(more.ok()) << more.status().ToString();
    if (!more.ok() || !*more) break;
    EXPECT_GT(block.size(), 0u);
    std::vector<Row> part = ToRows(block, reader->schema());
    rows.insert(rows.end(), part.begin(), part.end());
    if (calls != nullptr) ++*calls;
  }
  EXPECT_EQ(block.size(), 0u);
  return rows;
}

TEST(CtrReaderTest, StreamingInSmallChunksEqualsReadAll) {
  TempDir dir;
  for (const std::string& text : {RandomCriteo(2000, 9), RandomLibsvm(500, 0, 10)}) {
    std::string path = dir.Join("data.txt");
    WriteFile(path, text);
    std::vector<Row> whole = ReadRows(path, Options());
    for (size_t chunk_bytes : {size_t{1}, size_t{100}, size_t{5000}, size_t{1} << 20}) {
      for (int threads : {1, 3}) {
        CtrReadOptions options = Options();
        options.chunk_bytes = chunk_bytes;
        options.num_threads = threads;
        StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
        ASSERT_TRUE(reader.ok());
        size_t calls = 0;
        EXPECT_EQ(Stream(reader->get(), &calls), whole) << chunk_bytes << " " << threads;
        if (chunk_bytes == 1) {
          EXPECT_EQ(calls, whole.size());
        }
      }
    }
  }
}

TEST(CtrReaderTest, SeekToASavedPositionResumesExactly) {
  TempDir dir;
  std::string path = dir.Join("data.tsv");
  WriteFile(path, RandomCriteo(400, 11));
  CtrReadOptions options = Options();
  options.chunk_bytes = 3000;
  options.num_partitions = 2;
  options.partition = 1;
  StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
  ASSERT_TRUE(reader.ok());
  const int64_t start = (*reader)->position();
  EXPECT_GT(start, 0);
  CtrBlock block;
  ASSERT_TRUE(*(*reader)->Next(&block));
  ASSERT_TRUE(*(*reader)->Next(&block));
  const int64_t saved = (*reader)->position();
  std::vector<Row> rest = Stream(reader->get());
  ASSERT_FALSE(rest.empty());

  StatusOr<std::unique_ptr<CtrReader>> resumed = CtrReader::Open(path, options);
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE((*resumed)->Seek(saved).ok());
  EXPECT_EQ(Stream(resumed->get()), rest);

  // Rewind reads the partition again.
  (*resumed)->Rewind();
  EXPECT_EQ((*resumed)->position(), start);
  EXPECT_EQ(Stream(resumed->get()), ReadRows(path, options));

  // Not a line start, or outside the partition.
  EXPECT_EQ((*resumed)->Seek(saved + 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*resumed)->Seek(start - 1).code(), StatusCode::kInvalidArgument);
}

// --- Shared sample data -------------------------------------------------------------------------

TEST(CtrReaderTest, CriteoSampleHas9999RowsAnd2181Positives) {
  std::string dir = testing::SharedDataDir();
  if (dir.empty()) GTEST_SKIP() << "TESSERA_SHARED_DATA is not set; skipping the Criteo sample";
  std::string path = dir + "/criteo/train_head9999.tsv";
  CtrSchema schema;
  std::vector<Row> rows = ReadRows(path, Options(), &schema);
  EXPECT_EQ(schema.format, CtrFormat::kCriteo);
  ASSERT_EQ(rows.size(), 9999u);
  int positives = 0;
  for (const Row& r : rows) positives += r.label == 1.0f;
  EXPECT_EQ(positives, 2181);
  // First line: 0 1 1 5 0 1382 4 15 2 181 1 2 <empty> 2 68fd1e64 80e26c9b ...
  EXPECT_FLOAT_EQ(rows[0].dense[4], std::log(1383.0f));
  EXPECT_EQ(rows[0].dense[11], 0.0f);
  EXPECT_EQ(rows[0].keys[0], HashFeature(0, 0, std::string_view("68fd1e64")));
  EXPECT_EQ(rows[0].keys[21], HashFeature(0, 21, std::string_view("")));
  EXPECT_EQ(ReadPartitions(path, 5, 2, Options()), rows);
}

TEST(CtrReaderTest, FrappeTestSplitIs28860OneHotRowsOf10Fields) {
  std::string dir = testing::SharedDataDir();
  if (dir.empty()) GTEST_SKIP() << "TESSERA_SHARED_DATA is not set; skipping the Frappe sample";
  std::string path = dir + "/frappe/frappe.test.libfm";
  CtrSchema schema;
  std::vector<Row> rows = ReadRows(path, Options(), &schema);
  EXPECT_EQ(schema.format, CtrFormat::kLibsvm);
  EXPECT_FALSE(schema.multi_hot);
  EXPECT_EQ(schema.num_fields, 10);
  EXPECT_EQ(schema.Describe(), "libsvm: 10 features per line -> 10 fields");
  ASSERT_EQ(rows.size(), 28860u);
  int positives = 0;
  for (const Row& r : rows) positives += r.label == 1.0f;
  EXPECT_EQ(positives, 9536);
  // First line: -1 204:1 4798:1 ...
  EXPECT_EQ(rows[0].label, 0.0f);
  EXPECT_EQ(rows[0].keys[0], HashFeature(0, 0, uint64_t{204}));
  EXPECT_EQ(rows[0].keys[1], HashFeature(0, 1, uint64_t{4798}));
  EXPECT_EQ(ReadPartitions(path, 3, 3, Options()), rows);
}

}  // namespace
}  // namespace tessera::worker
