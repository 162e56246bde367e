// CPU embedding gather and pool (kernels/embedding.h) and their backwards, checked against naive
// loops and central finite differences of L = sum_k r_k * y_k (see dense_kernels_test.cc), with
// repeated rows, empty bags and bad indices.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/embedding.h"
#include "tests/kernels/ctr_kernels_test_util.h"

namespace tessera::kernels {
namespace {

using test_util::Dot;
using test_util::ExpectMatchesFiniteDifferences;
using test_util::ExpectNear;
using test_util::kNan;
using test_util::Random;
using test_util::RandomIndices;

// ---------------------------------------------------------------- Embedding gather / pool

TEST(CtrEmbeddingTest, GatherAndBackwardMatchNaiveLoopsWithRepeatedRows) {
  std::mt19937 rng(61);
  const int64_t num_rows = 5, batch = 9;
  const int fields = 3, dim = 7;
  const std::vector<float> rows = Random(&rng, num_rows * dim);
  const std::vector<int32_t> indices = RandomIndices(&rng, batch * fields, num_rows);  // repeats
  std::vector<float> out(batch * fields * dim, kNan);
  ASSERT_TRUE(
      EmbeddingGatherCpu(rows.data(), num_rows, indices.data(), out.data(), batch, fields, dim)
          .ok());
  const std::vector<float> grad_out = Random(&rng, out.size());
  std::vector<float> grad_rows(rows.size(), 0.5f);  // added to
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(indices.data(), grad_out.data(), grad_rows.data(),
                                         num_rows, batch, fields, dim)
                  .ok());
  std::vector<float> naive_grad(rows.size(), 0.5f);  // same order of additions: bitwise equal
  for (int64_t i = 0; i < batch * fields; ++i) {
    for (int d = 0; d < dim; ++d) {
      EXPECT_EQ(out[i * dim + d], rows[indices[i] * dim + d]);
      naive_grad[indices[i] * dim + d] += grad_out[i * dim + d];
    }
  }
  EXPECT_EQ(grad_rows, naive_grad);
}

TEST(CtrEmbeddingTest, PoolAndBackwardMatchNaiveLoops) {
  std::mt19937 rng(62);
  const int64_t num_rows = 4;
  const int dim = 5;
  // Bags of sizes 3, 0, 1, 4 (the last repeats row 2): a CSR over 8 positions.
  const std::vector<int64_t> offsets = {0, 3, 3, 4, 8};
  const std::vector<int32_t> indices = {0, 3, 1, 2, 2, 0, 2, 3};
  const std::vector<float> weights = Random(&rng, indices.size());
  const std::vector<float> rows = Random(&rng, num_rows * dim);
  const int64_t num_bags = 4;
  for (bool weighted : {true, false}) {
    const float* w = weighted ? weights.data() : nullptr;
    std::vector<float> out(num_bags * dim, kNan);
    ASSERT_TRUE(EmbeddingPoolCpu(rows.data(), num_rows, offsets.data(), indices.data(), w,
                                 out.data(), num_bags, dim)
                    .ok());
    const std::vector<float> grad_out = Random(&rng, out.size());
    std::vector<float> grad_rows(rows.size(), 0.0f);
    ASSERT_TRUE(EmbeddingPoolBackwardCpu(offsets.data(), indices.data(), w, grad_out.data(),
                                         grad_rows.data(), num_rows, num_bags, dim)
                    .ok());
    std::vector<double> naive_out(out.size(), 0.0), naive_grad(rows.size(), 0.0);
    for (int64_t k = 0; k < num_bags; ++k) {
      for (int64_t p = offsets[k]; p < offsets[k + 1]; ++p) {
        const double weight = weighted ? weights[p] : 1.0;
        for (int d = 0; d < dim; ++d) {
          naive_out[k * dim + d] += weight * rows[indices[p] * dim + d];
          naive_grad[indices[p] * dim + d] += weight * grad_out[k * dim + d];
        }
      }
    }
    ExpectNear(out, naive_out, 1e-6, weighted ? "weighted out" : "out");
    ExpectNear(grad_rows, naive_grad, 1e-6, weighted ? "weighted grad" : "grad");
    for (int d = 0; d < dim; ++d) EXPECT_EQ(out[1 * dim + d], 0.0f);  // empty bag
  }
}

TEST(CtrEmbeddingTest, BackwardsMatchFiniteDifferences) {
  std::mt19937 rng(63);
  const int64_t num_rows = 3, batch = 4;
  const int fields = 2, dim = 3;
  std::vector<float> rows = Random(&rng, num_rows * dim);
  const std::vector<int32_t> indices = RandomIndices(&rng, batch * fields, num_rows);
  const std::vector<float> r = Random(&rng, batch * fields * dim);
  std::vector<float> out(r.size());
  const auto gather_loss = [&]() {
    EXPECT_TRUE(
        EmbeddingGatherCpu(rows.data(), num_rows, indices.data(), out.data(), batch, fields, dim)
            .ok());
    return Dot(r, out);
  };
  std::vector<float> grad_rows(rows.size(), 0.0f);
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(indices.data(), r.data(), grad_rows.data(), num_rows,
                                         batch, fields, dim)
                  .ok());
  ExpectMatchesFiniteDifferences(gather_loss, &rows, grad_rows, "gather grad_rows");

  // Pool the same positions as batch * fields bags of 1..3 keys, weighted.
  const std::vector<int64_t> offsets = {0, 2, 3, 6, 7, 8, 8, 10, 11};
  const std::vector<int32_t> pool_indices = RandomIndices(&rng, 11, num_rows);
  const std::vector<float> weights = Random(&rng, 11);
  const auto pool_loss = [&]() {
    EXPECT_TRUE(EmbeddingPoolCpu(rows.data(), num_rows, offsets.data(), pool_indices.data(),
                                 weights.data(), out.data(), batch * fields, dim)
                    .ok());
    return Dot(r, out);
  };
  std::fill(grad_rows.begin(), grad_rows.end(), 0.0f);
  ASSERT_TRUE(EmbeddingPoolBackwardCpu(offsets.data(), pool_indices.data(), weights.data(),
                                       r.data(), grad_rows.data(), num_rows, batch * fields, dim)
                  .ok());
  ExpectMatchesFiniteDifferences(pool_loss, &rows, grad_rows, "pool grad_rows");
}

TEST(CtrEmbeddingTest, SizesZeroAndOne) {
  ASSERT_TRUE(EmbeddingGatherCpu(nullptr, 0, nullptr, nullptr, 0, 2, 3).ok());
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(nullptr, nullptr, nullptr, 0, 0, 2, 3).ok());
  ASSERT_TRUE(EmbeddingPoolCpu(nullptr, 0, nullptr, nullptr, nullptr, nullptr, 0, 3).ok());
  ASSERT_TRUE(EmbeddingPoolBackwardCpu(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, 3).ok());
  const std::vector<float> row = {4.0f};
  const int32_t index = 0;
  float out = kNan, grad = 1.0f;
  const float grad_out = 2.0f;
  ASSERT_TRUE(EmbeddingGatherCpu(row.data(), 1, &index, &out, 1, 1, 1).ok());
  EXPECT_EQ(out, 4.0f);
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(&index, &grad_out, &grad, 1, 1, 1, 1).ok());
  EXPECT_EQ(grad, 3.0f);
  // All bags empty: zeros, and nothing read from rows.
  const std::vector<int64_t> offsets = {0, 0, 0};
  std::vector<float> pooled(2, kNan);
  ASSERT_TRUE(
      EmbeddingPoolCpu(nullptr, 0, offsets.data(), &index, nullptr, pooled.data(), 2, 1).ok());
  EXPECT_EQ(pooled, (std::vector<float>{0, 0}));
}

TEST(CtrEmbeddingTest, RejectsBadIndicesAndOffsetsWithoutWriting) {
  const std::vector<float> rows(6, 1.0f);
  const std::vector<int32_t> indices = {0, 2, 3};  // 3 is out of range for 3 rows
  std::vector<float> out(6, kNan);
  EXPECT_EQ(EmbeddingGatherCpu(rows.data(), 3, indices.data(), out.data(), 3, 1, 2).code(),
            StatusCode::kInvalidArgument);
  for (float v : out) EXPECT_TRUE(std::isnan(v));  // nothing written
  std::vector<float> grad(6, 0.0f);
  EXPECT_EQ(EmbeddingGatherBackwardCpu(indices.data(), rows.data(), grad.data(), 3, 3, 1, 2).code(),
            StatusCode::kInvalidArgument);
  for (float v : grad) EXPECT_EQ(v, 0.0f);
  const std::vector<int32_t> negative = {-1};
  EXPECT_EQ(EmbeddingGatherCpu(rows.data(), 3, negative.data(), out.data(), 1, 1, 2).code(),
            StatusCode::kInvalidArgument);
  const std::vector<int64_t> decreasing = {0, 2, 1};
  EXPECT_EQ(
      EmbeddingPoolCpu(rows.data(), 3, decreasing.data(), indices.data(), nullptr, out.data(), 2, 2)
          .code(),
      StatusCode::kInvalidArgument);
  const std::vector<int64_t> past_valid = {0, 3};  // position 2 holds the bad index 3
  EXPECT_EQ(
      EmbeddingPoolCpu(rows.data(), 3, past_valid.data(), indices.data(), nullptr, out.data(), 1, 2)
          .code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingPoolBackwardCpu(past_valid.data(), indices.data(), nullptr, rows.data(),
                                     grad.data(), 3, 1, 2)
                .code(),
            StatusCode::kInvalidArgument);
  for (float v : out) EXPECT_TRUE(std::isnan(v));
  for (float v : grad) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(EmbeddingGatherCpu(rows.data(), 3, indices.data(), out.data(), 1, 0, 2).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::kernels
