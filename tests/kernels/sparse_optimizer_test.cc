// The sparse updates of each optimizer on CPU (kernels/sparse_optimizer.h): SGD, Adagrad, lazy
// Adam and FTRL against values computed by hand from the formulas (written next to each test, in
// double precision) and elementwise references for every dim.
#include "kernels/sparse_optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/optimizer_math.h"
#include "tests/kernels/optimizer_test_util.h"

namespace tessera::kernels {
namespace {

using test_util::Adagrad;
using test_util::Adam;
using test_util::Ftrl;
using test_util::kBetaRounding;
using test_util::Sgd;

// ---- Sparse SGD ----

TEST(SparseSgdTest, MatchesHandComputedValues) {
  std::vector<float> row0 = {1.0f, -2.0f, 0.5f};
  std::vector<float> row1 = {0.0f, 4.0f, -1.0f};
  float* rows[] = {row0.data(), row1.data()};
  const std::vector<float> grads = {0.5f, -1.0f, 2.0f, /* row1 */ 10.0f, 0.0f, -3.0f};
  ASSERT_TRUE(ApplySparseUpdateCpu(Sgd(0.1f), rows, grads.data(), 2, 3).ok());
  EXPECT_FLOAT_EQ(row0[0], 0.95f);
  EXPECT_FLOAT_EQ(row0[1], -1.9f);
  EXPECT_FLOAT_EQ(row0[2], 0.3f);
  EXPECT_FLOAT_EQ(row1[0], -1.0f);
  EXPECT_FLOAT_EQ(row1[1], 4.0f);
  EXPECT_FLOAT_EQ(row1[2], -0.7f);
}

TEST(SparseSgdTest, RepeatedRowPointerIsUpdatedSequentially) {
  std::vector<float> row = {1.0f};
  float* rows[] = {row.data(), row.data()};
  const std::vector<float> grads = {0.5f, 0.25f};
  ASSERT_TRUE(ApplySparseUpdate(DeviceContext{}, Sgd(0.1f), rows, grads.data(), 2, 1).ok());
  EXPECT_FLOAT_EQ(row[0], 0.925f);  // 1 - 0.05 - 0.025
}

// ---- Sparse Adagrad ----

TEST(SparseAdagradTest, MatchesHandComputedValues) {
  // Row layout [w0 w1 | acc0 acc1].
  std::vector<float> row = {1.0f, 2.0f, 0.0f, 0.0f};
  float* rows[] = {row.data()};
  const std::vector<float> grads = {3.0f, -4.0f};
  const OptimizerParams p = Adagrad(0.1f, 0.0f, 0.0f);
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, grads.data(), 1, 2).ok());
  EXPECT_FLOAT_EQ(row[0], 0.9f);  // 1 - 0.1 * 3 / 3
  EXPECT_FLOAT_EQ(row[1], 2.1f);  // 2 + 0.1 * 4 / 4
  EXPECT_FLOAT_EQ(row[2], 9.0f);
  EXPECT_FLOAT_EQ(row[3], 16.0f);
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, grads.data(), 1, 2).ok());
  EXPECT_FLOAT_EQ(row[0], 0.82928932f);  // 0.9 - 0.3 / sqrt(18)
  EXPECT_FLOAT_EQ(row[1], 2.17071068f);  // 2.1 + 0.4 / sqrt(32)
  EXPECT_FLOAT_EQ(row[2], 18.0f);
  EXPECT_FLOAT_EQ(row[3], 32.0f);
}

TEST(SparseAdagradTest, InitialAccumulatorAndZeroGradientBehaveAsHandComputed) {
  const OptimizerParams p = Adagrad(0.1f, 0.0f, 7.0f);
  std::vector<float> row = {1.0f, 2.0f, 0.0f, 0.0f};
  InitOptimizerState(p, row.data() + 2, 2);
  float* rows[] = {row.data()};
  const std::vector<float> grads = {3.0f, 0.0f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, grads.data(), 1, 2).ok());
  EXPECT_FLOAT_EQ(row[0], 0.925f);  // acc 7 + 9 = 16: 1 - 0.1 * 3 / 4
  EXPECT_FLOAT_EQ(row[1], 2.0f);    // zero gradient leaves the weight
  EXPECT_FLOAT_EQ(row[2], 16.0f);
  EXPECT_FLOAT_EQ(row[3], 7.0f);
}

TEST(SparseAdagradTest, EpsilonKeepsZeroAccumulatorFinite) {
  std::vector<float> row = {1.0f, 0.0f};
  float* rows[] = {row.data()};
  const float grad = 0.0f;
  ASSERT_TRUE(ApplySparseUpdateCpu(Adagrad(0.1f, 1e-8f, 0.0f), rows, &grad, 1, 1).ok());
  EXPECT_EQ(row[0], 1.0f);
  EXPECT_EQ(row[1], 0.0f);
}

TEST(SparseAdagradTest, RepeatedRowPointerIsUpdatedSequentially) {
  std::vector<float> row = {1.0f, 0.0f};
  float* rows[] = {row.data(), row.data()};
  const std::vector<float> grads = {3.0f, 3.0f};
  ASSERT_TRUE(ApplySparseUpdateCpu(Adagrad(0.1f, 0.0f, 0.0f), rows, grads.data(), 2, 1).ok());
  EXPECT_FLOAT_EQ(row[0], 0.82928932f);  // same as two single steps
  EXPECT_FLOAT_EQ(row[1], 18.0f);
}

// Dims around the 8-float unrolled block (and its scalar remainder) against a plain loop.
TEST(SparseAdagradTest, EveryDimMatchesElementwiseReference) {
  const unsigned seed = 1234;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const OptimizerParams p = Adagrad(0.05f, 1e-8f, 0.1f);
  for (int dim = 1; dim <= 41; ++dim) {
    SCOPED_TRACE("dim=" + std::to_string(dim));
    const int num_rows = 3;
    std::vector<float> table(num_rows * 2 * dim);
    for (float& v : table) v = uniform(rng);
    for (int i = 0; i < num_rows; ++i) InitOptimizerState(p, &table[i * 2 * dim + dim], dim);
    std::vector<float> grads(num_rows * dim);
    for (float& v : grads) v = uniform(rng);
    std::vector<float> expected = table;
    for (int i = 0; i < num_rows; ++i) {
      for (int j = 0; j < dim; ++j) {
        float& acc = expected[i * 2 * dim + dim + j];
        acc += grads[i * dim + j] * grads[i * dim + j];
        float& w = expected[i * 2 * dim + j];
        w -= p.lr * grads[i * dim + j] / (std::sqrt(acc) + p.eps);
      }
    }
    // Reverse order: rows need not be sorted or contiguous in the pointer list.
    std::vector<float*> rows;
    std::vector<float> ordered_grads;
    for (int i = num_rows - 1; i >= 0; --i) {
      rows.push_back(&table[i * 2 * dim]);
      ordered_grads.insert(ordered_grads.end(), grads.begin() + i * dim,
                           grads.begin() + (i + 1) * dim);
    }
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), ordered_grads.data(), num_rows, dim).ok());
    // Bit for bit: the kernel runs its widest clone for this CPU (kernels/cpu_simd.h), the
    // reference scalar code; the same IEEE operations give the same bits at any width.
    for (size_t k = 0; k < table.size(); ++k) EXPECT_EQ(table[k], expected[k]) << k;
  }
}

// ---- Sparse row-wise Adagrad ----

OptimizerParams RowwiseAdagrad(float lr, float eps, float initial_accumulator) {
  OptimizerParams p = Adagrad(lr, eps, initial_accumulator);
  p.kind = OptimizerKind::kRowwiseAdagrad;
  return p;
}

// One row [w0, w1 | acc] = [1, -1 | 0.5], g = (3, 1): acc = 0.5 + (9 + 1) / 2 = 5.5, scale =
// 0.1 / sqrt(5.5) = 0.042640143; w0 = 1 - 3 scale = 0.87207957, w1 = -1 - scale = -1.0426401.
// A second row given twice takes both steps in order.
TEST(SparseRowwiseAdagradTest, MatchesHandComputedValues) {
  std::vector<float> row = {1.0f, -1.0f, 0.5f};
  std::vector<float> twice = {2.0f, 0.0f, 0.0f};
  float* rows[] = {row.data(), twice.data(), twice.data()};
  const std::vector<float> grads = {3.0f, 1.0f, 2.0f, 0.0f, 2.0f, 0.0f};
  ASSERT_TRUE(
      ApplySparseUpdateCpu(RowwiseAdagrad(0.1f, 0.0f, 0.0f), rows, grads.data(), 3, 2).ok());
  EXPECT_FLOAT_EQ(row[2], 5.5f);
  EXPECT_FLOAT_EQ(row[0], 0.87207957f);
  EXPECT_FLOAT_EQ(row[1], -1.0426401f);
  // acc 2 then 4; w0 = 2 - 0.1 * 2 / sqrt(2) - 0.1 * 2 / sqrt(4) = 1.7585786.
  EXPECT_FLOAT_EQ(twice[2], 4.0f);
  EXPECT_FLOAT_EQ(twice[0], 1.7585786f);
  EXPECT_EQ(twice[1], 0.0f);
}

// Dims around the 16 lanes of the mean square (and its remainder) against a plain loop that sums
// in the documented lane order; the state is one float after the dim weights.
TEST(SparseRowwiseAdagradTest, EveryDimMatchesLaneOrderReference) {
  const unsigned seed = 4321;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const OptimizerParams p = RowwiseAdagrad(0.05f, 1e-8f, 0.1f);
  for (int dim = 1; dim <= 41; ++dim) {
    SCOPED_TRACE("dim=" + std::to_string(dim));
    const int num_rows = 3, row_floats = dim + 1;
    ASSERT_EQ(OptimizerStateFloats(p.kind, dim), 1);
    std::vector<float> table(num_rows * row_floats);
    for (float& v : table) v = uniform(rng);
    for (int i = 0; i < num_rows; ++i) InitOptimizerState(p, &table[i * row_floats + dim], dim);
    std::vector<float> grads(num_rows * dim);
    for (float& v : grads) v = uniform(rng);
    std::vector<float> expected = table;
    for (int i = 0; i < num_rows; ++i) {
      float lanes[16] = {};
      for (int j = 0; j < dim; ++j) lanes[j % 16] += grads[i * dim + j] * grads[i * dim + j];
      float sum = 0.0f;
      for (float lane : lanes) sum += lane;
      float& acc = expected[i * row_floats + dim];
      acc += sum / static_cast<float>(dim);
      const float scale = p.lr / (std::sqrt(acc) + p.eps);
      for (int j = 0; j < dim; ++j) expected[i * row_floats + j] -= scale * grads[i * dim + j];
    }
    std::vector<float*> rows;
    for (int i = 0; i < num_rows; ++i) rows.push_back(&table[i * row_floats]);
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), grads.data(), num_rows, dim).ok());
    for (size_t k = 0; k < table.size(); ++k) EXPECT_EQ(table[k], expected[k]) << k;
  }
}

// ---- Sparse Adam (lazy) ----

TEST(SparseAdamTest, MatchesHandComputedValuesAndCountsSteps) {
  // Row layout [w | m | v | step], dim 1; values as in AdamStepMatchesHandComputedValues, plus
  // t = 3 with g = 0.5: m = 0.122, v = 0.005241004, step size = 0.1 sqrt(1 - 0.999^3) / 0.271
  // = 0.02020106, w = 0.8733663 - 0.02020106 * 0.122 / sqrt(0.005241004) = 0.83932338.
  const OptimizerParams p = Adam(0.1f, 0.9f, 0.999f, 0.0f);
  std::vector<float> row(1 + OptimizerStateFloats(OptimizerKind::kAdam, 1), -7.0f);
  row[0] = 1.0f;
  InitOptimizerState(p, row.data() + 1, 1);
  float* rows[] = {row.data()};
  for (float g : {2.0f, -1.0f, 0.5f}) {
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, &g, 1, 1).ok());
  }
  EXPECT_FLOAT_EQ(row[0], 0.83932338f);
  EXPECT_FLOAT_EQ(row[1], 0.122f);
  EXPECT_NEAR(row[2], 0.005241004f, kBetaRounding * 0.005241004f);
  EXPECT_EQ(row[3], 3.0f);
}

// Lazy Adam: a row that was not in a push keeps its moments and its step; its first update
// uses t = 1 whatever the other rows have had, so (eps 0) it moves by exactly lr * sign(g).
// A global t = 3 would give step size 0.02020106 and a move of 0.02020106 * 0.1 g / sqrt(0.001
// g^2) = 0.0638812 instead.
TEST(SparseAdamTest, BiasCorrectionUsesTheRowsOwnStep) {
  const int dim = 2;
  const OptimizerParams p = Adam(0.1f, 0.9f, 0.999f, 0.0f);
  const int row_floats = dim + OptimizerStateFloats(OptimizerKind::kAdam, dim);
  std::vector<float> a(row_floats, 0.0f), b(row_floats, 0.0f);
  a[0] = 1.0f;
  b[0] = 1.0f;
  b[1] = -1.0f;
  InitOptimizerState(p, a.data() + dim, dim);
  InitOptimizerState(p, b.data() + dim, dim);
  const std::vector<float> b_before = b;
  float* only_a[] = {a.data()};
  const std::vector<float> g = {2.0f, -1.0f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, only_a, g.data(), 1, dim).ok());
  ASSERT_TRUE(ApplySparseUpdateCpu(p, only_a, g.data(), 1, dim).ok());
  EXPECT_EQ(b, b_before);  // untouched: lazy
  EXPECT_EQ(a[3 * dim], 2.0f);
  float* both[] = {a.data(), b.data()};
  const std::vector<float> g2 = {0.5f, 0.5f, /* b */ 3.0f, -0.25f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, both, g2.data(), 2, dim).ok());
  EXPECT_EQ(a[3 * dim], 3.0f);
  EXPECT_EQ(b[3 * dim], 1.0f);
  EXPECT_FLOAT_EQ(b[0], 0.9f);                                      // 1 - 0.1
  EXPECT_FLOAT_EQ(b[1], -0.9f);                                     // -1 + 0.1
  EXPECT_FLOAT_EQ(b[dim], 0.3f);                                    // m = 0.1 g
  EXPECT_NEAR(b[2 * dim + 1], 6.25e-5f, kBetaRounding * 6.25e-5f);  // v = 0.001 g^2
}

TEST(SparseAdamTest, RepeatedRowPointerIsUpdatedSequentially) {
  const OptimizerParams p = Adam(0.1f, 0.9f, 0.999f, 0.0f);
  std::vector<float> once(4, 0.0f), twice(4, 0.0f);
  once[0] = twice[0] = 1.0f;
  float* single[] = {once.data()};
  const std::vector<float> grads = {2.0f, -1.0f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, single, &grads[0], 1, 1).ok());
  ASSERT_TRUE(ApplySparseUpdateCpu(p, single, &grads[1], 1, 1).ok());
  float* repeated[] = {twice.data(), twice.data()};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, repeated, grads.data(), 2, 1).ok());
  EXPECT_EQ(twice, once);
  EXPECT_FLOAT_EQ(twice[0], 0.87336630f);
  EXPECT_EQ(twice[3], 2.0f);
}

// The float step stays at 2^24 (2^24 + 1 rounds back); bias corrections are 1 there: with m = v
// = 0, g = 2, lr 0.1, eps 0: m = 0.2, v = 0.004, w = 1 - 0.1 * 0.2 / sqrt(0.004) = 0.6837722.
TEST(SparseAdamTest, StepCountFreezesAt2To24WithoutChangingTheUpdate) {
  const OptimizerParams p = Adam(0.1f, 0.9f, 0.999f, 0.0f);
  std::vector<float> row = {1.0f, 0.0f, 0.0f, 16777216.0f};
  float* rows[] = {row.data()};
  const float g = 2.0f;
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, &g, 1, 1).ok());
  EXPECT_EQ(row[3], 16777216.0f);
  EXPECT_NEAR(row[0], 0.6837722f, 1e-5f);  // v carries 1 - 0.999f's rounding
}

// Dims around the 8-float unrolled block (and its scalar remainder) against a plain loop.
TEST(SparseAdamTest, EveryDimMatchesElementwiseReference) {
  const unsigned seed = 4321;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const OptimizerParams p = Adam(0.01f, 0.9f, 0.99f, 1e-8f);
  for (int dim = 1; dim <= 41; ++dim) {
    SCOPED_TRACE("dim=" + std::to_string(dim));
    const int num_rows = 3;
    const int row_floats = 4 * dim + 1;
    std::vector<float> table(num_rows * row_floats);
    for (float& v : table) v = uniform(rng);
    for (int i = 0; i < num_rows; ++i) {
      float* row = &table[i * row_floats];
      for (int j = 0; j < dim; ++j) row[2 * dim + j] = std::fabs(row[2 * dim + j]);  // v >= 0
      row[3 * dim] = static_cast<float>(i * 5);                                      // step
    }
    std::vector<float> grads(num_rows * dim);
    for (float& v : grads) v = uniform(rng);
    std::vector<float> expected = table;
    for (int i = 0; i < num_rows; ++i) {
      float* row = &expected[i * row_floats];
      const float t = row[3 * dim] + 1.0f;
      const float step_size =
          p.lr * std::sqrt(1.0f - std::pow(p.beta2, t)) / (1.0f - std::pow(p.beta1, t));
      for (int j = 0; j < dim; ++j) {
        const float g = grads[i * dim + j];
        float& m = row[dim + j];
        float& v = row[2 * dim + j];
        m = p.beta1 * m + (1.0f - p.beta1) * g;
        v = p.beta2 * v + (1.0f - p.beta2) * g * g;
        row[j] -= step_size * m / (std::sqrt(v) + p.eps);
      }
      row[3 * dim] = t;
    }
    std::vector<float*> rows;
    for (int i = 0; i < num_rows; ++i) rows.push_back(&table[i * row_floats]);
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), grads.data(), num_rows, dim).ok());
    for (size_t k = 0; k < table.size(); ++k) EXPECT_FLOAT_EQ(table[k], expected[k]) << k;
  }
}

// ---- Sparse FTRL ----

TEST(SparseFtrlTest, MatchesHandComputedValues) {
  // Row layout [w0 w1 | z0 z1 | n0 n1]; element 0 follows FtrlStepMatchesHandComputedValues
  // (g = 2, -1), element 1 gets g = 0.3, -0.1: z = 0.3, then 0.2, inside l1 = 0.5, so w1 stays 0.
  const OptimizerParams p = Ftrl(0.1f, 1.0f, 0.5f, 1.0f);
  std::vector<float> row(6, 0.0f);
  InitOptimizerStateForRow(p, row.data(), 2);
  float* rows[] = {row.data()};
  const std::vector<float> g1 = {2.0f, 0.3f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, g1.data(), 1, 2).ok());
  EXPECT_FLOAT_EQ(row[0], -1.5f / 31.0f);
  EXPECT_EQ(row[1], 0.0f);
  const std::vector<float> g2 = {-1.0f, -0.1f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, g2.data(), 1, 2).ok());
  EXPECT_FLOAT_EQ(row[0], -0.018411688f);
  EXPECT_EQ(row[1], 0.0f);
  EXPECT_FLOAT_EQ(row[2], 1.1142264f);
  EXPECT_FLOAT_EQ(row[3], 0.2f);
  EXPECT_FLOAT_EQ(row[4], 5.0f);
  EXPECT_FLOAT_EQ(row[5], 0.1f);
}

// A row created with non-zero weights: InitOptimizerStateForRow sets z so that the weight is
// what FTRL gives for the state. Hand-computed (alpha 0.1, beta 1, l1 0.5, l2 1): w = 0.25 gives
// z = -3.25, n = 0; then g = 0.5: sigma = 0.5 / 0.1 = 5, z = -3.25 + 0.5 - 5 * 0.25 = -4,
// n = 0.25, w = (4 - 0.5) / ((1 + 0.5) / 0.1 + 1) = 3.5 / 16 = 0.21875.
TEST(SparseFtrlTest, InitFromNonZeroWeightsKeepsTheWeightsAndTheirState) {
  const OptimizerParams p = Ftrl(0.1f, 1.0f, 0.5f, 1.0f);
  std::vector<float> row = {0.25f, -0.25f, 0.0f, 1e-9f, /* state */ 9, 9, 9, 9, 9, 9, 9, 9};
  InitOptimizerStateForRow(p, row.data(), 4);
  EXPECT_EQ(row[0], 0.25f);  // 2.75 / 11 is exact in float
  EXPECT_EQ(row[1], -0.25f);
  EXPECT_EQ(row[2], 0.0f);
  EXPECT_EQ(row[3], 0.0f);  // 1e-9 * 11 is lost against l1 = 0.5 in float: |z| = l1, weight 0
  EXPECT_EQ(row[4], -3.25f);
  EXPECT_EQ(row[5], 3.25f);
  EXPECT_EQ(row[6], 0.0f);
  EXPECT_EQ(row[7], -0.5f);
  for (int j = 8; j < 12; ++j) EXPECT_EQ(row[j], 0.0f);  // n
  float* rows[] = {row.data()};
  const std::vector<float> g = {0.5f, -0.5f, 0.0f, 0.0f};
  ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, g.data(), 1, 4).ok());
  EXPECT_FLOAT_EQ(row[0], 0.21875f);
  EXPECT_FLOAT_EQ(row[1], -0.21875f);
  EXPECT_EQ(row[2], 0.0f);  // zero gradient, zero weight: unchanged
  EXPECT_EQ(row[3], 0.0f);
  EXPECT_FLOAT_EQ(row[4], -4.0f);
  EXPECT_FLOAT_EQ(row[8], 0.25f);
}

// Random initial weights (as a table with init_std > 0 makes them): after InitOptimizerStateForRow
// each weight is within float rounding of its initial value, and a zero-gradient update leaves
// the row as it is (the weight the state gives is the weight stored).
TEST(SparseFtrlTest, InitFromRandomWeightsIsConsistentWithTheState) {
  const unsigned seed = 99;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  for (const OptimizerParams& p : {Ftrl(0.05f, 1.0f, 0.0f, 0.0f), Ftrl(0.05f, 1.0f, 0.01f, 0.1f),
                                   Ftrl(1.0f, 0.5f, 1.0f, 2.0f)}) {
    const int dim = 37;
    std::vector<float> row(3 * dim);
    for (int j = 0; j < dim; ++j) row[j] = normal(rng);
    const std::vector<float> initial(row.begin(), row.begin() + dim);
    InitOptimizerStateForRow(p, row.data(), dim);
    // z = -(w d + sgn(w) l1) with d = beta / alpha + l2 is rounded relative to |z|, so the
    // weight comes back within a few ulps of |z| / d.
    const float d = p.ftrl_beta / p.lr + p.l2;
    for (int j = 0; j < dim; ++j) {
      EXPECT_NEAR(row[j], initial[j], 1e-6f * (std::fabs(initial[j]) * d + p.l1) / d) << j;
      EXPECT_EQ(row[2 * dim + j], 0.0f);
    }
    const std::vector<float> after_init = row;
    float* rows[] = {row.data()};
    const std::vector<float> zeros(dim, 0.0f);
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, zeros.data(), 1, dim).ok());
    for (int j = 0; j < 3 * dim; ++j) EXPECT_EQ(row[j], after_init[j]) << j;
  }
}

TEST(SparseFtrlTest, InitOptimizerStateForRowLeavesOtherKindsWeightsAlone) {
  for (const OptimizerParams& p :
       {Sgd(0.1f), Adagrad(0.1f, 1e-8f, 0.5f), Adam(0.1f, 0.9f, 0.999f, 1e-8f)}) {
    const int dim = 3;
    std::vector<float> row(dim + OptimizerStateFloats(p.kind, dim), -1.0f);
    row[0] = 0.3f;
    std::vector<float> expected = row;
    InitOptimizerState(p, expected.data() + dim, dim);
    InitOptimizerStateForRow(p, row.data(), dim);
    EXPECT_EQ(row, expected) << OptimizerName(p.kind);
  }
}

TEST(SparseFtrlTest, EveryDimMatchesElementwiseReference) {
  const unsigned seed = 5678;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const OptimizerParams p = Ftrl(0.05f, 1.0f, 0.2f, 0.5f);
  const float alpha = p.lr, beta = p.ftrl_beta, l1 = p.l1, l2 = p.l2;
  for (int dim = 1; dim <= 41; ++dim) {
    SCOPED_TRACE("dim=" + std::to_string(dim));
    const int num_rows = 3;
    std::vector<float> table(num_rows * 3 * dim);
    for (int i = 0; i < num_rows; ++i) {
      float* row = &table[i * 3 * dim];
      for (int j = 0; j < dim; ++j) {
        row[dim + j] = 2.0f * uniform(rng);          // z
        row[2 * dim + j] = std::fabs(uniform(rng));  // n
        const float z = row[dim + j], n = row[2 * dim + j];
        row[j] = std::fabs(z) <= l1
                     ? 0.0f
                     : -(z - std::copysign(l1, z)) / ((beta + std::sqrt(n)) / alpha + l2);
      }
    }
    std::vector<float> grads(num_rows * dim);
    for (float& v : grads) v = uniform(rng);
    std::vector<float> expected = table;
    for (int i = 0; i < num_rows; ++i) {
      float* row = &expected[i * 3 * dim];
      for (int j = 0; j < dim; ++j) {
        const float g = grads[i * dim + j];
        float& w = row[j];
        float& z = row[dim + j];
        float& n = row[2 * dim + j];
        const float sigma = (std::sqrt(n + g * g) - std::sqrt(n)) / alpha;
        z += g - sigma * w;
        n += g * g;
        w = std::fabs(z) <= l1 ? 0.0f
                               : -(z - std::copysign(l1, z)) / ((beta + std::sqrt(n)) / alpha + l2);
      }
    }
    std::vector<float*> rows;
    for (int i = 0; i < num_rows; ++i) rows.push_back(&table[i * 3 * dim]);
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows.data(), grads.data(), num_rows, dim).ok());
    for (size_t k = 0; k < table.size(); ++k) EXPECT_FLOAT_EQ(table[k], expected[k]) << k;
  }
}

}  // namespace
}  // namespace tessera::kernels
