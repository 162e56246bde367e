#include <gtest/gtest.h>

#include <cstdint>

#include "core/splitmix64.h"
#include "worker/mf_model.h"

namespace tessera::worker {
namespace {

// Ids as a rating file has them: each of `distinct` ids `repeats` times, interleaved.
double Estimate(uint64_t distinct, uint64_t repeats, uint64_t base) {
  return EstimateDistinct(distinct * repeats,
                          [&](size_t i) { return base + (i % distinct) * 7919; });
}

TEST(EstimateDistinctTest, CountsEachIdOnceWithinAFewPerCent) {
  EXPECT_EQ(EstimateDistinct(0, [](size_t) { return uint64_t{0}; }), 0.0);
  EXPECT_NEAR(EstimateDistinct(1000, [](size_t) { return uint64_t{42}; }), 1.0, 0.01);
  for (uint64_t distinct : {1000u, 40000u, 1000000u, 5000000u}) {
    const double got = Estimate(distinct, 3, 17);
    EXPECT_NEAR(got, static_cast<double>(distinct), 0.03 * static_cast<double>(distinct))
        << distinct << " distinct ids";
  }
}

TEST(MfBandsTest, AboutRowsPerBandIdsEachAndAtLeastOne) {
  EXPECT_EQ(MfBands(0), 1);
  EXPECT_EQ(MfBands(kRowsPerBand), 1);
  EXPECT_EQ(MfBands(kRowsPerBand + 1), 2);
  EXPECT_EQ(MfBands(1e6), 31);
  EXPECT_EQ(MfBands(1e12), 4096);
  // A set of 40000 users, each rated a few times, needs two bands; 20000 items one.
  EXPECT_EQ(MfBands(Estimate(40000, 5, 3)), 2);
  EXPECT_EQ(MfBands(Estimate(20000, 5, 3)), 1);
}

}  // namespace
}  // namespace tessera::worker
