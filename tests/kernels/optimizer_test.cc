// Sparse optimizer kernels (CPU) and device parsing. Golden values were computed by hand from
// the formulas (Adagrad: acc += g^2; w -= lr * g / (sqrt(acc) + eps)); they do not call
// optimizer_math.h, so a wrong shared formula cannot pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/optimizer_math.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::kernels {
namespace {

OptimizerParams Sgd(float lr) {
  OptimizerParams p;
  p.kind = OptimizerKind::kSgd;
  p.lr = lr;
  return p;
}

OptimizerParams Adagrad(float lr, float eps, float initial_accumulator) {
  OptimizerParams p;
  p.kind = OptimizerKind::kAdagrad;
  p.lr = lr;
  p.eps = eps;
  p.initial_accumulator = initial_accumulator;
  return p;
}

// ---- Device ----

TEST(DeviceTest, ParseDeviceAcceptsCpuAndCuda) {
  auto cpu = ParseDevice("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ(*cpu, Device::kCpu);
  auto cuda = ParseDevice("cuda");
  ASSERT_TRUE(cuda.ok());
  EXPECT_EQ(*cuda, Device::kCuda);
  EXPECT_STREQ(DeviceName(Device::kCpu), "cpu");
  EXPECT_STREQ(DeviceName(Device::kCuda), "cuda");
}

TEST(DeviceTest, ParseDeviceRejectsUnknownNameAndListsChoices) {
  for (const std::string name : {"gpu", "", "CPU", "cuda0"}) {
    auto d = ParseDevice(name);
    ASSERT_FALSE(d.ok()) << name;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("cpu, cuda"), std::string::npos) << d.status().message();
  }
}

TEST(DeviceTest, CheckCudaAvailableIsOkOrFailedPreconditionWithReason) {
  Status s = CheckCudaAvailable();
  if (s.ok()) GTEST_SKIP() << "a CUDA device is usable here";
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  const std::string& m = s.message();
  EXPECT_TRUE(m.rfind("built without CUDA support", 0) == 0 ||
              (m.rfind("no usable CUDA device: ", 0) == 0 &&
               m.size() > std::string("no usable CUDA device: ").size()))
      << m;
#if !TESSERA_WITH_CUDA
  EXPECT_EQ(m, "built without CUDA support");
#endif
}

// ---- Parsing and state layout ----

TEST(OptimizerTest, ParseOptimizerRoundTripsNames) {
  for (OptimizerKind k : {OptimizerKind::kSgd, OptimizerKind::kAdagrad}) {
    auto parsed = ParseOptimizer(OptimizerName(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_STREQ(OptimizerName(OptimizerKind::kSgd), "sgd");
  EXPECT_STREQ(OptimizerName(OptimizerKind::kAdagrad), "adagrad");
}

TEST(OptimizerTest, ParseOptimizerRejectsUnknownNameAndListsChoices) {
  auto k = ParseOptimizer("adam");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(k.status().message().find("adam"), std::string::npos);
  EXPECT_NE(k.status().message().find("sgd, adagrad"), std::string::npos);
}

TEST(OptimizerTest, StateFloatsAreZeroForSgdAndDimForAdagrad) {
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kSgd, 32), 0);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kAdagrad, 32), 32);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kAdagrad, 7), 7);
}

TEST(OptimizerTest, InitOptimizerStateFillsAdagradAccumulators) {
  std::vector<float> state(5, -1.0f);
  InitOptimizerState(Adagrad(0.1f, 1e-8f, 0.25f), state.data(), 5);
  for (float v : state) EXPECT_EQ(v, 0.25f);
  std::vector<float> untouched(3, -1.0f);
  InitOptimizerState(Sgd(0.1f), untouched.data(), 3);
  for (float v : untouched) EXPECT_EQ(v, -1.0f);
}

// ---- Per-element math ----

TEST(OptimizerMathTest, SgdStepMatchesHandComputedValue) {
  EXPECT_FLOAT_EQ(SgdStep(1.0f, 0.5f, SgdParams{0.1f}), 0.95f);
}

TEST(OptimizerMathTest, AdagradStepMatchesHandComputedValues) {
  float acc = 0.0f;
  AdagradParams p{0.1f, 0.0f};
  EXPECT_FLOAT_EQ(AdagradStep(1.0f, 3.0f, &acc, p), 0.9f);  // acc 9, step 0.3 / 3
  EXPECT_FLOAT_EQ(acc, 9.0f);
  EXPECT_FLOAT_EQ(AdagradStep(0.9f, 3.0f, &acc, p), 0.82928932f);  // acc 18, 0.3 / sqrt(18)
  EXPECT_FLOAT_EQ(acc, 18.0f);
}

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
    for (size_t k = 0; k < table.size(); ++k) EXPECT_FLOAT_EQ(table[k], expected[k]) << k;
  }
}

// ---- Argument validation ----

TEST(SparseOptimizerTest, RejectsInvalidArguments) {
  std::vector<float> row = {1.0f, 0.0f};
  float* rows[] = {row.data()};
  float* null_rows[] = {nullptr};
  const float grad = 1.0f;
  const OptimizerParams p = Adagrad(0.1f, 1e-8f, 0.0f);
  EXPECT_EQ(ApplySparseUpdateCpu(p, rows, &grad, -1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(p, rows, &grad, 1, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(p, rows, &grad, 1, -3).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(p, nullptr, &grad, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(p, rows, nullptr, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(p, null_rows, &grad, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(Adagrad(0.1f, -1.0f, 0.0f), rows, &grad, 1, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(Adagrad(0.1f, 1e-8f, -1.0f), rows, &grad, 1, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(Sgd(NAN), rows, &grad, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(row[0], 1.0f);  // nothing was applied
}

TEST(SparseOptimizerTest, EmptyUpdateAcceptsNullPointers) {
  EXPECT_TRUE(ApplySparseUpdateCpu(Sgd(0.1f), nullptr, nullptr, 0, 4).ok());
  EXPECT_TRUE(ApplySparseUpdate(DeviceContext{}, Sgd(0.1f), nullptr, nullptr, 0, 4).ok());
}

#if !TESSERA_WITH_CUDA
TEST(SparseOptimizerTest, CudaDeviceFailsWithoutCudaBuild) {
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  Status s = ApplySparseUpdate(ctx, Sgd(0.1f), nullptr, nullptr, 0, 4);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("built without CUDA"), std::string::npos);
}
#endif

}  // namespace
}  // namespace tessera::kernels
