#include "worker/mf_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

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

TEST(MfGridTest, BandsOfEachKindAndUserBandsSmallEnoughForBlocksOfAboutTwelveSteps) {
  auto grid = MfGrid(1000, 1000, 1e5, 64);
  EXPECT_EQ(grid.user_bands * grid.item_bands, 1);  // one block: the plain shuffle
  // The benchmark's set: 31 x 4 bands already make blocks of 4-5 steps.
  grid = MfGrid(1e6, 1e5, 9e6, 16384);
  EXPECT_EQ(grid.user_bands, 31);
  EXPECT_EQ(grid.item_bands, 4);
  // The planted set: 4 user bands by their ids would make blocks of 137 steps; 46 bands
  // of about 2200 users make blocks of 12.
  grid = MfGrid(1e5, 2e4, 9e6, 16384);
  EXPECT_EQ(grid.user_bands, 46);
  EXPECT_EQ(grid.item_bands, 1);
  // Small batches: bands of no fewer than 1024 users.
  grid = MfGrid(1e5, 2e4, 9e6, 64);
  EXPECT_EQ(grid.user_bands, 97);
}

// Blocks of the given sizes (row-major over the grid) and the blocked order of one epoch.
struct EpochOf {
  EpochOf(MfBlockGrid grid, const std::vector<uint32_t>& sizes, size_t batch, uint64_t seed)
      : grid(grid), begin{0} {
    for (uint32_t n : sizes) begin.push_back(begin.back() + n);
    BlockedEpochOrder(begin, grid, seed, batch, &order, &disjoint);
  }
  uint32_t BlockOf(uint32_t sample) const {
    return static_cast<uint32_t>(std::upper_bound(begin.begin(), begin.end(), sample) -
                                 begin.begin() - 1);
  }
  // The user bands and item bands of a step's samples.
  std::pair<std::set<int>, std::set<int>> Bands(size_t step, size_t batch) const {
    std::pair<std::set<int>, std::set<int>> bands;
    for (size_t i = step * batch; i < std::min(order.size(), (step + 1) * batch); ++i) {
      const uint32_t b = BlockOf(order[i]);
      bands.first.insert(static_cast<int>(b) / grid.item_bands);
      bands.second.insert(static_cast<int>(b) % grid.item_bands);
    }
    return bands;
  }

  MfBlockGrid grid;
  std::vector<uint32_t> begin, order;
  std::vector<bool> disjoint;
};

bool Intersect(const std::set<int>& a, const std::set<int>& b) {
  return std::any_of(a.begin(), a.end(), [&](int x) { return b.count(x) > 0; });
}

// Every sample once; a step is marked disjoint from the next exactly when their samples share
// no user band and no item band (the rows their pushes and pulls name); and on a grid of two
// bands or more of each kind, pairs make most steps disjoint from the next.
TEST(BlockedEpochOrderTest, MarksExactlyTheStepsWhoseNextStepSharesNoBand) {
  const MfBlockGrid grids[] = {{4, 2}, {3, 3}, {2, 5}, {3, 1}};
  for (MfBlockGrid grid : grids) {
    for (size_t batch : {7u, 64u, 500u}) {
      std::vector<uint32_t> sizes;
      for (int b = 0; b < grid.user_bands * grid.item_bands; ++b) {
        sizes.push_back(b == 1 ? 0 : 900 + static_cast<uint32_t>(b * 37 % 200));
      }
      const EpochOf e(grid, sizes, batch, 17);
      const std::string where = std::to_string(grid.user_bands) + " x " +
                                std::to_string(grid.item_bands) + " bands, batch " +
                                std::to_string(batch);
      std::vector<uint32_t> sorted = e.order;
      std::sort(sorted.begin(), sorted.end());
      for (uint32_t i = 0; i < sorted.size(); ++i) ASSERT_EQ(sorted[i], i) << where;
      const size_t steps = (e.order.size() + batch - 1) / batch;
      ASSERT_EQ(e.disjoint.size(), steps) << where;
      size_t marked = 0;
      for (size_t s = 0; s + 1 < steps; ++s) {
        const auto [users, items] = e.Bands(s, batch);
        const auto [next_users, next_items] = e.Bands(s + 1, batch);
        const bool apart = !Intersect(users, next_users) && !Intersect(items, next_items);
        ASSERT_EQ(e.disjoint[s], apart) << where << ", step " << s;
        marked += e.disjoint[s] ? 1 : 0;
      }
      EXPECT_FALSE(e.disjoint[steps - 1]) << where;
      if (grid.item_bands == 1) {
        EXPECT_EQ(marked, 0u) << where;  // no two blocks apart: no pair
      } else if (batch <= 64) {
        EXPECT_GT(marked, steps * 7 / 10) << where;
      }
    }
  }
}

TEST(BlockedEpochOrderTest, TheSameSeedGivesTheSameOrderAndAnotherSeedAnother) {
  const std::vector<uint32_t> sizes(8, 300);
  const EpochOf a({4, 2}, sizes, 32, 1), b({4, 2}, sizes, 32, 1), c({4, 2}, sizes, 32, 2);
  EXPECT_EQ(a.order, b.order);
  EXPECT_EQ(a.disjoint, b.disjoint);
  EXPECT_NE(a.order, c.order);
}

}  // namespace
}  // namespace tessera::worker
