// The binary cache's block checksums and record checks (worker/data/ctr_cache_format.h), and
// `tessera convert`'s output refusals: nothing damaged or invalid is ever trained on.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "tests/testing/test_util.h"
#include "tests/worker/data/ctr_reader_test_util.h"
#include "worker/data/ctr_cache.h"
#include "worker/data/ctr_reader.h"

namespace tessera::worker {
namespace {

using test_util::Options;
using test_util::RandomCriteo;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

constexpr size_t kRecordBytes = 4 + 4 * 13 + 12 * 26;  // Criteo without bucketised integers

// A cache of `rows` random Criteo rows in `dir` (several checksummed blocks for 1000 rows).
std::string MakeCache(const TempDir& dir, int rows) {
  WriteFile(dir.Join("data.tsv"), RandomCriteo(rows, 11));
  const std::string cache = dir.Join("data.cache");
  Status s = WriteCtrCache(dir.Join("data.tsv"), Options(), cache);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return cache;
}

// Reads the whole cache with small chunks on 2 threads: the first error, or OK.
Status ReadEverything(const std::string& path, int64_t* rows = nullptr) {
  CtrReadOptions options = Options();
  options.chunk_bytes = 10000;
  auto reader = CtrReader::Open(path, options);
  if (!reader.ok()) return reader.status();
  CtrBlock block;
  int64_t n = 0;
  for (;;) {
    StatusOr<bool> more = (*reader)->Next(&block);
    if (!more.ok()) return more.status();
    if (!*more) break;
    n += static_cast<int64_t>(block.size());
  }
  if (rows != nullptr) *rows = n;
  return OkStatus();
}

uint32_t Crc(const char* p, size_t n) {
  return static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(p), static_cast<uInt>(n)));
}

// After an edit of record bytes: recomputes every block CRC, the table's CRC and the header's
// checksum, so that only the record checks can refuse the file (a cache written by a buggy or
// hostile writer).
void Reseal(std::string* bytes) {
  auto header = DecodeCtrCacheHeader("x", bytes->data(), bytes->size());
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  const uint64_t record_bytes = header->RecordBytes();
  char* records = bytes->data() + kCtrCacheHeaderBytes;
  char* table = records + header->num_records * record_bytes;
  for (uint64_t b = 0; b < header->NumBlocks(); ++b) {
    const uint64_t first = b * header->block_records;
    const uint64_t last = std::min<uint64_t>(first + header->block_records, header->num_records);
    const uint32_t crc = Crc(records + first * record_bytes, (last - first) * record_bytes);
    std::memcpy(table + 4 * b, &crc, 4);
  }
  header->table_crc = Crc(table, 4 * header->NumBlocks());
  EncodeCtrCacheHeader(*header, bytes->data());
}

TEST(CtrCacheCheckTest, IntactCacheWithSeveralBlocksReadsEveryRow) {
  TempDir dir;
  const std::string cache = MakeCache(dir, 1000);
  auto header = DecodeCtrCacheHeader(cache, ReadFile(cache).data(), ReadFile(cache).size());
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->NumBlocks(), 6u);  // 178 records per block
  int64_t rows = 0;
  Status s = ReadEverything(cache, &rows);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(rows, 1000);
}

// The defect: 64 flipped bytes anywhere in a cache were trained on silently.
TEST(CtrCacheCheckTest, SixtyFourFlippedBytesAnywhereAreRefusedBeforeAnyRowOfThemIsRead) {
  TempDir dir;
  const std::string cache = MakeCache(dir, 1000);
  const std::string intact = ReadFile(cache);
  std::mt19937_64 rng(20261206);
  std::vector<size_t> offsets = {0,
                                 60,
                                 120,
                                 kCtrCacheHeaderBytes,
                                 kCtrCacheHeaderBytes + 5,
                                 intact.size() / 2,
                                 intact.size() - 64 - 24,
                                 intact.size() - 64};
  for (int i = 0; i < 40; ++i) offsets.push_back(rng() % (intact.size() - 64));
  for (size_t at : offsets) {
    std::string bytes = intact;
    for (size_t i = 0; i < 64; ++i) bytes[at + i] = static_cast<char>(~bytes[at + i]);
    WriteFile(cache, bytes);
    Status s = ReadEverything(cache);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "64 bytes flipped at " << at;
    // Without its magic the file is read as text, and refused as such.
    if (at >= 8) {
      EXPECT_EQ(s.message().rfind("cache " + cache + ": ", 0), 0u) << s.message();
    }
  }
  // A flip inside the records names the block and the records it holds.
  std::string bytes = intact;
  bytes[kCtrCacheHeaderBytes + 200 * kRecordBytes + 7] ^= 0x10;  // record 200: block 1
  WriteFile(cache, bytes);
  Status s = ReadEverything(cache);
  EXPECT_NE(s.message().find("block 1 (records 178..355): checksum mismatch"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("rebuild it with tessera convert"), std::string::npos);
}

TEST(CtrCacheCheckTest, RowsBeforeADamagedBlockAreReadAndTheDamagedOnesNever) {
  TempDir dir;
  const std::string cache = MakeCache(dir, 1000);
  std::string bytes = ReadFile(cache);
  bytes[kCtrCacheHeaderBytes + 900 * kRecordBytes] ^= 0x01;  // block 5
  WriteFile(cache, bytes);
  CtrReadOptions options = Options();
  options.chunk_bytes = 178 * kRecordBytes;  // one block per Next
  auto reader = CtrReader::Open(cache, options);
  ASSERT_TRUE(reader.ok());
  CtrBlock block;
  for (int b = 0; b < 5; ++b) {
    auto more = (*reader)->Next(&block);
    ASSERT_TRUE(more.ok() && *more) << b;
  }
  auto bad = (*reader)->Next(&block);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(block.size(), 0u);
}

// The defect: labels 2.0 and -7.0 and a NaN feature in a cache were accepted.
TEST(CtrCacheCheckTest, InvalidRecordsAreRefusedNamingTheFileAndTheRecord) {
  struct Case {
    size_t offset;  // in record 321
    float value;
    std::string why;
  };
  const Case cases[] = {
      {0, 2.0f, "record 321: label 2 is not 0 or 1"},
      {0, -7.0f, "record 321: label -7 is not 0 or 1"},
      {0, NAN, "record 321: label nan is not 0 or 1"},
      {4 + 4 * 3, NAN, "record 321: dense feature 4 is nan"},
      {4 + 4 * 12, INFINITY, "record 321: dense feature 13 is inf"},
      {4, 3e38f, "record 321: dense feature 1 is 3e+38, beyond +-1e+06"},
      {4 + 4 * 13 + 8 * 26 + 4 * 5, NAN, "record 321: value of feature 6 is nan"},
  };
  for (const Case& c : cases) {
    TempDir dir;
    const std::string cache = MakeCache(dir, 1000);
    std::string bytes = ReadFile(cache);
    std::memcpy(&bytes[kCtrCacheHeaderBytes + 321 * kRecordBytes + c.offset], &c.value, 4);
    Reseal(&bytes);
    WriteFile(cache, bytes);
    Status s = ReadEverything(cache);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.why;
    EXPECT_EQ(s.message(), "cache " + cache + ": " + c.why);
  }
  // A one-hot record holding the padding key.
  TempDir dir;
  const std::string cache = MakeCache(dir, 1000);
  std::string bytes = ReadFile(cache);
  std::memcpy(&bytes[kCtrCacheHeaderBytes + 7 * kRecordBytes + 4 + 4 * 13 + 8 * 2],
              &kCtrCachePadKey, 8);
  Reseal(&bytes);
  WriteFile(cache, bytes);
  EXPECT_NE(ReadEverything(cache).message().find("record 7: key 2 is the padding key"),
            std::string::npos);
}

TEST(CtrCacheCheckTest, CacheOfTheFormerVersionWithoutChecksumsIsRefusedSayingHowToRebuild) {
  TempDir dir;
  const std::string cache = MakeCache(dir, 10);
  std::string bytes = ReadFile(cache);
  bytes[8] = 1;  // version 1
  WriteFile(cache, bytes);
  Status s = ReadEverything(cache);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("the cache has version 1, this build reads version 2: rebuild it "
                             "with tessera convert"),
            std::string::npos)
      << s.message();
}

// The defect: `convert --input X --output X` destroyed X.
TEST(CtrCacheCheckTest, ConvertOntoItsInputOrADeviceIsRefusedAndTheInputKept) {
  TempDir dir;
  const std::string input = dir.Join("data.tsv");
  const std::string text = RandomCriteo(20, 3);
  WriteFile(input, text);
  Status same = WriteCtrCache(input, Options(), input);
  EXPECT_EQ(same.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(same.message().find("is the --input " + input), std::string::npos) << same.message();
  EXPECT_EQ(ReadFile(input), text);
  Status device = WriteCtrCache(input, Options(), "/dev/null");
  EXPECT_NE(device.message().find("--output /dev/null is a character device"), std::string::npos)
      << device.message();
  struct stat st;
  ASSERT_EQ(stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_FALSE(WriteCtrCache(input, Options(), dir.path()).ok());
}

}  // namespace
}  // namespace tessera::worker
