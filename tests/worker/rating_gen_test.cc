#include "worker/data/rating_gen.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/logging.h"
#include "tests/testing/test_util.h"
#include "worker/data/rating_reader.h"

namespace tessera::worker {
namespace {

using testing::ReadFile;
using testing::TempDir;

RatingGenOptions SmallOptions() {
  RatingGenOptions o;
  o.users = 1000;
  o.items = 200;
  o.ratings = 50000;
  o.rank = 4;
  o.noise = 0.5;
  o.seed = 7;
  o.test_fraction = 0.2;
  return o;
}

// The number after "key": in truth.json; NaN if absent.
double JsonNumber(const std::string& json, const std::string& key) {
  size_t pos = json.find("\"" + key + "\": ");
  if (pos == std::string::npos) return std::nan("");
  return std::strtod(json.c_str() + pos + key.size() + 4, nullptr);
}

int64_t CountLines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

RatingData ReadBack(const std::string& path) {
  RatingReadOptions options;
  options.format = RatingFormat::kLibmf;
  StatusOr<RatingReadResult> result = ReadRatings(path, options);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return result.ok() ? std::move(result->data) : RatingData();
}

class RatingGenTest : public ::testing::Test {
 protected:
  void SetUp() override { logging::SetMinSeverity(logging::Severity::kWarning); }
  void TearDown() override { logging::SetMinSeverity(logging::Severity::kInfo); }
  TempDir dir_;
};

TEST_F(RatingGenTest, WritesTrainTestAndTruthWithAllRatings) {
  RatingGenOptions o = SmallOptions();
  ASSERT_TRUE(GenerateRatings(o, dir_.Join("out/nested")).ok());
  std::string out = dir_.Join("out/nested");
  int64_t train = CountLines(ReadFile(out + "/train.txt"));
  int64_t test = CountLines(ReadFile(out + "/test.txt"));
  EXPECT_EQ(train + test, o.ratings);
  EXPECT_NEAR(static_cast<double>(test) / o.ratings, o.test_fraction, 0.01);

  std::string json = ReadFile(out + "/truth.json");
  for (const char* key : {"users", "items", "ratings", "train_ratings", "test_ratings", "rank",
                          "noise_sigma", "mu", "bias_std", "factor_std", "user_zipf", "item_zipf",
                          "seed", "test_fraction", "test_noise_rmse"}) {
    EXPECT_FALSE(std::isnan(JsonNumber(json, key))) << key << " missing in " << json;
  }
  EXPECT_EQ(JsonNumber(json, "train_ratings"), train);
  EXPECT_EQ(JsonNumber(json, "test_ratings"), test);
  EXPECT_EQ(JsonNumber(json, "users"), o.users);
  EXPECT_EQ(JsonNumber(json, "mu"), 3.5);
  EXPECT_DOUBLE_EQ(JsonNumber(json, "factor_std"), std::pow(4.0, -0.25));
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.find(",\n}"), std::string::npos) << "trailing comma: " << json;
}

TEST_F(RatingGenTest, SameSeedGivesIdenticalBytesAndDifferentSeedDoesNot) {
  RatingGenOptions o = SmallOptions();
  ASSERT_TRUE(GenerateRatings(o, dir_.Join("a")).ok());
  ASSERT_TRUE(GenerateRatings(o, dir_.Join("b")).ok());
  o.seed = 8;
  ASSERT_TRUE(GenerateRatings(o, dir_.Join("c")).ok());
  for (const char* file : {"/train.txt", "/test.txt", "/truth.json"}) {
    EXPECT_EQ(ReadFile(dir_.Join("a") + file), ReadFile(dir_.Join("b") + file)) << file;
  }
  EXPECT_NE(ReadFile(dir_.Join("a/train.txt")), ReadFile(dir_.Join("c/train.txt")));
}

TEST_F(RatingGenTest, TestNoiseRmseIsNearNoiseSigma) {
  RatingGenOptions o = SmallOptions();
  for (double noise : {0.0, 0.5, 1.0}) {
    o.noise = noise;
    ASSERT_TRUE(GenerateRatings(o, dir_.path()).ok());
    double rmse = JsonNumber(ReadFile(dir_.Join("truth.json")), "test_noise_rmse");
    EXPECT_NEAR(rmse, noise, 0.02 * noise + 1e-12) << "noise " << noise;
  }
}

TEST_F(RatingGenTest, RatingsAverageNearMuAndAreContinuous) {
  RatingGenOptions o = SmallOptions();
  ASSERT_TRUE(GenerateRatings(o, dir_.path()).ok());
  RatingData train = ReadBack(dir_.Join("train.txt"));
  ASSERT_GT(train.size(), 0u);
  double sum = 0.0;
  int64_t whole = 0;
  for (float r : train.ratings) {
    sum += r;
    whole += r == std::round(r);
  }
  EXPECT_NEAR(sum / train.size(), 3.5, 0.2);
  EXPECT_LT(whole, static_cast<int64_t>(train.size()) / 100);  // not rounded to stars
  auto [lo, hi] = std::minmax_element(train.ratings.begin(), train.ratings.end());
  EXPECT_LT(*lo, 1.0f);  // not clipped to [1, 5]
  EXPECT_GT(*hi, 6.0f);
}

TEST_F(RatingGenTest, PopularityIsSkewed) {
  RatingGenOptions o = SmallOptions();
  ASSERT_TRUE(GenerateRatings(o, dir_.path()).ok());
  RatingData train = ReadBack(dir_.Join("train.txt"));
  std::vector<int64_t> per_item(static_cast<size_t>(o.items), 0);
  for (uint64_t item : train.items) {
    ASSERT_LT(item, static_cast<uint64_t>(o.items));
    ++per_item[item];
  }
  std::vector<int64_t> sorted = per_item;
  std::sort(sorted.begin(), sorted.end());
  int64_t median = sorted[sorted.size() / 2];
  EXPECT_GT(sorted.back(), 10 * median) << "max " << sorted.back() << ", median " << median;
  // Popular ids are scattered, not 0, 1, 2, ...
  int64_t top = std::max_element(per_item.begin(), per_item.end()) - per_item.begin();
  EXPECT_NE(top, 0);
}

TEST_F(RatingGenTest, TrainReadsBackWithReadRatings) {
  RatingGenOptions o = SmallOptions();
  ASSERT_TRUE(GenerateRatings(o, dir_.path()).ok());
  StatusOr<RatingReadResult> result = ReadRatings(dir_.Join("train.txt"), {});
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->format, RatingFormat::kLibmf);
  std::string json = ReadFile(dir_.Join("truth.json"));
  EXPECT_EQ(static_cast<double>(result->data.size()), JsonNumber(json, "train_ratings"));
  for (uint64_t user : result->data.users) ASSERT_LT(user, static_cast<uint64_t>(o.users));
}

TEST_F(RatingGenTest, InvalidOptionsAreRejectedWithAClearMessage) {
  struct Case {
    void (*mutate)(RatingGenOptions*);
    const char* mentions;
  };
  std::vector<Case> cases = {
      {[](RatingGenOptions* o) { o->users = 0; }, "users"},
      {[](RatingGenOptions* o) { o->items = -1; }, "items"},
      {[](RatingGenOptions* o) { o->ratings = 0; }, "ratings"},
      {[](RatingGenOptions* o) { o->rank = 0; }, "rank"},
      {[](RatingGenOptions* o) { o->noise = -0.1; }, "noise"},
      {[](RatingGenOptions* o) { o->noise = std::nan(""); }, "noise"},
      {[](RatingGenOptions* o) { o->test_fraction = 0; }, "test_fraction"},
      {[](RatingGenOptions* o) { o->test_fraction = 1; }, "test_fraction"},
      {[](RatingGenOptions* o) { o->item_zipf = -1; }, "zipf"},
      {[](RatingGenOptions* o) { o->users = int64_t{1} << 30, o->rank = 1024; }, "GiB"},
  };
  EXPECT_TRUE(ValidateRatingGenOptions(RatingGenOptions()).ok());
  for (const Case& c : cases) {
    RatingGenOptions o;
    c.mutate(&o);
    Status status = ValidateRatingGenOptions(o);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.mentions;
    EXPECT_NE(status.message().find(c.mentions), std::string::npos) << status.message();
    EXPECT_EQ(GenerateRatings(o, dir_.path()).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("train.txt")));
}

TEST_F(RatingGenTest, UncreatableOutputDirectoryIsAnError) {
  testing::WriteFile(dir_.Join("file"), "x");
  EXPECT_FALSE(GenerateRatings(SmallOptions(), dir_.Join("file/sub")).ok());
}

// Var(r) = 2 bias_std^2 + Var(p.q) + noise^2, where Var(p.q) = rank * factor_std^4 (= 1) is the
// planted low-rank term. With uniform popularity every user and item is drawn alike, so the
// sample variance of all ratings, less the bias and noise variances, measures the planted term: a
// generator that drops it (or scales it wrongly for the rank) lands far from rank *
// factor_std^4. Tolerance 0.08: the estimate has a standard deviation of about 0.03 at rank 2
// (it reads 1.01-1.04 for these seeded cases).
TEST_F(RatingGenTest, PlantedLowRankTermAddsItsConfiguredVariance) {
  for (int rank : {2, 16}) {
    for (double noise : {0.3, 1.0}) {
      RatingGenOptions o = SmallOptions();
      o.users = 3000;
      o.items = 3000;
      o.ratings = 200000;
      o.rank = rank;
      o.noise = noise;
      o.user_zipf = 0;
      o.item_zipf = 0;
      SCOPED_TRACE("rank " + std::to_string(rank) + " noise " + std::to_string(noise) + " seed " +
                   std::to_string(o.seed));
      ASSERT_TRUE(GenerateRatings(o, dir_.path()).ok());
      const std::string json = ReadFile(dir_.Join("truth.json"));
      const double factor_std = JsonNumber(json, "factor_std");
      const double bias_std = JsonNumber(json, "bias_std");
      const double noise_sigma = JsonNumber(json, "noise_sigma");
      ASSERT_EQ(noise_sigma, noise);
      double sum = 0, sum_sq = 0;
      int64_t count = 0;
      for (const char* file : {"train.txt", "test.txt"}) {
        const RatingData data = ReadBack(dir_.Join(file));
        for (float r : data.ratings) {
          sum += r;
          sum_sq += static_cast<double>(r) * r;
        }
        count += static_cast<int64_t>(data.size());
      }
      ASSERT_EQ(count, o.ratings);
      const double mean = sum / count;
      const double variance = sum_sq / count - mean * mean;
      const double planted = variance - 2 * bias_std * bias_std - noise_sigma * noise_sigma;
      const double configured = rank * std::pow(factor_std, 4);
      EXPECT_NEAR(configured, 1.0, 1e-9);
      EXPECT_NEAR(planted, configured, 0.08)
          << "rating variance " << variance << " = 2 x " << bias_std << "^2 (biases) + "
          << noise_sigma << "^2 (noise) + " << planted << " (planted p.q)";
    }
  }
}

}  // namespace
}  // namespace tessera::worker
