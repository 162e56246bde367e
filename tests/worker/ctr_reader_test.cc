#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"
#include "worker/ctr_data.h"

namespace tessera::worker {
namespace {

using testing::TempDir;
using testing::WriteFile;

// One row of a CtrBlock, for comparisons.
struct Row {
  float label = 0;
  std::vector<float> dense;
  std::vector<uint64_t> keys;
  std::vector<float> values;
  bool operator==(const Row& o) const {
    return label == o.label && dense == o.dense && keys == o.keys && values == o.values;
  }
};

std::ostream& operator<<(std::ostream& os, const Row& r) {
  os << "{label " << r.label << ", dense";
  for (float d : r.dense) os << " " << d;
  os << ", keys";
  for (size_t i = 0; i < r.keys.size(); ++i)
    os << " " << std::hex << r.keys[i] << std::dec << ":" << r.values[i];
  return os << "}";
}

// Splits a block into rows, checking its array sizes against the schema.
std::vector<Row> ToRows(const CtrBlock& b, const CtrSchema& schema) {
  std::vector<Row> rows;
  const size_t nd = static_cast<size_t>(schema.num_dense);
  EXPECT_EQ(b.dense.size(), b.size() * nd);
  EXPECT_EQ(b.keys.size(), b.values.size());
  if (schema.multi_hot) {
    EXPECT_EQ(b.offsets.size(), b.size() + 1);
    if (b.offsets.size() != b.size() + 1) return rows;
  } else {
    EXPECT_TRUE(b.offsets.empty());
    EXPECT_EQ(b.keys.size(), b.size() * static_cast<size_t>(schema.num_fields));
  }
  for (size_t r = 0; r < b.size(); ++r) {
    Row row;
    row.label = b.labels[r];
    row.dense.assign(b.dense.begin() + r * nd, b.dense.begin() + (r + 1) * nd);
    size_t begin = schema.multi_hot ? b.offsets[r] : r * schema.num_fields;
    size_t end = schema.multi_hot ? b.offsets[r + 1] : (r + 1) * schema.num_fields;
    row.keys.assign(b.keys.begin() + begin, b.keys.begin() + end);
    row.values.assign(b.values.begin() + begin, b.values.begin() + end);
    rows.push_back(row);
  }
  return rows;
}

CtrReadOptions Options(CtrFormat format = CtrFormat::kAuto, uint64_t seed = 0) {
  CtrReadOptions o;
  o.format = format;
  o.hash_seed = seed;
  return o;
}

// Reads `path` whole; fails the test on error.
std::vector<Row> ReadRows(const std::string& path, const CtrReadOptions& options,
                          CtrSchema* schema_out = nullptr) {
  CtrSchema schema;
  StatusOr<CtrBlock> block = CtrReader::ReadAll(path, options, &schema);
  EXPECT_TRUE(block.ok()) << block.status().ToString();
  if (!block.ok()) return {};
  if (schema_out != nullptr) *schema_out = schema;
  return ToRows(*block, schema);
}

std::vector<Row> ReadText(const TempDir& dir, const std::string& text,
                          const CtrReadOptions& options, CtrSchema* schema = nullptr) {
  std::string path = dir.Join("data.txt");
  WriteFile(path, text);
  return ReadRows(path, options, schema);
}

// The error of reading `text` whole, or OK.
Status ReadError(const std::string& path, const std::string& text, const CtrReadOptions& options) {
  WriteFile(path, text);
  StatusOr<CtrBlock> block = CtrReader::ReadAll(path, options, nullptr);
  return block.status();
}

// A Criteo line from its 40 fields.
std::string CriteoLine(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i > 0 ? "\t" : "") + fields[i];
  return line;
}

// label, 13 ints, 26 categoricals.
std::vector<std::string> CriteoFields(int label, std::vector<std::string> ints,
                                      std::vector<std::string> cats) {
  std::vector<std::string> f = {std::to_string(label)};
  ints.resize(kCriteoDense);
  cats.resize(kCriteoCategorical);
  f.insert(f.end(), ints.begin(), ints.end());
  f.insert(f.end(), cats.begin(), cats.end());
  return f;
}

// `lines` random Criteo lines: missing values, negative ints, either case of hex.
std::string RandomCriteo(int lines, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int n = 0; n < lines; ++n) {
    std::vector<std::string> ints;
    std::vector<std::string> cats;
    for (int i = 0; i < kCriteoDense; ++i) {
      int r = static_cast<int>(rng() % 10);
      ints.push_back(r == 0 ? "" : std::to_string(static_cast<int>(rng() % 5000) - 3));
    }
    for (int k = 0; k < kCriteoCategorical; ++k) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), rng() % 7 == 0 ? "%08X" : "%08x",
                    static_cast<unsigned>(rng() % 300));
      cats.push_back(rng() % 9 == 0 ? "" : buf);
    }
    text += CriteoLine(CriteoFields(static_cast<int>(rng() % 2), ints, cats)) + "\n";
  }
  return text;
}

// `lines` random libsvm lines with `fixed` features each, or 1..8 when fixed is 0.
std::string RandomLibsvm(int lines, int fixed, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int n = 0; n < lines; ++n) {
    text += rng() % 2 == 0 ? "-1" : "+1";
    int count = fixed > 0 ? fixed : 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < count; ++i) {
      text += " " + std::to_string(rng() % 1000) + ":" + (rng() % 3 == 0 ? "0.5" : "1");
    }
    text += "\n";
  }
  return text;
}

// --- Formats and hashing -----------------------------------------------------------------------

TEST(CtrFormatTest, NamesRoundTripThroughParse) {
  for (CtrFormat f : {CtrFormat::kAuto, CtrFormat::kCriteo, CtrFormat::kLibsvm, CtrFormat::kLibffm,
                      CtrFormat::kCache}) {
    StatusOr<CtrFormat> parsed = ParseCtrFormat(CtrFormatName(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
}

TEST(CtrFormatTest, UnknownNameIsInvalidArgumentListingChoices) {
  StatusOr<CtrFormat> parsed = ParseCtrFormat("parquet");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("auto, criteo, libsvm, libffm, cache"),
            std::string::npos);
}

// Golden values computed by an independent Python implementation of
// Mix64(Mix64(seed ^ Mix64(field)) ^ FNV-1a-64(value)) (SplitMix64 finaliser; Mix64(0) is
// SplitMix64's published first output 0xe220a8397b1dcdaf, FNV-1a-64("a") = 0xaf63dc4c8601ec8c).
TEST(HashFeatureTest, StringKeysMatchGoldenValues) {
  EXPECT_EQ(HashFeature(0, 0, std::string_view("")), 0x7dc2c42b173ebf65ULL);
  EXPECT_EQ(HashFeature(0, 0, std::string_view("68fd1e64")), 0x4bc693bf6c9f1963ULL);
  EXPECT_EQ(HashFeature(0, 25, std::string_view("68fd1e64")), 0x2ea436fa4efebcb3ULL);
  EXPECT_EQ(HashFeature(42, 3, std::string_view("80e26c9b")), 0xd66021da610ca378ULL);
  EXPECT_EQ(HashFeature(0xdeadbeefcafef00dULL, 7, std::string_view("hello world")),
            0xbd12248330abb852ULL);
}

TEST(HashFeatureTest, NumericKeysMatchGoldenValues) {
  EXPECT_EQ(HashFeature(0, 0, uint64_t{0}), 0x238275bc38fcbe91ULL);
  EXPECT_EQ(HashFeature(0, 1, uint64_t{5041}), 0xda941f541e89857eULL);
  EXPECT_EQ(HashFeature(42, 30, uint64_t{3}), 0x5f5a44eb1f35c31dULL);
  EXPECT_EQ(HashFeature(0, 0, ~uint64_t{0}), 0xb6fe22f87b0fa15aULL);
}

TEST(HashFeatureTest, SeedAndFieldGiveSeparateKeySpaces) {
  uint64_t key = HashFeature(1, 2, std::string_view("abc"));
  EXPECT_NE(key, HashFeature(2, 2, std::string_view("abc")));
  EXPECT_NE(key, HashFeature(1, 3, std::string_view("abc")));
  EXPECT_NE(key, HashFeature(1, 2, std::string_view("abd")));
  EXPECT_EQ(key, HashFeature(1, 2, std::string_view("abc")));
}

TEST(HashFeatureTest, NumericValuesOfOneFieldNeverCollide) {
  std::set<uint64_t> keys;
  for (uint64_t v = 0; v < 100000; ++v) keys.insert(HashFeature(7, 3, v));
  EXPECT_EQ(keys.size(), 100000u);
}

TEST(CriteoBucketTest, SmallValuesAreTheirOwnBuckets) {
  for (int64_t x : {std::numeric_limits<int64_t>::min(), int64_t{-3}, int64_t{-1}, int64_t{0},
                    int64_t{1}, int64_t{2}}) {
    EXPECT_EQ(CriteoBucket(x), x);
  }
}

TEST(CriteoBucketTest, LargerValuesAreTwoPlusFloorOfLogSquared) {
  for (int64_t x = 3; x < 100000; ++x) {
    double l = std::log(static_cast<double>(x));
    ASSERT_EQ(CriteoBucket(x), 2 + static_cast<int64_t>(std::floor(l * l))) << x;
  }
}

TEST(CriteoBucketTest, BucketEdgesAreExactAndCappedAt493) {
  // ceil(e^sqrt(b)) computed with 60-digit decimals.
  struct Edge {
    int64_t b;
    int64_t x;
  };
  for (Edge e : {Edge{1, 3}, Edge{2, 5}, Edge{12, 32}, Edge{100, 22027}, Edge{473, 2787924282},
                 Edge{490, 4106938188}, Edge{491, 4200711725}}) {
    EXPECT_EQ(CriteoBucket(e.x), 2 + e.b) << e.x;
    if (e.x > 3) {
      EXPECT_EQ(CriteoBucket(e.x - 1), 1 + e.b) << e.x - 1;
    }
  }
  EXPECT_EQ(CriteoBucket(std::numeric_limits<int64_t>::max()), 493);
}

// --- Criteo ------------------------------------------------------------------------------------

TEST(CriteoReaderTest, ReadsLabelDenseLogsAndHashedCategoricals) {
  TempDir dir;
  std::vector<std::string> cats(kCriteoCategorical, "68fd1e64");
  cats[1] = "80e26c9b";
  std::string text = CriteoLine(CriteoFields(1, {"1", "0", "5", "1382"}, cats)) + "\n" +
                     CriteoLine(CriteoFields(0, {"2"}, cats)) + "\n";
  CtrSchema schema;
  std::vector<Row> rows = ReadText(dir, text, Options(CtrFormat::kCriteo, 9), &schema);
  EXPECT_EQ(schema.format, CtrFormat::kCriteo);
  EXPECT_EQ(schema.num_dense, 13);
  EXPECT_EQ(schema.num_fields, 26);
  EXPECT_FALSE(schema.multi_hot);
  EXPECT_EQ(schema.Describe(), "criteo: 13 dense, 26 categorical fields");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].label, 1.0f);
  EXPECT_EQ(rows[1].label, 0.0f);
  EXPECT_FLOAT_EQ(rows[0].dense[0], std::log(2.0f));
  EXPECT_EQ(rows[0].dense[1], 0.0f);
  EXPECT_FLOAT_EQ(rows[0].dense[2], std::log(6.0f));
  EXPECT_FLOAT_EQ(rows[0].dense[3], std::log(1383.0f));
  for (int k = 0; k < kCriteoCategorical; ++k) {
    EXPECT_EQ(rows[0].keys[k], HashFeature(9, static_cast<uint32_t>(k), cats[k])) << k;
    EXPECT_EQ(rows[0].values[k], 1.0f);
  }
  EXPECT_EQ(rows[0].keys, rows[1].keys);
}

TEST(CriteoReaderTest, MissingFieldsGiveZeroDenseAndTheEmptyStringKeyOfTheirField) {
  TempDir dir;
  // Every value empty: the line is the label and 39 tabs (its last field empty too).
  std::string text = CriteoLine(CriteoFields(0, {}, {})) + "\n";
  ASSERT_EQ(std::count(text.begin(), text.end(), '\t'), 39);
  std::vector<Row> rows = ReadText(dir, text, Options());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].dense, std::vector<float>(13, 0.0f));
  for (int k = 0; k < kCriteoCategorical; ++k) {
    EXPECT_EQ(rows[0].keys[k], HashFeature(0, static_cast<uint32_t>(k), std::string_view("")));
  }
  EXPECT_NE(rows[0].keys[0], rows[0].keys[1]);
}

TEST(CriteoReaderTest, NegativeIntegersGiveZeroDense) {
  TempDir dir;
  std::vector<Row> rows =
      ReadText(dir, CriteoLine(CriteoFields(0, {"-1", "-3", "+4"}, {"a"})) + "\n", Options());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].dense[0], 0.0f);
  EXPECT_EQ(rows[0].dense[1], 0.0f);
  EXPECT_FLOAT_EQ(rows[0].dense[2], std::log(5.0f));
}

TEST(CriteoReaderTest, HexIsReadInEitherCaseAndAnyLength) {
  TempDir dir;
  std::vector<std::string> upper(kCriteoCategorical, "ABCDEF12");
  std::vector<std::string> lower(kCriteoCategorical, "abcdef12");
  upper[1] = "0";
  lower[1] = "0";
  upper[2] = "123456789abcdef0123";
  lower[2] = "123456789abcdef0123";
  std::string text =
      CriteoLine(CriteoFields(0, {}, upper)) + "\n" + CriteoLine(CriteoFields(0, {}, lower)) + "\n";
  std::vector<Row> rows = ReadText(dir, text, Options());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].keys, rows[1].keys);
  EXPECT_EQ(rows[0].keys[0], HashFeature(0, 0, std::string_view("abcdef12")));
  EXPECT_EQ(rows[0].keys[2], HashFeature(0, 2, std::string_view("123456789abcdef0123")));
}

TEST(CriteoReaderTest, CrlfLinesReadLikeLfLines) {
  TempDir dir;
  std::string lf = RandomCriteo(50, 1);
  std::string crlf;
  for (char c : lf) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  std::vector<Row> expected = ReadText(dir, lf, Options());
  EXPECT_EQ(ReadText(dir, crlf, Options()), expected);
  EXPECT_EQ(expected.size(), 50u);
}

TEST(CriteoReaderTest, BlankLinesAndAByteOrderMarkAreSkipped) {
  TempDir dir;
  std::string line = CriteoLine(CriteoFields(1, {"3"}, {"ff"}));
  std::vector<Row> rows = ReadText(dir, "\xEF\xBB\xBF" + line + "\n\n  \r\n" + line, Options());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], rows[1]);
}

TEST(CriteoReaderTest, BucketizedIntegersAreThirteenMoreFields) {
  TempDir dir;
  std::string text = CriteoLine(CriteoFields(1, {"0", "-2", "3", "", "100000"}, {"1"})) + "\n";
  CtrReadOptions options = Options(CtrFormat::kAuto, 5);
  options.bucketize_integers = true;
  CtrSchema schema;
  std::vector<Row> rows = ReadText(dir, text, options, &schema);
  EXPECT_EQ(schema.num_fields, 39);
  EXPECT_EQ(schema.Describe(),
            "criteo: 13 dense, 39 categorical fields (26 + 13 bucketised integers)");
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].keys.size(), 39u);
  EXPECT_EQ(rows[0].keys[0], HashFeature(5, 0, std::string_view("1")));
  EXPECT_EQ(rows[0].keys[26], HashFeature(5, 26, uint64_t{0}));
  EXPECT_EQ(rows[0].keys[27], HashFeature(5, 27, static_cast<uint64_t>(int64_t{-2})));
  EXPECT_EQ(rows[0].keys[28], HashFeature(5, 28, uint64_t{3}));
  EXPECT_EQ(rows[0].keys[29], HashFeature(5, 29, std::string_view("")));
  EXPECT_EQ(rows[0].keys[30], HashFeature(5, 30, static_cast<uint64_t>(CriteoBucket(100000))));
  EXPECT_EQ(rows[0].values, std::vector<float>(39, 1.0f));
  // The dense part is unchanged by bucketising.
  options.bucketize_integers = false;
  std::vector<Row> plain = ReadText(dir, text, options);
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].dense, rows[0].dense);
}

struct BadLineCase {
  std::string name;
  std::string line;
  std::string reason;
};

std::vector<BadLineCase> CriteoBadLines() {
  std::vector<std::string> good = CriteoFields(1, {"1", "2"}, {"ab", "cd"});
  auto with = [&](size_t i, const std::string& v) {
    std::vector<std::string> f = good;
    f[i] = v;
    return CriteoLine(f);
  };
  std::vector<std::string> short_fields(good.begin(), good.end() - 1);
  std::vector<std::string> long_fields = good;
  long_fields.push_back("");
  return {
      {"too few fields", CriteoLine(short_fields), "expected 40 tab-separated fields, found 39"},
      {"too many fields", CriteoLine(long_fields), "expected 40 tab-separated fields, found 41"},
      {"label 2", with(0, "2"), "label must be 0 or 1"},
      {"label empty", with(0, ""), "label must be 0 or 1"},
      {"int not numeric", with(3, "abc"), "I3 is not an integer"},
      {"int with a fraction", with(1, "1.0"), "I1 is not an integer"},
      {"int lone sign", with(13, "-"), "I13 is not an integer"},
      {"int too large", with(2, "9223372036854775808"), "I2 does not fit in 64 bits"},
      {"int too many digits", with(2, "123456789012345678901234"), "I2 does not fit in 64 bits"},
      {"bad hex", with(14, "xyz1"), "C1 is not hex"},
      {"bad hex in last field", with(39, "12g4"), "C26 is not hex"},
      {"hex with a space", with(20, "12 4"), "C7 is not hex"},
  };
}

TEST(CriteoReaderTest, EachKindOfBadLineNamesFileLineAndReason) {
  TempDir dir;
  std::string path = dir.Join("bad.tsv");
  std::string good = CriteoLine(CriteoFields(0, {"7"}, {"1"}));
  for (const BadLineCase& c : CriteoBadLines()) {
    SCOPED_TRACE(c.name);
    Status s = ReadError(path, good + "\n" + good + "\r\n" + c.line + "\n" + good + "\n",
                         Options(CtrFormat::kCriteo));
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message().rfind(path + ":3: " + c.reason + " (", 0), 0u) << s.message();
  }
}

TEST(CriteoReaderTest, ExtremeIntegersParse) {
  TempDir dir;
  std::vector<Row> rows = ReadText(
      dir, CriteoLine(CriteoFields(0, {"9223372036854775807", "-9223372036854775808"}, {})) + "\n",
      Options());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FLOAT_EQ(rows[0].dense[0], static_cast<float>(std::log1p(9223372036854775807.0)));
  EXPECT_EQ(rows[0].dense[1], 0.0f);
}

TEST(CriteoReaderTest, BadLineInALaterPartitionNamesItsLineInTheWholeFile) {
  TempDir dir;
  std::string path = dir.Join("bad.tsv");
  std::string text = RandomCriteo(200, 2) + "0\tbad\n" + RandomCriteo(10, 3);
  WriteFile(path, text);
  CtrReadOptions options = Options();
  options.num_partitions = 2;
  options.partition = 1;
  StatusOr<CtrBlock> block = CtrReader::ReadAll(path, options, nullptr);
  ASSERT_FALSE(block.ok());
  EXPECT_EQ(block.status().message(),
            path + ":201: expected 40 tab-separated fields, found 2 (0\\tbad)");
  options.partition = 0;
  EXPECT_TRUE(CtrReader::ReadAll(path, options, nullptr).ok());
}

TEST(CriteoReaderTest, SkipBadLinesCountsThemAndKeepsTheRest) {
  TempDir dir;
  std::string path = dir.Join("bad.tsv");
  std::string good = RandomCriteo(30, 4);
  std::string text = good + "1\tx\n" + CriteoLine(CriteoFields(0, {"q"}, {})) + "\n" + good;
  WriteFile(path, text);
  CtrReadOptions options = Options();
  options.skip_bad_lines = true;
  options.chunk_bytes = 512;
  StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  CtrBlock block;
  size_t rows = 0;
  for (;;) {
    StatusOr<bool> more = (*reader)->Next(&block);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    rows += block.size();
  }
  EXPECT_EQ(rows, 60u);
  EXPECT_EQ((*reader)->bad_lines(), 2);
  EXPECT_EQ((*reader)->first_bad_line(),
            path + ":31: expected 40 tab-separated fields, found 2 (1\\tx)");
  // ReadAll gives the same rows.
  StatusOr<CtrBlock> all = CtrReader::ReadAll(path, options, nullptr);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 60u);
}

// --- libsvm / libffm ---------------------------------------------------------------------------

TEST(LibsvmReaderTest, EqualFeatureCountsMakeOneFieldPerPosition) {
  TempDir dir;
  CtrSchema schema;
  std::vector<Row> rows =
      ReadText(dir, "1 3:1 7:0.5 9:1\n-1 4:1 7:2 1:-1.5\n+1\t3:1\t8:1e-2 9:1  \n0 1:1 2:1 3:1\n",
               Options(CtrFormat::kAuto, 11), &schema);
  EXPECT_EQ(schema.format, CtrFormat::kLibsvm);
  EXPECT_FALSE(schema.multi_hot);
  EXPECT_EQ(schema.num_fields, 3);
  EXPECT_EQ(schema.num_dense, 0);
  EXPECT_EQ(schema.Describe(), "libsvm: 3 features per line -> 3 fields");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].label, 1.0f);
  EXPECT_EQ(rows[1].label, 0.0f);
  EXPECT_EQ(rows[2].label, 1.0f);
  EXPECT_EQ(rows[3].label, 0.0f);
  EXPECT_EQ(rows[1].keys,
            (std::vector<uint64_t>{HashFeature(11, 0, uint64_t{4}), HashFeature(11, 1, uint64_t{7}),
                                   HashFeature(11, 2, uint64_t{1})}));
  EXPECT_EQ(rows[1].values, (std::vector<float>{1.0f, 2.0f, -1.5f}));
  EXPECT_EQ(rows[2].values, (std::vector<float>{1.0f, 1e-2f, 1.0f}));
  // The same index in another position is another key.
  EXPECT_NE(rows[0].keys[0], rows[3].keys[2]);
  EXPECT_EQ(rows[0].keys[0], rows[2].keys[0]);
}

TEST(LibsvmReaderTest, VaryingFeatureCountsMakeOneSumPooledField) {
  TempDir dir;
  CtrSchema schema;
  std::vector<Row> rows =
      ReadText(dir, "1 3:1 7:0.5\n0\n-1 4:1 7:2 1:1 9:3\n", Options(CtrFormat::kLibsvm), &schema);
  EXPECT_TRUE(schema.multi_hot);
  EXPECT_EQ(schema.num_fields, 1);
  EXPECT_EQ(schema.max_keys, 4);
  EXPECT_EQ(schema.Describe(),
            "libsvm: varying feature counts (up to 4 per line) -> 1 sum-pooled field");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].keys, (std::vector<uint64_t>{HashFeature(0, 0, uint64_t{3}),
                                                 HashFeature(0, 0, uint64_t{7})}));
  EXPECT_TRUE(rows[1].keys.empty());
  EXPECT_EQ(rows[2].keys.size(), 4u);
  EXPECT_EQ(rows[2].keys[1], rows[0].keys[1]);  // index 7 anywhere in the line: one key
  EXPECT_EQ(rows[2].values, (std::vector<float>{1, 2, 1, 3}));
}

TEST(LibsvmReaderTest, LayoutIsDecidedOverTheWholeFileForEveryPartition) {
  TempDir dir;
  std::string path = dir.Join("data.libsvm");
  // Only the first line differs; partition 1 never reads it but must agree it is multi-hot.
  WriteFile(path, "1 1:1\n" + RandomLibsvm(500, 3, 5));
  for (int p = 0; p < 2; ++p) {
    CtrReadOptions options = Options();
    options.num_partitions = 2;
    options.partition = p;
    StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
    ASSERT_TRUE(reader.ok());
    EXPECT_TRUE((*reader)->schema().multi_hot) << p;
  }
}

TEST(LibsvmReaderTest, CrlfLinesReadLikeLfLines) {
  TempDir dir;
  std::vector<Row> lf = ReadText(dir, "1 1:1 2:1\n-1 3:1 5:1\n", Options());
  EXPECT_EQ(ReadText(dir, "1 1:1 2:1\r\n-1 3:1 5:1\r\n", Options()), lf);
  EXPECT_EQ(lf.size(), 2u);
}

TEST(LibffmReaderTest, FieldNumbersGoIntoTheKeysAndPositionsMakeTheFields) {
  TempDir dir;
  CtrSchema schema;
  std::vector<Row> rows = ReadText(dir, "1 0:5:1 1:7:1 4:9:0.25\n0 0:5:1 2:7:1 4:9:1\n",
                                   Options(CtrFormat::kAuto, 3), &schema);
  EXPECT_EQ(schema.format, CtrFormat::kLibffm);
  EXPECT_FALSE(schema.multi_hot);
  EXPECT_EQ(schema.num_fields, 3);
  EXPECT_EQ(schema.Describe(), "libffm: 3 features per line -> 3 fields");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].keys,
            (std::vector<uint64_t>{HashFeature(3, 0, uint64_t{5}), HashFeature(3, 1, uint64_t{7}),
                                   HashFeature(3, 4, uint64_t{9})}));
  EXPECT_EQ(rows[0].values, (std::vector<float>{1, 1, 0.25f}));
  EXPECT_EQ(rows[1].keys[1], HashFeature(3, 2, uint64_t{7}));
}

TEST(LibffmReaderTest, VaryingFeatureCountsMakeOneSumPooledField) {
  TempDir dir;
  CtrSchema schema;
  std::vector<Row> rows = ReadText(dir, "1 0:5:1\n0 0:5:1 3:2:1\n", Options(), &schema);
  EXPECT_EQ(schema.format, CtrFormat::kLibffm);
  EXPECT_TRUE(schema.multi_hot);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].keys, (std::vector<uint64_t>{HashFeature(0, 0, uint64_t{5}),
                                                 HashFeature(0, 3, uint64_t{2})}));
}

TEST(LibsvmReaderTest, EachKindOfBadTokenNamesFileLineAndReason) {
  TempDir dir;
  std::string path = dir.Join("bad.libsvm");
  struct Case {
    CtrFormat format;
    std::string line;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {CtrFormat::kLibsvm, "2 1:1 2:1", "label must be 0, 1, -1 or +1"},
      {CtrFormat::kLibsvm, "-0 1:1 2:1", "label must be 0, 1, -1 or +1"},
      {CtrFormat::kLibsvm, "yes 1:1 2:1", "label must be 0, 1, -1 or +1"},
      {CtrFormat::kLibsvm, "1 5 2:1", "feature 1 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1:1 a:1", "feature 2 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1:x 2:1", "feature 1 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1: 2:1", "feature 1 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1:1 2:nan", "feature 2 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1:1 -2:1", "feature 2 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1:1 2:1:1", "feature 2 is not idx:val"},
      {CtrFormat::kLibsvm, "1 1:1 99999999999999999999:1", "feature 2 is not idx:val"},
      {CtrFormat::kLibffm, "1 1:1:1 2:1", "feature 2 is not field:idx:val"},
      {CtrFormat::kLibffm, "1 1:1:1 4294967296:1:1", "feature 2 is not field:idx:val"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    std::string good = c.format == CtrFormat::kLibffm ? "0 1:2:1 3:4:1" : "0 1:1 2:1";
    Status s = ReadError(path, good + "\n" + c.line + "\r\n" + good + "\n", Options(c.format));
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), path + ":2: " + c.reason + " (" + c.line + ")");
  }
}

TEST(LibsvmReaderTest, SkipBadLinesCountsThem) {
  TempDir dir;
  CtrReadOptions options = Options(CtrFormat::kLibsvm);
  options.skip_bad_lines = true;
  std::string path = dir.Join("bad.libsvm");
  WriteFile(path, "1 1:1\nx 2:1\n0 3:1\n1 4:y\n");
  StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
  ASSERT_TRUE(reader.ok());
  CtrBlock block;
  StatusOr<bool> more = (*reader)->Next(&block);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(block.size(), 2u);
  EXPECT_EQ((*reader)->bad_lines(), 2);
  EXPECT_EQ((*reader)->first_bad_line(), path + ":2: label must be 0, 1, -1 or +1 (x 2:1)");
}

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
