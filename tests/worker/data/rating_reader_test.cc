#include "worker/data/rating_reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace tessera::worker {
namespace {

using testing::TempDir;
using testing::WriteFile;

struct Rating {
  uint64_t user;
  uint64_t item;
  float rating;
  bool operator==(const Rating& o) const {
    return user == o.user && item == o.item && rating == o.rating;
  }
};

std::ostream& operator<<(std::ostream& os, const Rating& r) {
  return os << "{" << r.user << ", " << r.item << ", " << r.rating << "}";
}

std::vector<Rating> ToRows(const RatingData& d) {
  EXPECT_EQ(d.users.size(), d.size());
  EXPECT_EQ(d.items.size(), d.size());
  std::vector<Rating> rows;
  for (size_t k = 0; k < d.size(); ++k) rows.push_back({d.users[k], d.items[k], d.ratings[k]});
  return rows;
}

// Writes `text` to a file in `dir` and reads it with `options`; fails the test on error.
std::vector<Rating> ReadText(const TempDir& dir, const std::string& text,
                             const RatingReadOptions& options = {},
                             RatingFormat* detected = nullptr) {
  std::string path = dir.Join("ratings.txt");
  WriteFile(path, text);
  StatusOr<RatingReadResult> result = ReadRatings(path, options);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok()) return {};
  if (detected != nullptr) *detected = result->format;
  return ToRows(result->data);
}

RatingReadOptions WithFormat(RatingFormat format) {
  RatingReadOptions options;
  options.format = format;
  return options;
}

TEST(RatingFormatTest, NamesRoundTripThroughParse) {
  for (RatingFormat f : {RatingFormat::kAuto, RatingFormat::kTab, RatingFormat::kDat,
                         RatingFormat::kCsv, RatingFormat::kLibmf}) {
    StatusOr<RatingFormat> parsed = ParseRatingFormat(RatingFormatName(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
}

TEST(RatingFormatTest, UnknownNameIsInvalidArgumentListingChoices) {
  StatusOr<RatingFormat> parsed = ParseRatingFormat("parquet");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("parquet"), std::string::npos);
  EXPECT_NE(parsed.status().message().find("auto, tab, dat, csv, libmf"), std::string::npos);
}

TEST(RatingReaderTest, LibmfLinesParseWithAnyBlankSeparators) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 2, 3.5f}, {10, 20, 4.0f}, {0, 7, -0.25f}, {5, 6, 1e-3f}};
  EXPECT_EQ(ReadText(dir, "1 2 3.5\n10\t20   4\n  0 7 -0.25  \n5 6 1e-3\n",
                     WithFormat(RatingFormat::kLibmf)),
            expected);
}

TEST(RatingReaderTest, TabLinesParseAndIgnoreTimestamps) {
  TempDir dir;
  std::vector<Rating> expected = {{196, 242, 3}, {186, 302, 3.5f}};
  EXPECT_EQ(
      ReadText(dir, "196\t242\t3\t881250949\n186\t302\t3.5\n", WithFormat(RatingFormat::kTab)),
      expected);
}

TEST(RatingReaderTest, DatLinesParseAndIgnoreTimestamps) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 1193, 5}, {2, 661, 3}};
  EXPECT_EQ(ReadText(dir, "1::1193::5::978300760\n2::661::3\n", WithFormat(RatingFormat::kDat)),
            expected);
}

TEST(RatingReaderTest, CsvHeaderOnFirstLineIsSkipped) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 31, 2.5f}, {1, 1029, 3}};
  EXPECT_EQ(ReadText(dir, "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1\n",
                     WithFormat(RatingFormat::kCsv)),
            expected);
}

TEST(RatingReaderTest, CsvWithoutHeaderReadsFirstLineAsData) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 31, 2.5f}, {2, 3, 4}};
  EXPECT_EQ(ReadText(dir, "1,31,2.5\n2,3,4\n", WithFormat(RatingFormat::kCsv)), expected);
}

TEST(RatingReaderTest, CrlfLineEndsReadLikeLf) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 2, 3}, {4, 5, 6}};
  EXPECT_EQ(ReadText(dir, "1 2 3\r\n4 5 6\r\n"), expected);
  EXPECT_EQ(ReadText(dir, "1\t2\t3\t99\r\n4\t5\t6\r\n"), expected);
  EXPECT_EQ(ReadText(dir, "1::2::3::99\r\n4::5::6\r\n"), expected);
  EXPECT_EQ(ReadText(dir, "userId,movieId,rating\r\n1,2,3\r\n4,5,6\r\n"), expected);
}

TEST(RatingReaderTest, CrOnlyLineEndsReadEveryLine) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
  EXPECT_EQ(ReadText(dir, "1 2 3\r4 5 6\r7 8 9\r"), expected);
  EXPECT_EQ(ReadText(dir, "1 2 3\r4 5 6\r7 8 9"), expected);
  EXPECT_EQ(ReadText(dir, "1\t2\t3\t99\r4\t5\t6\r\r7\t8\t9\r"), expected);
  EXPECT_EQ(ReadText(dir, "userId,movieId,rating\r1,2,3\r4,5,6\r7,8,9\r"), expected);
  // Partitions split a CR-only file at its line ends too.
  std::string text;
  for (int i = 0; i < 100; ++i) text += std::to_string(i) + " 1 2.5\r";
  size_t total = 0;
  for (int p = 0; p < 3; ++p) {
    RatingReadOptions options;
    options.partition = p;
    options.num_partitions = 3;
    total += ReadText(dir, text, options).size();
  }
  EXPECT_EQ(total, 100u);
}

TEST(RatingReaderTest, RatingsAtTheBoundAreRead) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 2, 1e6f}, {3, 4, -1e6f}, {5, 6, 1e-30f}};
  EXPECT_EQ(ReadText(dir, "1 2 1e6\n3 4 -1000000\n5 6 1e-30\n"), expected);
}

TEST(RatingReaderTest, Utf8ByteOrderMarkIsSkipped) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 2, 3}, {4, 5, 6}};
  RatingFormat format;
  EXPECT_EQ(ReadText(dir,
                     "\xEF\xBB\xBF"
                     "1 2 3\n4 5 6\n",
                     {}, &format),
            expected);
  EXPECT_EQ(format, RatingFormat::kLibmf);
  EXPECT_EQ(ReadText(dir, "\xEF\xBB\xBFuserId,movieId,rating\n1,2,3\n4,5,6\n", {}, &format),
            expected);
  EXPECT_EQ(format, RatingFormat::kCsv);
}

TEST(RatingReaderTest, BlankLinesAndMissingFinalNewlineAreSkipped) {
  TempDir dir;
  std::vector<Rating> expected = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
  EXPECT_EQ(ReadText(dir, "\n1 2 3\n\n  \t \n4 5 6\r\n\r\n7 8 9"), expected);
  EXPECT_EQ(ReadText(dir, "1\t2\t3\n\n4\t5\t6\n7\t8\t9"), expected);
}

TEST(RatingReaderTest, EmptyFileHasNoRatings) {
  TempDir dir;
  EXPECT_TRUE(ReadText(dir, "").empty());
  EXPECT_TRUE(ReadText(dir, "\n\n").empty());
  EXPECT_TRUE(ReadText(dir, "userId,movieId,rating\n").empty());
}

TEST(RatingReaderTest, LargestIdsFitInUint64) {
  TempDir dir;
  std::vector<Rating> expected = {{UINT64_MAX, 0, 1}};
  EXPECT_EQ(ReadText(dir, "18446744073709551615 0 1\n"), expected);
}

TEST(RatingReaderTest, AutoDetectionLooksAtFirstNonEmptyLine) {
  struct Case {
    std::string text;
    RatingFormat format;
  };
  std::vector<Case> cases = {
      {"1::2::3::4\n", RatingFormat::kDat},
      {"\n\n1,2,3\n", RatingFormat::kCsv},
      {"userId,movieId,rating,timestamp\n1,2,3,4\n", RatingFormat::kCsv},
      {"1\t2\t3\t4\n", RatingFormat::kTab},
      {"1 2 3\n", RatingFormat::kLibmf},
      {"", RatingFormat::kLibmf},
  };
  TempDir dir;
  for (const Case& c : cases) {
    RatingFormat format = RatingFormat::kAuto;
    ReadText(dir, c.text, {}, &format);
    EXPECT_EQ(format, c.format) << c.text;
  }
}

struct BadLineCase {
  RatingFormat format;
  std::string line;
  std::string reason;
};

std::vector<BadLineCase> BadLineCases() {
  return {
      {RatingFormat::kLibmf, "abc 2 3", "bad user id"},
      {RatingFormat::kLibmf, "-3 2 3", "bad user id"},
      {RatingFormat::kLibmf, "1.5 2 3", "bad user id"},
      {RatingFormat::kLibmf, "18446744073709551616 2 3", "user id does not fit in uint64"},
      {RatingFormat::kLibmf, "1 2x 3", "bad item id"},
      {RatingFormat::kLibmf, "1 99999999999999999999 3", "item id does not fit in uint64"},
      {RatingFormat::kLibmf, "1", "missing item id"},
      {RatingFormat::kLibmf, "1 2", "missing rating"},
      {RatingFormat::kLibmf, "1 2 nan", "rating is not finite"},
      {RatingFormat::kLibmf, "1 2 inf", "rating is not finite"},
      {RatingFormat::kLibmf, "1 2 1e999", "rating out of range"},
      {RatingFormat::kLibmf, "1 2 3e38", "rating out of range (ratings must be finite, within"},
      {RatingFormat::kLibmf, "1 2 -1000001", "rating out of range"},
      {RatingFormat::kLibmf, "1 2 3.5abc", "bad rating"},
      {RatingFormat::kLibmf, "1 2 3 4", "too many fields"},
      {RatingFormat::kTab, "1\t2", "missing rating"},
      {RatingFormat::kTab, "1\t\t3", "missing item id"},
      {RatingFormat::kTab, "1 2 3", "bad user id"},
      {RatingFormat::kTab, "1\tx\t3\t4", "bad item id"},
      {RatingFormat::kDat, "1::2", "missing rating"},
      {RatingFormat::kDat, "1:2::3", "bad user id"},
      {RatingFormat::kDat, "1::2::-nan::4", "rating is not finite"},
      {RatingFormat::kTab, "1\t2\t3e38\t4", "rating out of range"},
      {RatingFormat::kCsv, "1,,3", "missing item id"},
      {RatingFormat::kCsv, "userId,movieId,rating", "bad user id"},  // header only on line 1
      {RatingFormat::kCsv, "1,2,three", "bad rating"},
  };
}

std::string Separator(RatingFormat format) {
  switch (format) {
    case RatingFormat::kTab:
      return "\t";
    case RatingFormat::kDat:
      return "::";
    case RatingFormat::kCsv:
      return ",";
    default:
      return " ";
  }
}

// Five lines, the third one bad.
std::string FiveLinesWithBadThird(const BadLineCase& c) {
  std::string sep = Separator(c.format);
  std::string good = "1" + sep + "2" + sep + "3\n";
  return good + good + c.line + "\n" + good + good;
}

TEST(RatingReaderTest, EachKindOfBadLineIsRejectedWithFileAndLine) {
  TempDir dir;
  std::string path = dir.Join("bad.txt");
  for (const BadLineCase& c : BadLineCases()) {
    WriteFile(path, FiveLinesWithBadThird(c));
    for (int threads : {1, 2, 3}) {
      RatingReadOptions options = WithFormat(c.format);
      options.num_threads = threads;
      StatusOr<RatingReadResult> result = ReadRatings(path, options);
      ASSERT_FALSE(result.ok()) << c.line;
      EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
      const std::string& message = result.status().message();
      EXPECT_EQ(message.rfind(path + ":3: " + c.reason, 0), 0u) << message;
    }
  }
}

TEST(RatingReaderTest, BadLineMessageShowsTheLineTruncated) {
  TempDir dir;
  std::string path = dir.Join("bad.txt");
  WriteFile(path, "1 2 3\n7 8 x" + std::string(500, 'y') + "\n");
  StatusOr<RatingReadResult> result = ReadRatings(path, {});
  ASSERT_FALSE(result.ok());
  const std::string& message = result.status().message();
  EXPECT_NE(message.find(":2: bad rating (7 8 xyyy"), std::string::npos) << message;
  EXPECT_LT(message.size(), path.size() + 100);
}

// 100 lines of equal length; line `bad_line` (1-based) has a bad rating.
std::string HundredLines(int bad_line) {
  std::string text;
  for (int line = 1; line <= 100; ++line) {
    text += std::to_string(100 + line) + " 7 " + (line == bad_line ? "x.x" : "2.5") + "\n";
  }
  return text;
}

TEST(RatingReaderTest, BadLineInLaterPartitionReportsLineNumberInWholeFile) {
  TempDir dir;
  std::string path = dir.Join("bad.txt");
  WriteFile(path, HundredLines(80));
  for (int threads : {1, 2, 3}) {
    RatingReadOptions options;
    options.num_threads = threads;
    options.partition = 3;
    options.num_partitions = 4;
    StatusOr<RatingReadResult> result = ReadRatings(path, options);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().message().rfind(path + ":80: bad rating (180 7 x.x)", 0), 0u)
        << result.status().message();
    options.partition = 0;  // lines 1-25 are fine
    StatusOr<RatingReadResult> first = ReadRatings(path, options);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    EXPECT_EQ(first->data.size(), 25u);
  }
}

TEST(RatingReaderTest, SkipBadLinesCountsThemAndKeepsTheRest) {
  TempDir dir;
  std::string path = dir.Join("bad.txt");
  WriteFile(path, "1 2 3\nx 2 3\n4 5 6\n\n7 8 nan\n9 9 9\n");
  for (int threads : {1, 2, 3}) {
    RatingReadOptions options;
    options.skip_bad_lines = true;
    options.num_threads = threads;
    StatusOr<RatingReadResult> result = ReadRatings(path, options);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->bad_lines, 2);
    EXPECT_EQ(result->first_bad_line, path + ":2: bad user id (x 2 3)");
    std::vector<Rating> expected = {{1, 2, 3}, {4, 5, 6}, {9, 9, 9}};
    EXPECT_EQ(ToRows(result->data), expected);
  }
}

TEST(RatingReaderTest, MissingFileIsNotFound) {
  TempDir dir;
  StatusOr<RatingReadResult> result = ReadRatings(dir.Join("nope.txt"), {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
  EXPECT_NE(result.status().message().find("nope.txt"), std::string::npos);
}

TEST(RatingReaderTest, DirectoryIsInvalidArgument) {
  TempDir dir;
  StatusOr<RatingReadResult> result = ReadRatings(dir.path(), {});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
}

TEST(RatingReaderTest, InvalidOptionsAreInvalidArgument) {
  TempDir dir;
  std::string path = dir.Join("r.txt");
  WriteFile(path, "1 2 3\n");
  std::vector<RatingReadOptions> bad(4);
  bad[0].num_threads = 0;
  bad[1].num_partitions = 0;
  bad[2].partition = 2;
  bad[2].num_partitions = 2;
  bad[3].partition = -1;
  for (const RatingReadOptions& options : bad) {
    EXPECT_EQ(ReadRatings(path, options).status().code(), StatusCode::kInvalidArgument);
  }
}

// Random LIBMF-ish text with varied line lengths, blank lines and CRLF, `lines` lines.
std::string RandomText(int lines, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string text;
  for (int line = 0; line < lines; ++line) {
    switch (rng() % 8) {
      case 0:
        text += "\n";
        break;
      case 1:
        text += std::to_string(rng()) + " " + std::to_string(rng() % 10) + " 1\r\n";
        break;
      default:
        text += std::to_string(rng() % 1000) + "\t" + std::to_string(rng() % 100000) + " " +
                std::to_string(static_cast<double>(rng() % 1000) / 8) + "\n";
    }
  }
  if (lines > 0 && rng() % 2 == 0 && text.back() == '\n') text.pop_back();  // no final newline
  return text;
}

// Reads partitions 0..n-1 and concatenates them.
std::vector<Rating> ReadAllPartitions(const std::string& path, int num_partitions, int threads,
                                      RatingFormat format = RatingFormat::kAuto) {
  std::vector<Rating> all;
  for (int p = 0; p < num_partitions; ++p) {
    RatingReadOptions options = WithFormat(format);
    options.num_threads = threads;
    options.partition = p;
    options.num_partitions = num_partitions;
    StatusOr<RatingReadResult> result = ReadRatings(path, options);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    if (!result.ok()) return {};
    std::vector<Rating> rows = ToRows(result->data);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  return all;
}

TEST(RatingReaderTest, PartitionsTogetherEqualTheWholeFileInOrder) {
  TempDir dir;
  std::string path = dir.Join("r.txt");
  for (int lines : {0, 1, 2, 3, 5, 17, 1000}) {
    std::string text = RandomText(lines, /*seed=*/lines);
    WriteFile(path, text);
    RatingReadOptions whole_options = WithFormat(RatingFormat::kLibmf);
    whole_options.num_threads = 1;
    StatusOr<RatingReadResult> whole = ReadRatings(path, whole_options);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    std::vector<Rating> expected = ToRows(whole->data);
    EXPECT_GE(expected.size(), static_cast<size_t>(lines) / 2);
    for (int num_partitions : {1, 2, 3, 4, 7, 16}) {
      for (int threads : {1, 2, 3}) {
        EXPECT_EQ(ReadAllPartitions(path, num_partitions, threads, RatingFormat::kLibmf), expected)
            << lines << " lines, " << num_partitions << " partitions, " << threads << " threads";
      }
    }
  }
}

TEST(RatingReaderTest, CsvHeaderAndBomAreSkippedOnlyOnceOverPartitions) {
  TempDir dir;
  std::string path = dir.Join("r.csv");
  WriteFile(path, "\xEF\xBB\xBFuserId,movieId,rating\n1,2,3\n4,5,6\n");
  std::vector<Rating> expected = {{1, 2, 3}, {4, 5, 6}};
  for (int num_partitions : {1, 2, 3, 8, 64}) {
    EXPECT_EQ(ReadAllPartitions(path, num_partitions, 2), expected) << num_partitions;
  }
}

TEST(RatingReaderTest, ReadsMovieLens100kWhenSharedDataExists) {
  std::string data_dir = testing::SharedDataDir();
  if (data_dir.empty()) GTEST_SKIP() << "TESSERA_SHARED_DATA not set";
  StatusOr<RatingReadResult> result = ReadRatings(data_dir + "/ml-100k/u.data", {});
  if (!result.ok() && result.status().code() == StatusCode::kNotFound) {
    GTEST_SKIP() << data_dir << "/ml-100k/u.data not found";
  }
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->format, RatingFormat::kTab);
  ASSERT_EQ(result->data.size(), 100000u);
  EXPECT_EQ(result->data.users[0], 196u);
  EXPECT_EQ(result->data.items[0], 242u);
  EXPECT_EQ(result->data.ratings[0], 3.0f);
}

}  // namespace
}  // namespace tessera::worker
