#include "worker/data/ctr_metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace tessera::worker {
namespace {

// The definition: over all (positive, negative) pairs, 1 if the positive scores higher, 1/2 on a
// tie. O(n^2), independent of the sort-based implementation.
double BruteForceAuc(const std::vector<float>& scores, const std::vector<float>& labels) {
  double wins = 0.0;
  double pairs = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 1.0f) continue;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (labels[j] != 0.0f) continue;
      pairs += 1.0;
      wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
    }
  }
  return wins / pairs;
}

double Auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  return ExactAuc(scores.data(), labels.data(), scores.size());
}

TEST(CtrMetricsTest, AucMatchesBruteForceOnRandomScoresWithManyTies) {
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    size_t n = 50 + seed * 300;
    std::vector<float> scores(n);
    std::vector<float> labels(n);
    for (size_t i = 0; i < n; ++i) {
      float label = uniform(rng) < 0.3f ? 1.0f : 0.0f;
      // Informative but noisy, rounded to one decimal: ~11 distinct scores, so most pairs tie
      // within a group.
      float raw = 0.3f * label + 0.7f * uniform(rng);
      scores[i] = std::round(raw * 10.0f) / 10.0f;
      labels[i] = label;
    }
    double expected = BruteForceAuc(scores, labels);
    EXPECT_NEAR(Auc(scores, labels), expected, 1e-12) << "seed " << seed;
    EXPECT_GT(expected, 0.6) << "seed " << seed;
  }
}

TEST(CtrMetricsTest, PerfectInverseAndConstantScorers) {
  std::vector<float> labels = {0, 1, 0, 1, 1, 0, 0};
  std::vector<float> perfect = {0.1f, 0.9f, 0.2f, 0.8f, 0.7f, 0.3f, 0.0f};
  std::vector<float> inverse = {0.9f, 0.1f, 0.8f, 0.2f, 0.3f, 0.7f, 1.0f};
  std::vector<float> constant(labels.size(), 0.42f);
  EXPECT_DOUBLE_EQ(Auc(perfect, labels), 1.0);
  EXPECT_DOUBLE_EQ(Auc(inverse, labels), 0.0);
  EXPECT_DOUBLE_EQ(Auc(constant, labels), 0.5);
}

TEST(CtrMetricsTest, AucOfHandComputedExamples) {
  // Positives score {0.8, 0.4}, negatives {0.6, 0.2}: pairs won (0.8>0.6, 0.8>0.2, 0.4>0.2) = 3
  // of 4.
  EXPECT_DOUBLE_EQ(Auc({0.8f, 0.6f, 0.4f, 0.2f}, {1, 0, 1, 0}), 0.75);
  // Positives {0.5, 0.3}, negatives {0.5, 0.1}: 0.5 ties 0.5 (1/2), beats 0.1 (1); 0.3 beats 0.1
  // (1), loses to 0.5 (0): 2.5 / 4.
  EXPECT_DOUBLE_EQ(Auc({0.5f, 0.5f, 0.3f, 0.1f}, {1, 0, 1, 0}), 0.625);
  // Order of the input does not matter.
  EXPECT_DOUBLE_EQ(Auc({0.1f, 0.3f, 0.5f, 0.5f}, {0, 1, 0, 1}), 0.625);
  // One positive in the middle of three negatives, tied with one of them: (1 + 0.5) / 3.
  EXPECT_DOUBLE_EQ(Auc({0.2f, 0.5f, 0.5f, 0.9f}, {0, 1, 0, 0}), 0.5);
  // Labels above 0.5 count as positives.
  EXPECT_DOUBLE_EQ(Auc({0.8f, 0.6f, 0.4f, 0.2f}, {0.9f, 0.1f, 0.7f, 0.0f}), 0.75);
}

TEST(CtrMetricsTest, AucIsNanWithOneClassNoDataOrNanScores) {
  EXPECT_TRUE(std::isnan(Auc({0.1f, 0.9f, 0.5f}, {1, 1, 1})));
  EXPECT_TRUE(std::isnan(Auc({0.1f, 0.9f, 0.5f}, {0, 0, 0})));
  EXPECT_TRUE(std::isnan(ExactAuc(nullptr, nullptr, 0)));
  EXPECT_TRUE(std::isnan(Auc({0.1f, std::nanf(""), 0.5f}, {1, 0, 1})));
}

TEST(CtrMetricsTest, LogLossOfHandComputedValues) {
  std::vector<float> probs = {0.9f, 0.2f, 0.5f};
  std::vector<float> labels = {1, 0, 1};
  double expected = -(std::log(0.9) + std::log(0.8) + std::log(0.5)) / 3.0;
  EXPECT_NEAR(LogLoss(probs.data(), labels.data(), 3), expected, 1e-7);
  // A constant 0.25 on a 25% positive set is its entropy.
  std::vector<float> quarter(4, 0.25f);
  std::vector<float> one_in_four = {1, 0, 0, 0};
  double entropy = -(0.25 * std::log(0.25) + 0.75 * std::log(0.75));
  EXPECT_NEAR(LogLoss(quarter.data(), one_in_four.data(), 4), entropy, 1e-7);
  // Soft labels: y = 0.5 at p = 0.5 costs log 2.
  float half = 0.5f;
  EXPECT_NEAR(LogLoss(&half, &half, 1), std::log(2.0), 1e-7);
  EXPECT_TRUE(std::isnan(LogLoss(nullptr, nullptr, 0)));
}

TEST(CtrMetricsTest, LogLossClipsConfidentMistakes) {
  std::vector<float> probs = {0.0f, 1.0f};
  std::vector<float> labels = {1, 0};
  // Both are certain and wrong: each costs -log(eps) instead of infinity.
  EXPECT_NEAR(LogLoss(probs.data(), labels.data(), 2), -std::log(1e-7), 1e-6);
  EXPECT_NEAR(LogLoss(probs.data(), labels.data(), 2, 1e-3), -std::log(1e-3), 1e-9);
  // Certain and right costs -log(1 - eps), about eps.
  std::vector<float> right = {0, 1};
  EXPECT_NEAR(LogLoss(right.data(), right.data(), 2, 1e-3), -std::log1p(-1e-3), 1e-12);
}

TEST(CtrMetricsTest, BinaryMetricsCombineAucLogLossAndCounts) {
  std::vector<float> probs = {0.8f, 0.6f, 0.4f, 0.2f, 0.1f};
  std::vector<float> labels = {1, 0, 1, 0, 0};
  BinaryMetrics m = ComputeBinaryMetrics(probs.data(), labels.data(), probs.size());
  EXPECT_EQ(m.count, 5);
  EXPECT_EQ(m.positives, 2);
  EXPECT_DOUBLE_EQ(m.auc, 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(m.logloss, LogLoss(probs.data(), labels.data(), probs.size()));
}

}  // namespace
}  // namespace tessera::worker
