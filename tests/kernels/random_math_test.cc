// Counter-based random numbers (kernels/random_math.h): pure functions of their inputs, with
// the distributions they claim. Statistical bounds are ~5 standard errors wide.
#include "kernels/random_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

namespace tessera::kernels {
namespace {

constexpr int kDraws = 200000;

TEST(RandomMathTest, SameInputsGiveSameOutputs) {
  const uint64_t stream = RowStream(42, 3, 123456789);
  EXPECT_EQ(stream, RowStream(42, 3, 123456789));
  for (uint32_t c = 0; c < 100; ++c) {
    EXPECT_EQ(CounterUniform(stream, c), CounterUniform(stream, c));
    EXPECT_EQ(CounterNormal(stream, c), CounterNormal(stream, c));
  }
  EXPECT_EQ(SplitMix64(0), SplitMix64(0));
}

TEST(RandomMathTest, SplitMix64MatchesReferenceValues) {
  // Reference SplitMix64 (Vigna's splitmix64.c) seeded with 0 returns these as its first two
  // outputs; SplitMix64(x) is one step from state x.
  EXPECT_EQ(SplitMix64(0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(SplitMix64(0x9E3779B97F4A7C15ull), 0x6E789E6AA1B965F4ull);
}

TEST(RandomMathTest, UniformIsInUnitIntervalWithMeanHalfAndVarianceOneTwelfth) {
  const uint64_t stream = RowStream(1, 0, 7);
  double sum = 0.0, sum_sq = 0.0;
  for (uint32_t c = 0; c < kDraws; ++c) {
    const float u = CounterUniform(stream, c);
    ASSERT_GE(u, 0.0f) << "counter " << c;
    ASSERT_LT(u, 1.0f) << "counter " << c;
    sum += u;
    sum_sq += static_cast<double>(u) * u;
  }
  const double mean = sum / kDraws;
  const double variance = sum_sq / kDraws - mean * mean;
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / kDraws));
  EXPECT_NEAR(variance, 1.0 / 12, 0.002);
}

TEST(RandomMathTest, UniformFillsAllTenthsEvenly) {
  const uint64_t stream = RowStream(2, 1, 99);
  std::vector<int> counts(10, 0);
  for (uint32_t c = 0; c < kDraws; ++c) ++counts[static_cast<int>(CounterUniform(stream, c) * 10)];
  for (int bin = 0; bin < 10; ++bin) {
    EXPECT_NEAR(counts[bin], kDraws / 10, 5 * std::sqrt(kDraws * 0.1 * 0.9)) << "bin " << bin;
  }
}

TEST(RandomMathTest, NormalHasMeanZeroAndStdOne) {
  const uint64_t stream = RowStream(3, 2, 1);
  double sum = 0.0, sum_sq = 0.0;
  int beyond_three_sigma = 0;
  for (uint32_t c = 0; c < kDraws; ++c) {
    const float z = CounterNormal(stream, c);
    ASSERT_TRUE(std::isfinite(z)) << "counter " << c;
    sum += z;
    sum_sq += static_cast<double>(z) * z;
    beyond_three_sigma += std::fabs(z) > 3.0f;
  }
  const double mean = sum / kDraws;
  const double stddev = std::sqrt(sum_sq / kDraws - mean * mean);
  EXPECT_NEAR(mean, 0.0, 5 / std::sqrt(static_cast<double>(kDraws)));
  EXPECT_NEAR(stddev, 1.0, 0.01);
  // P(|z| > 3) = 0.0027 for a standard normal.
  EXPECT_NEAR(beyond_three_sigma / static_cast<double>(kDraws), 0.0027, 0.0006);
}

TEST(RandomMathTest, DifferentKeysTablesAndSeedsGiveDifferentStreams) {
  std::set<uint64_t> streams;
  for (uint64_t key = 0; key < 1000; ++key) streams.insert(RowStream(5, 0, key));
  for (uint32_t table = 1; table < 100; ++table) streams.insert(RowStream(5, table, 0));
  for (uint64_t seed = 6; seed < 106; ++seed) streams.insert(RowStream(seed, 0, 0));
  EXPECT_EQ(streams.size(), 1000u + 99u + 100u);
  // Neighbouring keys give unrelated values, not shifted copies of one sequence.
  const uint64_t a = RowStream(5, 0, 10);
  const uint64_t b = RowStream(5, 0, 11);
  int equal = 0;
  for (uint32_t c = 0; c < 64; ++c) {
    equal += CounterUniform(a, c) == CounterUniform(b, c);
    equal += CounterUniform(a, c + 1) == CounterUniform(b, c);
  }
  EXPECT_EQ(equal, 0);
}

TEST(RandomMathTest, FirstValuesOfNeighbouringKeysAreUncorrelated) {
  // Row initialisation reads counter 0 of many consecutive keys: those must look independent.
  const int num_keys = 50000;
  double sum_xy = 0.0, sum_x = 0.0, sum_y = 0.0, sum_xx = 0.0, sum_yy = 0.0;
  for (int key = 0; key < num_keys; ++key) {
    const double x = CounterUniform(RowStream(9, 4, key), 0);
    const double y = CounterUniform(RowStream(9, 4, key + 1), 0);
    sum_x += x;
    sum_y += y;
    sum_xy += x * y;
    sum_xx += x * x;
    sum_yy += y * y;
  }
  const double n = num_keys;
  const double cov = sum_xy / n - (sum_x / n) * (sum_y / n);
  const double corr =
      cov / std::sqrt((sum_xx / n - sum_x * sum_x / n / n) * (sum_yy / n - sum_y * sum_y / n / n));
  EXPECT_NEAR(corr, 0.0, 5 / std::sqrt(n));
}

}  // namespace
}  // namespace tessera::kernels
