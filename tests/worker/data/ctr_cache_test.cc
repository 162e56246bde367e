#include "worker/data/ctr_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"
#include "worker/data/ctr_reader.h"

namespace tessera::worker {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

CtrReadOptions Options(CtrFormat format = CtrFormat::kAuto, uint64_t seed = 0) {
  CtrReadOptions o;
  o.format = format;
  o.hash_seed = seed;
  return o;
}

bool SameBlock(const CtrBlock& a, const CtrBlock& b) {
  return a.labels == b.labels && a.dense == b.dense && a.keys == b.keys && a.values == b.values &&
         a.offsets == b.offsets;
}

CtrBlock MustReadAll(const std::string& path, const CtrReadOptions& options,
                     CtrSchema* schema = nullptr) {
  StatusOr<CtrBlock> block = CtrReader::ReadAll(path, options, schema);
  EXPECT_TRUE(block.ok()) << block.status().ToString();
  return block.ok() ? *block : CtrBlock();
}

std::string RandomCriteo(int lines, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int n = 0; n < lines; ++n) {
    text += std::to_string(rng() % 2);
    for (int i = 0; i < kCriteoDense; ++i) {
      text += "\t";
      if (rng() % 8 != 0) text += std::to_string(static_cast<int>(rng() % 3000) - 2);
    }
    for (int k = 0; k < kCriteoCategorical; ++k) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), "%08x", static_cast<unsigned>(rng() % 500));
      text += "\t" + (rng() % 10 == 0 ? std::string() : std::string(buf));
    }
    text += "\n";
  }
  return text;
}

// Labels -1/+1; `fixed` features per line, or 1..max_features when fixed is 0.
std::string RandomLibsvm(int lines, int fixed, int max_features, bool ffm, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int n = 0; n < lines; ++n) {
    text += rng() % 2 == 0 ? "-1" : "1";
    int count = fixed > 0 ? fixed : 1 + static_cast<int>(rng() % max_features);
    for (int i = 0; i < count; ++i) {
      text += " ";
      if (ffm) text += std::to_string(i) + ":";
      text += std::to_string(rng() % 2000) + ":" + (rng() % 4 == 0 ? "0.25" : "1");
    }
    text += "\r\n";
  }
  return text;
}

// Writes `text`, converts it with `options` and checks that the cache reads back as the text.
void ExpectRoundTrip(const std::string& text, const CtrReadOptions& options,
                     const std::string& expected_description) {
  TempDir dir;
  std::string input = dir.Join("data.txt");
  std::string cache = dir.Join("data.cache");
  WriteFile(input, text);
  Status s = WriteCtrCache(input, options, cache);
  ASSERT_TRUE(s.ok()) << s.ToString();
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    entries += !e.path().empty();
  EXPECT_EQ(entries, 2u) << "the temporary file is left behind";
  CtrSchema text_schema;
  CtrSchema cache_schema;
  CtrBlock from_text = MustReadAll(input, options, &text_schema);
  CtrReadOptions auto_options = options;
  auto_options.format = CtrFormat::kAuto;
  CtrBlock from_cache = MustReadAll(cache, auto_options, &cache_schema);
  EXPECT_TRUE(SameBlock(from_text, from_cache));
  EXPECT_GT(from_text.size(), 0u);
  EXPECT_EQ(cache_schema.format, CtrFormat::kCache);
  EXPECT_EQ(cache_schema.source_format, text_schema.format);
  EXPECT_EQ(cache_schema.num_dense, text_schema.num_dense);
  EXPECT_EQ(cache_schema.num_fields, text_schema.num_fields);
  EXPECT_EQ(cache_schema.multi_hot, text_schema.multi_hot);
  EXPECT_EQ(cache_schema.num_rows, static_cast<int64_t>(from_text.size()));
  EXPECT_EQ(cache_schema.Describe(), expected_description);
  EXPECT_TRUE(CheckCtrSchema(text_schema, cache_schema).ok());

  // format: cache explicitly, partitions, threads and small chunks give the same rows.
  CtrReadOptions cache_options = options;
  cache_options.format = CtrFormat::kCache;
  for (int n : {1, 3}) {
    for (int threads : {1, 4}) {
      CtrBlock all;
      if (cache_schema.multi_hot) all.offsets.push_back(0);
      for (int p = 0; p < n; ++p) {
        cache_options.num_partitions = n;
        cache_options.partition = p;
        cache_options.num_threads = threads;
        cache_options.chunk_bytes = 1000;
        StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(cache, cache_options);
        ASSERT_TRUE(reader.ok()) << reader.status().ToString();
        CtrBlock block;
        for (;;) {
          StatusOr<bool> more = (*reader)->Next(&block);
          ASSERT_TRUE(more.ok());
          if (!*more) break;
          size_t key_base = all.keys.size();
          all.labels.insert(all.labels.end(), block.labels.begin(), block.labels.end());
          all.dense.insert(all.dense.end(), block.dense.begin(), block.dense.end());
          all.keys.insert(all.keys.end(), block.keys.begin(), block.keys.end());
          all.values.insert(all.values.end(), block.values.begin(), block.values.end());
          for (size_t r = 1; r < block.offsets.size(); ++r) {
            all.offsets.push_back(static_cast<uint32_t>(key_base + block.offsets[r]));
          }
        }
      }
      EXPECT_TRUE(SameBlock(all, from_text)) << n << " partitions, " << threads << " threads";
    }
  }
}

TEST(CtrCacheTest, CriteoRoundTripEqualsTheTextRead) {
  ExpectRoundTrip(RandomCriteo(2000, 1), Options(CtrFormat::kAuto, 77),
                  "cache of 2000 rows from criteo: 13 dense, 26 categorical fields");
}

TEST(CtrCacheTest, BucketizedCriteoRoundTripEqualsTheTextRead) {
  CtrReadOptions options = Options();
  options.bucketize_integers = true;
  ExpectRoundTrip(RandomCriteo(500, 2), options,
                  "cache of 500 rows from criteo: 13 dense, 39 categorical fields "
                  "(26 + 13 bucketised integers)");
}

TEST(CtrCacheTest, OneHotLibsvmRoundTripEqualsTheTextRead) {
  ExpectRoundTrip(RandomLibsvm(1000, 10, 0, false, 3), Options(),
                  "cache of 1000 rows from libsvm: 10 features per line -> 10 fields");
}

TEST(CtrCacheTest, MultiHotLibsvmIsPaddedAndReadsBackUnpadded) {
  ExpectRoundTrip(RandomLibsvm(1000, 0, 12, false, 4), Options(CtrFormat::kLibsvm, 5),
                  "cache of 1000 rows from libsvm: varying feature counts (up to 12 per line) "
                  "-> 1 sum-pooled field");
}

TEST(CtrCacheTest, LibffmRoundTripEqualsTheTextRead) {
  ExpectRoundTrip(RandomLibsvm(800, 6, 0, true, 6), Options(),
                  "cache of 800 rows from libffm: 6 features per line -> 6 fields");
}

TEST(CtrCacheTest, SeekToASavedRecordResumesExactly) {
  TempDir dir;
  std::string input = dir.Join("data.tsv");
  std::string cache = dir.Join("data.cache");
  WriteFile(input, RandomCriteo(300, 7));
  ASSERT_TRUE(WriteCtrCache(input, Options(), cache).ok());
  CtrReadOptions options = Options();
  options.chunk_bytes = 4000;
  options.num_partitions = 2;
  options.partition = 1;
  StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(cache, options);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->position(), 150);  // records, not bytes
  CtrBlock block;
  ASSERT_TRUE(*(*reader)->Next(&block));
  const int64_t saved = (*reader)->position();
  EXPECT_EQ(saved, 150 + static_cast<int64_t>(block.size()));
  ASSERT_TRUE(*(*reader)->Next(&block));
  CtrBlock next = block;

  StatusOr<std::unique_ptr<CtrReader>> resumed = CtrReader::Open(cache, options);
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE((*resumed)->Seek(saved).ok());
  ASSERT_TRUE(*(*resumed)->Next(&block));
  EXPECT_TRUE(SameBlock(block, next));
  EXPECT_EQ((*resumed)->Seek(149).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE((*resumed)->Seek(300).ok());
  EXPECT_FALSE(*(*resumed)->Next(&block));
}

// Converts a small Criteo file in `dir` and returns the cache's path.
std::string MakeCache(const TempDir& dir, const CtrReadOptions& options) {
  std::string input = dir.Join("data.tsv");
  std::string cache = dir.Join("data.cache");
  WriteFile(input, RandomCriteo(100, 8));
  Status s = WriteCtrCache(input, options, cache);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return cache;
}

Status OpenError(const std::string& path, const CtrReadOptions& options) {
  return CtrReader::Open(path, options).status();
}

TEST(CtrCacheTest, CacheWithAnotherHashSeedIsRefusedNamingBothSeeds) {
  TempDir dir;
  std::string cache = MakeCache(dir, Options(CtrFormat::kAuto, 1));
  Status s = OpenError(cache, Options(CtrFormat::kAuto, 2));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "cache " + cache +
                             ": hash seed differs: the cache was written with 1, the options ask "
                             "for 2");
}

TEST(CtrCacheTest, CacheWithAnotherBucketizeSettingIsRefused) {
  TempDir dir;
  std::string cache = MakeCache(dir, Options());
  CtrReadOptions options = Options(CtrFormat::kCache);
  options.bucketize_integers = true;
  Status s = OpenError(cache, options);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "cache " + cache +
                             ": bucketize_integers differs: the cache was written with off, the "
                             "options ask for on");
}

TEST(CtrCacheTest, CorruptedHeaderIsRefusedByItsChecksum) {
  TempDir dir;
  std::string cache = MakeCache(dir, Options());
  std::string bytes = ReadFile(cache);
  bytes[48] ^= 0x01;  // the record count
  WriteFile(cache, bytes);
  Status s = OpenError(cache, Options());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("cache " + cache + ": header checksum mismatch (stored 0x", 0), 0u)
      << s.message();
  EXPECT_NE(s.message().find("the header is corrupt"), std::string::npos);
}

TEST(CtrCacheTest, TruncatedCacheIsRefusedWithTheSizes) {
  TempDir dir;
  std::string cache = MakeCache(dir, Options());
  std::string bytes = ReadFile(cache);
  const size_t record_bytes = 4 + 4 * 13 + 12 * 26;
  // One checksummed block (65536 / 368 = 178 records per block): one CRC-32 after the records.
  ASSERT_EQ(bytes.size(), kCtrCacheHeaderBytes + 100 * record_bytes + 4);
  WriteFile(cache, bytes.substr(0, bytes.size() - 10));
  Status s = OpenError(cache, Options());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "cache " + cache +
                             ": truncated: the header announces 100 records of 368 bytes, the "
                             "file holds 99 (" +
                             std::to_string(bytes.size() - 10) + " bytes in all)");
  WriteFile(cache, bytes.substr(0, 60));
  EXPECT_NE(OpenError(cache, Options()).message().find("truncated: 60 bytes, shorter than the"),
            std::string::npos);
}

TEST(CtrCacheTest, CacheOfAnotherVersionIsRefusedNamingBothVersions) {
  TempDir dir;
  std::string cache = MakeCache(dir, Options());
  std::string bytes = ReadFile(cache);
  CtrCacheHeader header;
  header.version = 3;
  header.source_format = CtrFormat::kCriteo;
  header.num_dense = 13;
  header.num_fields = 26;
  header.keys_per_record = 26;
  header.num_records = 100;
  EncodeCtrCacheHeader(header, bytes.data());
  WriteFile(cache, bytes);
  Status s = OpenError(cache, Options());
  EXPECT_EQ(s.message(), "cache " + cache +
                             ": version differs: the cache has version 3, this build reads "
                             "version 2: rebuild it with tessera convert");
}

TEST(CtrCacheTest, HeaderLayoutIsLittleEndianAtFixedOffsets) {
  TempDir dir;
  CtrReadOptions options = Options(CtrFormat::kAuto, 0x0102030405060708ULL);
  std::string bytes = ReadFile(MakeCache(dir, options));
  ASSERT_GE(bytes.size(), kCtrCacheHeaderBytes);
  EXPECT_EQ(bytes.substr(0, 8), "TSRCACHE");
  auto u32 = [&](size_t at) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  EXPECT_EQ(u32(8), 2u);     // version
  EXPECT_EQ(u32(12), 128u);  // header bytes
  EXPECT_EQ(u32(16), 1u);    // criteo
  EXPECT_EQ(u32(20), 13u);
  EXPECT_EQ(u32(24), 26u);
  EXPECT_EQ(u32(28), 0u);
  EXPECT_EQ(u32(32), 26u);
  EXPECT_EQ(u32(36), 0u);
  EXPECT_EQ(u32(40), 0x05060708u);  // seed, low half first
  EXPECT_EQ(u32(44), 0x01020304u);
  EXPECT_EQ(u32(48), 100u);  // records
  EXPECT_EQ(u32(56), 368u);  // record bytes
  EXPECT_EQ(u32(64), 178u);  // records per checksummed block
  EXPECT_EQ(bytes.size(), kCtrCacheHeaderBytes + 100 * 368 + 4);
  EXPECT_EQ(u32(68), static_cast<uint32_t>(crc32(  // CRC-32 of the table (one block)
                         0, reinterpret_cast<const Bytef*>(bytes.data() + bytes.size() - 4), 4)));
  EXPECT_EQ(u32(bytes.size() - 4),
            static_cast<uint32_t>(
                crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + 128), 100 * 368)));
}

TEST(CtrCacheTest, TextFileReadAsCacheIsRefused) {
  TempDir dir;
  std::string path = dir.Join("data.tsv");
  WriteFile(path, RandomCriteo(3, 9));
  Status s = OpenError(path, Options(CtrFormat::kCache));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not a Tessera cache"), std::string::npos) << s.message();
}

TEST(CtrCacheTest, MultiHotFileWithTooManyFeaturesPerLineIsRefused) {
  TempDir dir;
  std::string input = dir.Join("wide.libsvm");
  std::string wide = "1";
  for (int i = 0; i < kCtrCacheMaxKeys + 1; ++i) wide += " " + std::to_string(i) + ":1";
  WriteFile(input, "0 1:1\n" + wide + "\n");
  Status s = WriteCtrCache(input, Options(), dir.Join("out.cache"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("up to 1025 on a line"), std::string::npos) << s.message();
  EXPECT_NE(access(dir.Join("out.cache").c_str(), F_OK), 0);
}

TEST(CtrCacheTest, BadLineFailsTheConversionAndLeavesNoCache) {
  TempDir dir;
  std::string input = dir.Join("bad.libsvm");
  WriteFile(input, "1 1:1\n1 1:x\n");
  std::string output = dir.Join("out.cache");
  Status s = WriteCtrCache(input, Options(), output);
  EXPECT_EQ(s.message(), input + ":2: feature 1 is not idx:val (1 1:x)");
  EXPECT_NE(access(output.c_str(), F_OK), 0);
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    entries += !e.path().empty();
  EXPECT_EQ(entries, 1u) << "the temporary file is left behind";
  // With skip_bad_lines the good lines are converted.
  CtrReadOptions skip = Options();
  skip.skip_bad_lines = true;
  ASSERT_TRUE(WriteCtrCache(input, skip, output).ok());
  EXPECT_EQ(MustReadAll(output, Options()).size(), 1u);
}

TEST(CtrCacheTest, CriteoSampleRoundTripsThroughTheCache) {
  std::string dir = testing::SharedDataDir();
  if (dir.empty()) GTEST_SKIP() << "TESSERA_SHARED_DATA is not set; skipping the Criteo sample";
  std::string input = dir + "/criteo/train_head9999.tsv";
  TempDir tmp;
  std::string cache = tmp.Join("criteo.cache");
  CtrReadOptions options = Options(CtrFormat::kAuto, 2024);
  options.bucketize_integers = true;
  ASSERT_TRUE(WriteCtrCache(input, options, cache).ok());
  CtrBlock from_text = MustReadAll(input, options);
  CtrBlock from_cache = MustReadAll(cache, options);
  EXPECT_EQ(from_cache.size(), 9999u);
  EXPECT_TRUE(SameBlock(from_text, from_cache));
}

}  // namespace
}  // namespace tessera::worker
