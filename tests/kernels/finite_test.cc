// The finite scans of kernels/finite.h: every position, block boundaries, every kind of bad value.
#include "kernels/finite.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/sparse_optimizer.h"

namespace tessera::kernels {
namespace {

const float kBad[] = {NAN, -NAN, INFINITY, -INFINITY};

TEST(FiniteTest, FindsTheFirstNonFiniteValueAtEveryPosition) {
  for (int64_t n : {0, 1, 7, 8, 9, 63, 4096, 4097, 10000}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 13) * 1e37f - 6e37f;
    EXPECT_EQ(FindNonFinite(v.data(), n), n) << n;
    for (int64_t bad : {int64_t{0}, n / 2, n - 1}) {
      if (n == 0) continue;
      for (float b : kBad) {
        std::vector<float> w = v;
        w[bad] = b;
        if (bad + 1 < n) w[n - 1] = NAN;  // a later bad value does not hide the first
        EXPECT_EQ(FindNonFinite(w.data(), n), bad) << n << " " << bad << " " << b;
      }
    }
  }
}

TEST(FiniteTest, ExtremeFiniteValuesAreFinite) {
  const float v[] = {std::numeric_limits<float>::max(),
                     -std::numeric_limits<float>::max(),
                     std::numeric_limits<float>::denorm_min(),
                     -0.0f,
                     0.0f,
                     std::numeric_limits<float>::min()};
  EXPECT_EQ(FindNonFinite(v, 6), 6);
  uint32_t flags = 0;
  for (float x : v) flags |= NonFiniteFlag(x);
  EXPECT_TRUE(FlagsFinite(flags));
}

TEST(FiniteTest, FlagsOfEveryNanAndInfinityAreNotFiniteAndAnOrKeepsThem) {
  const uint32_t nan_bits[] = {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0x7fffffffu, 0xffffffffu};
  for (uint32_t bits : nan_bits) {
    float v;
    std::memcpy(&v, &bits, sizeof(v));
    EXPECT_FALSE(FlagsFinite(NonFiniteFlag(v))) << std::hex << bits;
    // Finite values ORed in later do not hide it.
    EXPECT_FALSE(FlagsFinite(NonFiniteFlag(v) | NonFiniteFlag(1.0f) | NonFiniteFlag(-3e38f)));
  }
  EXPECT_FALSE(FlagsFinite(NonFiniteFlag(INFINITY)));
  EXPECT_FALSE(FlagsFinite(NonFiniteFlag(-INFINITY)));
  for (int64_t n : {1, 7, 8, 9, 13, 4097}) {
    for (int64_t bad : {int64_t{0}, n / 2, n - 1}) {
      std::vector<float> v(static_cast<size_t>(n), 2.5f);
      v[bad] = bad % 2 ? INFINITY : NAN;
      EXPECT_EQ(FindNonFinite(v.data(), n), bad) << n;
    }
  }
}

// The server's check inside the update: the first row left non-finite, in one call and per lane.
TEST(FiniteTest, SparseUpdateReportsTheFirstRowItLeftNonFinite) {
  constexpr int kDim = 5;
  constexpr int64_t kRows = 150;  // blocks of 64 rows and a partial one
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam,
                             OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    OptimizerParams p;
    p.kind = kind;
    const int row_floats = kDim + OptimizerStateFloats(kind, kDim);
    std::vector<std::vector<float>> storage(kRows, std::vector<float>(row_floats, 0.0f));
    std::vector<float*> rows;
    for (auto& r : storage) rows.push_back(r.data());
    std::vector<float> grads(kRows * kDim, 0.25f);
    int64_t bad = -1;
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), grads.data(), kRows, kDim, &bad).ok());
    EXPECT_EQ(bad, kRows);
    grads[130 * kDim + 4] = INFINITY;
    grads[70 * kDim + 1] = NAN;
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), grads.data(), kRows, kDim, &bad).ok());
    EXPECT_EQ(bad, 70) << OptimizerName(kind);
    // Per lane: each lane reports its own first bad row; the smaller one is the call's.
    int64_t lane_bad[2];
    for (int lane = 0; lane < 2; ++lane) {
      ASSERT_TRUE(ApplySparseUpdateCpuLane(p, rows.data(), grads.data(), kRows, kDim, lane, 2,
                                           &lane_bad[lane])
                      .ok());
    }
    EXPECT_EQ(std::min(lane_bad[0], lane_bad[1]), 70) << OptimizerName(kind);
    for (int lane = 0; lane < 2; ++lane) {
      EXPECT_TRUE(lane_bad[lane] == kRows || RowLane(rows[lane_bad[lane]], 2) == lane);
    }
    // A row given twice whose second update goes bad is named by its first index; the flags run
    // on over the call, so a bad row in the last, partial block of SIMD lanes is found too.
    std::vector<float> twice(row_floats, 0.0f), last(row_floats, 0.0f);
    std::vector<float*> repeated = {twice.data(), rows[3], twice.data(), last.data()};
    std::vector<float> repeated_grads(4 * kDim, 0.5f);
    repeated_grads[2 * kDim + 3] = NAN;
    ASSERT_TRUE(
        ApplySparseUpdateCpu(p, repeated.data(), repeated_grads.data(), 4, kDim, &bad).ok());
    EXPECT_EQ(bad, 0) << OptimizerName(kind);
    std::vector<float> fresh(row_floats, 0.0f);
    repeated = {fresh.data(), last.data()};
    repeated_grads.assign(2 * kDim, 0.5f);
    repeated_grads[kDim + kDim - 1] = INFINITY;
    ASSERT_TRUE(
        ApplySparseUpdateCpu(p, repeated.data(), repeated_grads.data(), 2, kDim, &bad).ok());
    EXPECT_EQ(bad, 1) << OptimizerName(kind);
  }
}

// The row loops run full-width SIMD blocks, narrower epilogues and a scalar remainder (by the
// clone the CPU picks): a NaN written at any position of a row of any width is seen.
TEST(FiniteTest, ANonFiniteWeightAtAnyPositionOfARowIsSeen) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam,
                             OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    OptimizerParams p;
    p.kind = kind;
    for (int dim : {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 64, 129}) {
      const int row_floats = dim + OptimizerStateFloats(kind, dim);
      for (int pos = 0; pos < dim; ++pos) {
        std::vector<std::vector<float>> storage(3, std::vector<float>(row_floats, 0.0f));
        std::vector<float*> rows = {storage[0].data(), storage[1].data(), storage[2].data()};
        std::vector<float> grads(3 * dim, 0.25f);
        grads[dim + pos] = NAN;
        int64_t bad = -1;
        ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), grads.data(), 3, dim, &bad).ok());
        ASSERT_EQ(bad, 1) << OptimizerName(kind) << " dim " << dim << " position " << pos;
      }
    }
  }
}

}  // namespace
}  // namespace tessera::kernels
