// CtrReader on each text format: Criteo TSV, libsvm and libffm, their layouts and bad lines.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"
#include "tests/worker/data/ctr_reader_test_util.h"
#include "worker/data/ctr_reader.h"

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

TEST(CriteoReaderTest, NegativeIntegersGiveTheNegatedLogOfTheirMagnitude) {
  TempDir dir;
  std::vector<Row> rows = ReadText(
      dir,
      CriteoLine(CriteoFields(0, {"-1", "-3", "+4", "0", "-2000", "-9223372036854775808"}, {"a"})) +
          "\n",
      Options());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FLOAT_EQ(rows[0].dense[0], -std::log(2.0f));
  EXPECT_FLOAT_EQ(rows[0].dense[1], -std::log(4.0f));
  EXPECT_FLOAT_EQ(rows[0].dense[2], std::log(5.0f));
  EXPECT_EQ(rows[0].dense[3], 0.0f);
  EXPECT_FLOAT_EQ(rows[0].dense[4], -std::log(2001.0f));
  EXPECT_FLOAT_EQ(rows[0].dense[5], -static_cast<float>(std::log1p(9223372036854775808.0)));
  // -1 and 1 are told apart (the clip-then-log transform made -1 the same 0 as a 0).
  std::vector<Row> positive =
      ReadText(dir, CriteoLine(CriteoFields(0, {"1"}, {"a"})) + "\n", Options());
  EXPECT_EQ(positive[0].dense[0], -rows[0].dense[0]);
}

TEST(CriteoReaderTest, CrOnlyLinesReadLikeLfLines) {
  TempDir dir;
  std::string lf = RandomCriteo(50, 3);
  std::string cr = lf;
  std::replace(cr.begin(), cr.end(), '\n', '\r');
  std::vector<Row> expected = ReadText(dir, lf, Options());
  EXPECT_EQ(ReadText(dir, cr, Options()), expected);
  EXPECT_EQ(expected.size(), 50u);
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
  EXPECT_FLOAT_EQ(rows[0].dense[1], -static_cast<float>(std::log1p(9223372036854775808.0)));
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
      {CtrFormat::kLibsvm, "1 1:1 2:nan", "value of feature 2 is not finite or beyond +-1e6"},
      {CtrFormat::kLibsvm, "1 1:inf 2:1", "value of feature 1 is not finite or beyond +-1e6"},
      {CtrFormat::kLibsvm, "1 1:1 2:3e38", "value of feature 2 is not finite or beyond +-1e6"},
      {CtrFormat::kLibsvm, "1 1:1 2:-1e39", "value of feature 2 is not finite or beyond +-1e6"},
      {CtrFormat::kLibffm, "1 1:1:NaN 2:2:1", "value of feature 1 is not finite or beyond +-1e6"},
      {CtrFormat::kLibsvm, "nan 1:1 2:1", "label must be 0, 1, -1 or +1"},
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

}  // namespace
}  // namespace tessera::worker
