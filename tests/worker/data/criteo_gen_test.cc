#include "worker/data/criteo_gen.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/logging.h"
#include "tests/testing/test_util.h"

namespace tessera::worker {
namespace {

using testing::ReadFile;
using testing::TempDir;

constexpr size_t kFields = 40;  // label, I1..I13, C1..C26
constexpr size_t kFirstCategorical = 14;

CriteoGenOptions SmallOptions() {
  CriteoGenOptions o;
  o.rows = 20000;
  o.seed = 7;
  o.test_fraction = 0.2;
  return o;
}

// The number after "key": in truth.json; NaN if absent or null.
double JsonNumber(const std::string& json, const std::string& key) {
  size_t pos = json.find("\"" + key + "\": ");
  if (pos == std::string::npos) return std::nan("");
  return std::strtod(json.c_str() + pos + key.size() + 4, nullptr);
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

std::vector<std::string_view> SplitTabs(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t begin = 0;
  while (true) {
    size_t end = line.find('\t', begin);
    if (end == std::string_view::npos) {
      fields.push_back(line.substr(begin));
      return fields;
    }
    fields.push_back(line.substr(begin, end - begin));
    begin = end + 1;
  }
}

bool IsHexValue(std::string_view value) {
  return value.size() == 8 && std::all_of(value.begin(), value.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

class CriteoGenTest : public ::testing::Test {
 protected:
  void SetUp() override { logging::SetMinSeverity(logging::Severity::kWarning); }
  void TearDown() override { logging::SetMinSeverity(logging::Severity::kInfo); }
  TempDir dir_;
};

TEST_F(CriteoGenTest, WritesCriteoTsvWithFortyValidFieldsPerLine) {
  CriteoGenOptions o = SmallOptions();
  std::string out = dir_.Join("out/nested");
  ASSERT_TRUE(GenerateCriteo(o, out).ok());
  std::string json = ReadFile(out + "/truth.json");
  std::vector<int64_t> missing(kFields, 0);
  std::map<std::string_view, size_t> field_of_value;
  int64_t lines_total = 0;
  std::map<std::string, std::string> texts;  // outlives the views in field_of_value
  for (const char* name : {"/train.tsv", "/test.tsv"}) {
    const std::string& text = texts[name] = ReadFile(out + name);
    ASSERT_FALSE(text.empty());
    ASSERT_EQ(text.back(), '\n');
    std::vector<std::string_view> lines = SplitLines(text);
    int64_t positives = 0;
    for (std::string_view line : lines) {
      std::vector<std::string_view> fields = SplitTabs(line);
      ASSERT_EQ(fields.size(), kFields) << line;
      ASSERT_TRUE(fields[0] == "0" || fields[0] == "1") << line;
      positives += fields[0] == "1";
      for (size_t f = 1; f < kFields; ++f) {
        if (fields[f].empty()) {
          ++missing[f];
        } else if (f < kFirstCategorical) {
          int64_t count = -1;
          auto [end, ec] =
              std::from_chars(fields[f].data(), fields[f].data() + fields[f].size(), count);
          ASSERT_TRUE(ec == std::errc() && end == fields[f].data() + fields[f].size())
              << "I" << f << " = '" << fields[f] << "'";
          ASSERT_GE(count, 0) << line;
        } else {
          ASSERT_TRUE(IsHexValue(fields[f])) << "C" << f - 13 << " = '" << fields[f] << "'";
          // Values are distinct across fields, so a value names its field.
          auto [it, inserted] = field_of_value.emplace(fields[f], f);
          ASSERT_EQ(it->second, f) << fields[f] << " in C" << it->second - 13 << " and C" << f - 13;
        }
      }
    }
    lines_total += static_cast<int64_t>(lines.size());
    bool is_train = std::string(name) == "/train.tsv";
    EXPECT_EQ(JsonNumber(json, is_train ? "train_rows" : "test_rows"), lines.size()) << name;
    EXPECT_EQ(JsonNumber(json, is_train ? "train_positives" : "test_positives"), positives);
    if (!is_train) {
      EXPECT_NEAR(static_cast<double>(lines.size()) / o.rows, o.test_fraction, 0.01);
    }
  }
  EXPECT_EQ(lines_total, o.rows);
  // Criteo-like missing pattern: C22 (field 35) and I12 (field 12) are mostly empty, I2 and C1
  // never, and every categorical field has more than one value.
  EXPECT_NEAR(static_cast<double>(missing[35]) / o.rows, 0.76, 0.02);
  EXPECT_NEAR(static_cast<double>(missing[12]) / o.rows, 0.76, 0.02);
  EXPECT_EQ(missing[2], 0);
  EXPECT_EQ(missing[14], 0);
  std::vector<int64_t> values_per_field(kFields, 0);
  for (const auto& [value, field] : field_of_value) ++values_per_field[field];
  for (size_t f = kFirstCategorical; f < kFields; ++f) EXPECT_GE(values_per_field[f], 2) << f;
  EXPECT_GT(values_per_field[kFirstCategorical + 11], 500);  // C12: 100000 values, Zipf
}

TEST_F(CriteoGenTest, TruthHasOracleMetricsAndParametersInRange) {
  CriteoGenOptions o = SmallOptions();
  o.rows = 200000;
  ASSERT_TRUE(GenerateCriteo(o, dir_.path()).ok());
  std::string json = ReadFile(dir_.Join("truth.json"));
  for (const char* key : {"rows",
                          "train_rows",
                          "test_rows",
                          "train_positives",
                          "test_positives",
                          "positive_rate",
                          "train_positive_rate",
                          "test_positive_rate",
                          "oracle_auc",
                          "oracle_logloss",
                          "base_logloss",
                          "seed",
                          "test_fraction",
                          "target_ctr",
                          "signal_scale",
                          "vocab_scale",
                          "bias",
                          "logit_mean",
                          "logit_std",
                          "rarity_reference",
                          "interaction_rank",
                          "interaction_std"}) {
    EXPECT_FALSE(std::isnan(JsonNumber(json, key))) << key << " missing in " << json;
  }
  for (const char* key : {"interactions", "int_effects", "categorical_vocab_sizes",
                          "categorical_zipf", "categorical_missing_rates", "categorical_weight_std",
                          "int_log_means", "int_log_stds", "int_missing_rates"}) {
    EXPECT_NE(json.find("\"" + std::string(key) + "\": ["), std::string::npos) << key;
  }
  EXPECT_EQ(JsonNumber(json, "rows"), o.rows);
  EXPECT_EQ(JsonNumber(json, "seed"), o.seed);
  EXPECT_NEAR(JsonNumber(json, "positive_rate"), o.target_ctr, 0.01);
  double auc = JsonNumber(json, "oracle_auc");
  EXPECT_GT(auc, 0.75);
  EXPECT_LT(auc, 0.85);
  // The true probabilities beat predicting the base rate, by a margin typical of real CTR data.
  double logloss = JsonNumber(json, "oracle_logloss");
  double base = JsonNumber(json, "base_logloss");
  EXPECT_LT(logloss, 0.9 * base);
  EXPECT_GT(logloss, 0.5 * base);
  EXPECT_NE(json.find("[\"C17\", \"C23\"]"), std::string::npos) << json;
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.find(",\n}"), std::string::npos) << "trailing comma: " << json;
}

TEST_F(CriteoGenTest, SameSeedGivesIdenticalBytesAndDifferentSeedDoesNot) {
  CriteoGenOptions o = SmallOptions();
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("a")).ok());
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("b")).ok());
  o.seed = 8;
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("c")).ok());
  for (const char* file : {"/train.tsv", "/test.tsv", "/truth.json"}) {
    EXPECT_EQ(ReadFile(dir_.Join("a") + file), ReadFile(dir_.Join("b") + file)) << file;
  }
  EXPECT_NE(ReadFile(dir_.Join("a/train.tsv")), ReadFile(dir_.Join("c/train.tsv")));
}

TEST_F(CriteoGenTest, TestFractionMovesRowsBetweenFilesWithoutChangingThem) {
  CriteoGenOptions o = SmallOptions();
  o.rows = 5000;
  auto all_lines = [&](const std::string& out) {
    std::string text = ReadFile(out + "/train.tsv") + ReadFile(out + "/test.tsv");
    std::vector<std::string_view> lines = SplitLines(text);
    std::vector<std::string> sorted(lines.begin(), lines.end());
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  };
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("a")).ok());
  o.test_fraction = 0.5;
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("b")).ok());
  EXPECT_NE(ReadFile(dir_.Join("a/test.tsv")), ReadFile(dir_.Join("b/test.tsv")));
  EXPECT_EQ(all_lines(dir_.Join("a")), all_lines(dir_.Join("b")));
}

TEST_F(CriteoGenTest, MoreRowsExtendTheSameDataFromTheSameModel) {
  CriteoGenOptions o = SmallOptions();
  o.rows = 5000;
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("small")).ok());
  o.rows = 10000;
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("large")).ok());
  for (const char* file : {"/train.tsv", "/test.tsv"}) {
    std::string small = ReadFile(dir_.Join("small") + file);
    std::string large = ReadFile(dir_.Join("large") + file);
    EXPECT_GT(large.size(), small.size()) << file;
    EXPECT_EQ(large.compare(0, small.size(), small), 0) << file << " does not extend";
  }
  EXPECT_EQ(JsonNumber(ReadFile(dir_.Join("small/truth.json")), "bias"),
            JsonNumber(ReadFile(dir_.Join("large/truth.json")), "bias"));
}

TEST_F(CriteoGenTest, PlantedInteractionsRaiseTheOracleAuc) {
  CriteoGenOptions o = SmallOptions();
  o.rows = 100000;
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("with")).ok());
  o.interaction_scale = 0.0;
  ASSERT_TRUE(GenerateCriteo(o, dir_.Join("without")).ok());
  double with = JsonNumber(ReadFile(dir_.Join("with/truth.json")), "oracle_auc");
  double without = JsonNumber(ReadFile(dir_.Join("without/truth.json")), "oracle_auc");
  EXPECT_GT(with, without + 0.005) << "with " << with << ", without " << without;
}

// Click rate of the top values (by count) of one field, and the largest deviation of any of them
// from the overall rate.
double LargestCtrDeviationOfTopValues(const std::vector<std::vector<std::string_view>>& rows,
                                      size_t field, int top, double base_rate) {
  std::map<std::string_view, std::pair<int64_t, int64_t>> clicks_and_rows;
  for (const auto& row : rows) {
    auto& [clicks, count] = clicks_and_rows[row[field]];
    clicks += row[0] == "1";
    ++count;
  }
  std::vector<std::pair<int64_t, double>> by_count;  // (rows, ctr)
  for (const auto& [value, stats] : clicks_and_rows) {
    if (value.empty()) continue;
    by_count.push_back({stats.second, static_cast<double>(stats.first) / stats.second});
  }
  std::sort(by_count.rbegin(), by_count.rend());
  double largest = 0.0;
  for (int k = 0; k < top && k < static_cast<int>(by_count.size()); ++k) {
    EXPECT_GT(by_count[static_cast<size_t>(k)].first, 2000) << "field " << field;
    largest = std::max(largest, std::abs(by_count[static_cast<size_t>(k)].second - base_rate));
  }
  return largest;
}

TEST_F(CriteoGenTest, StronglyWeightedFieldsMoveTheClickRateAndNoiseFieldsDoNot) {
  CriteoGenOptions o = SmallOptions();
  o.rows = 100000;
  ASSERT_TRUE(GenerateCriteo(o, dir_.path()).ok());
  std::string text = ReadFile(dir_.Join("train.tsv"));
  std::vector<std::vector<std::string_view>> rows;
  int64_t clicks = 0;
  for (std::string_view line : SplitLines(text)) {
    rows.push_back(SplitTabs(line));
    clicks += rows.back()[0] == "1";
  }
  double base_rate = static_cast<double>(clicks) / static_cast<double>(rows.size());
  // C17, C23 and C14 (weight std 0.6, 0.5 and 0.4 over 10 to 25 values) move the click rate of
  // their popular values by several points; C12 and C21 carry no signal, so theirs stay within
  // sampling noise (std of a rate over >= 2000 rows < 0.01).
  constexpr size_t kC = kFirstCategorical - 1;  // field index of C_k is kC + k
  for (int k : {17, 23, 14}) {
    EXPECT_GT(LargestCtrDeviationOfTopValues(rows, kC + k, 3, base_rate), 0.035) << "C" << k;
  }
  for (int k : {12, 21}) {
    EXPECT_LT(LargestCtrDeviationOfTopValues(rows, kC + k, 3, base_rate), 0.025) << "C" << k;
  }
}

TEST_F(CriteoGenTest, SignalScaleZeroGivesAChanceOracle) {
  CriteoGenOptions o = SmallOptions();
  o.signal_scale = 0.0;
  o.target_ctr = 0.3;
  ASSERT_TRUE(GenerateCriteo(o, dir_.path()).ok());
  std::string json = ReadFile(dir_.Join("truth.json"));
  EXPECT_NEAR(JsonNumber(json, "positive_rate"), 0.3, 0.015);
  EXPECT_EQ(JsonNumber(json, "oracle_auc"), 0.5);  // every probability is the same
  EXPECT_NEAR(JsonNumber(json, "bias"), std::log(0.3 / 0.7), 1e-6);
}

TEST_F(CriteoGenTest, InvalidOptionsAreRejectedWithAClearMessage) {
  struct Case {
    void (*mutate)(CriteoGenOptions*);
    const char* mentions;
  };
  std::vector<Case> cases = {
      {[](CriteoGenOptions* o) { o->rows = 0; }, "rows"},
      {[](CriteoGenOptions* o) { o->test_fraction = 0; }, "test_fraction"},
      {[](CriteoGenOptions* o) { o->test_fraction = 1; }, "test_fraction"},
      {[](CriteoGenOptions* o) { o->test_fraction = std::nan(""); }, "test_fraction"},
      {[](CriteoGenOptions* o) { o->target_ctr = 0.0; }, "target_ctr"},
      {[](CriteoGenOptions* o) { o->target_ctr = 1.0; }, "target_ctr"},
      {[](CriteoGenOptions* o) { o->signal_scale = -1.0; }, "signal_scale"},
      {[](CriteoGenOptions* o) { o->interaction_scale = 11.0; }, "interaction_scale"},
      {[](CriteoGenOptions* o) { o->vocab_scale = 0.0; }, "vocab_scale"},
      {[](CriteoGenOptions* o) { o->vocab_scale = 1e6; }, "vocab_scale"},
      {[](CriteoGenOptions* o) { o->vocab_scale = 500.0; }, "GiB"},
  };
  EXPECT_TRUE(ValidateCriteoGenOptions(CriteoGenOptions()).ok());
  for (const Case& c : cases) {
    CriteoGenOptions o;
    c.mutate(&o);
    Status status = ValidateCriteoGenOptions(o);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.mentions;
    EXPECT_NE(status.message().find(c.mentions), std::string::npos) << status.message();
    EXPECT_EQ(GenerateCriteo(o, dir_.path()).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("train.tsv")));
}

TEST_F(CriteoGenTest, UncreatableOutputDirectoryIsAnError) {
  testing::WriteFile(dir_.Join("file"), "x");
  EXPECT_FALSE(GenerateCriteo(SmallOptions(), dir_.Join("file/sub")).ok());
}

}  // namespace
}  // namespace tessera::worker
