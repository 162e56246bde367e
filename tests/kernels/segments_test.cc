// Segment plans (kernels/segments.h) on the host: the grouping against hand-written plans and a
// brute-force one, the edge sizes, rejection of bad input before anything is written, and reuse
// of SegmentPlan's storage.
#include "kernels/segments.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace tessera::kernels {
namespace {

struct Plan {
  std::vector<int32_t> offsets;
  std::vector<int32_t> order;
};

Plan Build(const std::vector<int32_t>& indices, int64_t num_rows) {
  Plan plan{std::vector<int32_t>(num_rows + 1, -7), std::vector<int32_t>(indices.size(), -7)};
  Status s = BuildSegments(indices.data(), static_cast<int64_t>(indices.size()), num_rows,
                           plan.offsets.data(), plan.order.data());
  EXPECT_TRUE(s.ok()) << s.ToString();
  return plan;
}

TEST(SegmentsTest, GroupsPositionsByRowInPositionOrder) {
  // Rows 0..3; row 1 is touched by nobody.
  const Plan plan = Build({2, 0, 2, 3, 0, 2}, 4);
  EXPECT_EQ(plan.offsets, (std::vector<int32_t>{0, 2, 2, 5, 6}));
  EXPECT_EQ(plan.order, (std::vector<int32_t>{1, 4, 0, 2, 5, 3}));
}

TEST(SegmentsTest, EmptyInputsGiveEmptySegments) {
  const Plan no_rows = Build({}, 0);
  EXPECT_EQ(no_rows.offsets, (std::vector<int32_t>{0}));
  const Plan no_positions = Build({}, 3);
  EXPECT_EQ(no_positions.offsets, (std::vector<int32_t>{0, 0, 0, 0}));
  // Null indices and order are fine without positions.
  std::vector<int32_t> offsets(3, -7);
  TS_ASSERT_OK(BuildSegments(nullptr, 0, 2, offsets.data(), nullptr));
  EXPECT_EQ(offsets, (std::vector<int32_t>{0, 0, 0}));
}

TEST(SegmentsTest, OneRowAndAllPositionsOnOneRow) {
  const Plan one = Build({0}, 1);
  EXPECT_EQ(one.offsets, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(one.order, (std::vector<int32_t>{0}));
  // 1000 positions, all on row 2 of 5: one segment listing them in order.
  const std::vector<int32_t> indices(1000, 2);
  const Plan all = Build(indices, 5);
  EXPECT_EQ(all.offsets, (std::vector<int32_t>{0, 0, 0, 1000, 1000, 1000}));
  for (int32_t k = 0; k < 1000; ++k) ASSERT_EQ(all.order[k], k);
}

TEST(SegmentsTest, MatchesBruteForceOnRandomIndices) {
  const unsigned seed = 77;
  std::mt19937 rng(seed);
  for (int64_t num_rows : {1, 2, 33, 257}) {
    for (int64_t n : {0, 1, 33, 257, 5000}) {
      SCOPED_TRACE("seed=" + std::to_string(seed) + " rows=" + std::to_string(num_rows) +
                   " positions=" + std::to_string(n));
      std::uniform_int_distribution<int32_t> row(0, static_cast<int32_t>(num_rows) - 1);
      std::vector<int32_t> indices(n);
      for (int32_t& r : indices) r = row(rng);
      const Plan plan = Build(indices, num_rows);
      std::vector<int32_t> expected_order;
      std::vector<int32_t> expected_offsets{0};
      for (int32_t r = 0; r < num_rows; ++r) {
        for (int32_t p = 0; p < n; ++p) {
          if (indices[p] == r) expected_order.push_back(p);
        }
        expected_offsets.push_back(static_cast<int32_t>(expected_order.size()));
      }
      EXPECT_EQ(plan.offsets, expected_offsets);
      EXPECT_EQ(plan.order, expected_order);
    }
  }
}

TEST(SegmentsTest, RejectsBadInputBeforeWritingAnything) {
  std::vector<int32_t> offsets(4, -7), order(3, -7);
  const std::vector<int32_t> untouched_offsets = offsets, untouched_order = order;
  const std::vector<int32_t> too_large = {0, 3, 1};  // num_rows 3: index 3 is out of range
  Status s = BuildSegments(too_large.data(), 3, 3, offsets.data(), order.data());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("position 1 has index 3"), std::string::npos) << s.message();
  const std::vector<int32_t> negative = {0, 1, -1};
  EXPECT_EQ(BuildSegments(negative.data(), 3, 3, offsets.data(), order.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(offsets, untouched_offsets);
  EXPECT_EQ(order, untouched_order);

  const std::vector<int32_t> fine = {0, 1, 2};
  EXPECT_EQ(BuildSegments(fine.data(), -1, 3, offsets.data(), order.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildSegments(fine.data(), 3, -1, offsets.data(), order.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildSegments(nullptr, 3, 3, offsets.data(), order.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildSegments(fine.data(), 3, 3, nullptr, order.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildSegments(fine.data(), 3, 3, offsets.data(), nullptr).code(),
            StatusCode::kInvalidArgument);
  // Positions are int32 in the plan.
  EXPECT_EQ(BuildSegments(fine.data(), int64_t{1} << 31, 3, offsets.data(), order.data()).code(),
            StatusCode::kInvalidArgument);
  // Rows with no index in range at all: every index is out of range.
  EXPECT_EQ(BuildSegments(fine.data(), 3, 0, offsets.data(), order.data()).code(),
            StatusCode::kInvalidArgument);
}

TEST(SegmentPlanTest, RebuildsInPlaceAndReportsItsSizes) {
  SegmentPlan plan;
  EXPECT_EQ(plan.view().num_rows, 0);
  EXPECT_EQ(plan.view().offsets[0], 0);  // the empty plan is a valid plan of no rows
  const std::vector<int32_t> big(1000, 3);
  TS_ASSERT_OK(plan.Build(big.data(), 1000, 10));
  const int32_t* offsets = plan.offsets();
  const int32_t* order = plan.order();
  const std::vector<int32_t> small = {1, 0, 1};
  TS_ASSERT_OK(plan.Build(small.data(), 3, 2));
  // A smaller plan reuses the storage (steady state allocates nothing).
  EXPECT_EQ(plan.offsets(), offsets);
  EXPECT_EQ(plan.order(), order);
  const SegmentsView v = plan.view();
  EXPECT_EQ(v.num_rows, 2);
  EXPECT_EQ(v.num_positions, 3);
  EXPECT_EQ(std::vector<int32_t>(v.offsets, v.offsets + 3), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(std::vector<int32_t>(v.order, v.order + 3), (std::vector<int32_t>{1, 0, 2}));

  // A failed build leaves an empty plan.
  const std::vector<int32_t> bad = {5};
  EXPECT_EQ(plan.Build(bad.data(), 1, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(plan.num_rows(), 0);
  EXPECT_EQ(plan.num_positions(), 0);
}

}  // namespace
}  // namespace tessera::kernels
