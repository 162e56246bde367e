// Sparse optimizer kernels (CPU): option parsing, state layout, the per-element math of
// optimizer_math.h, argument validation and lanes (each optimizer's sparse update is in
// sparse_optimizer_test.cc). Golden values were computed by hand from the formulas (Adagrad:
// acc += g^2; w -= lr * g / (sqrt(acc) + eps); Adam and FTRL as written next to their tests, in
// double precision); they do not call optimizer_math.h, so a wrong shared formula cannot pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/optimizer_math.h"
#include "kernels/sparse_optimizer.h"
#include "tests/kernels/optimizer_test_util.h"

namespace tessera::kernels {
namespace {

using test_util::Adagrad;
using test_util::Adam;
using test_util::Ftrl;
using test_util::kBetaRounding;
using test_util::Sgd;

// ---- Parsing and state layout ----

TEST(OptimizerTest, ParseOptimizerRoundTripsNames) {
  for (OptimizerKind k : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam,
                          OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    auto parsed = ParseOptimizer(OptimizerName(k));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_STREQ(OptimizerName(OptimizerKind::kSgd), "sgd");
  EXPECT_STREQ(OptimizerName(OptimizerKind::kAdagrad), "adagrad");
  EXPECT_STREQ(OptimizerName(OptimizerKind::kAdam), "adam");
  EXPECT_STREQ(OptimizerName(OptimizerKind::kFtrl), "ftrl");
  EXPECT_STREQ(OptimizerName(OptimizerKind::kRowwiseAdagrad), "rowwise-adagrad");
}

TEST(OptimizerTest, ParseOptimizerRejectsUnknownNameAndListsChoices) {
  for (const std::string name : {"rmsprop", "", "Adam", "ftrl-proximal"}) {
    auto k = ParseOptimizer(name);
    ASSERT_FALSE(k.ok()) << name;
    EXPECT_EQ(k.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(k.status().message().find("'" + name + "'"), std::string::npos);
    EXPECT_NE(k.status().message().find("sgd, adagrad, adam, ftrl, rowwise-adagrad"),
              std::string::npos);
  }
}

TEST(OptimizerTest, StateFloatsMatchTheDocumentedLayouts) {
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kSgd, 32), 0);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kAdagrad, 32), 32);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kAdagrad, 7), 7);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kAdam, 32), 65);  // m, v, step
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kAdam, 1), 3);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kFtrl, 32), 64);  // z, n
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kFtrl, 5), 10);
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kRowwiseAdagrad, 32), 1);  // acc of the row
  EXPECT_EQ(OptimizerStateFloats(OptimizerKind::kRowwiseAdagrad, 1), 1);
}

TEST(OptimizerTest, DefaultsOfEveryKindAreValid) {
  for (OptimizerKind k : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam,
                          OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    OptimizerParams p;
    p.kind = k;
    EXPECT_TRUE(ValidateOptimizerParams(p).ok()) << OptimizerName(k);
  }
  const OptimizerParams p;
  EXPECT_EQ(p.beta1, 0.9f);
  EXPECT_EQ(p.beta2, 0.999f);
  EXPECT_EQ(p.ftrl_beta, 1.0f);
  EXPECT_EQ(p.l1, 0.0f);
  EXPECT_EQ(p.l2, 0.0f);
}

TEST(OptimizerTest, ValidateRejectsOutOfRangeAdamAndFtrlFields) {
  auto expect_invalid = [](const OptimizerParams& p, const std::string& field) {
    Status s = ValidateOptimizerParams(p);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  };
  expect_invalid(Adam(0.1f, 1.0f, 0.999f, 1e-8f), "beta1");
  expect_invalid(Adam(0.1f, -0.1f, 0.999f, 1e-8f), "beta1");
  expect_invalid(Adam(0.1f, 0.9f, 1.0f, 1e-8f), "beta2");
  expect_invalid(Adam(0.1f, 0.9f, NAN, 1e-8f), "beta2");
  expect_invalid(Adam(0.1f, 0.9f, 0.999f, -1e-8f), "eps");
  expect_invalid(Adam(INFINITY, 0.9f, 0.999f, 1e-8f), "lr");
  expect_invalid(Ftrl(0.0f, 1.0f, 0.0f, 0.0f), "alpha");
  expect_invalid(Ftrl(-0.1f, 1.0f, 0.0f, 0.0f), "alpha");
  expect_invalid(Ftrl(0.1f, 0.0f, 0.0f, 0.0f), "ftrl_beta");
  expect_invalid(Ftrl(0.1f, 1.0f, -1.0f, 0.0f), "l1");
  expect_invalid(Ftrl(0.1f, 1.0f, 0.0f, INFINITY), "l2");
  // Boundaries that are allowed; fields of other kinds are not checked.
  EXPECT_TRUE(ValidateOptimizerParams(Adam(0.1f, 0.0f, 0.0f, 0.0f)).ok());
  OptimizerParams sgd = Sgd(0.1f);
  sgd.beta1 = 7.0f;
  sgd.l1 = -1.0f;
  EXPECT_TRUE(ValidateOptimizerParams(sgd).ok());
  OptimizerParams bad_kind;
  bad_kind.kind = static_cast<OptimizerKind>(42);
  EXPECT_EQ(ValidateOptimizerParams(bad_kind).code(), StatusCode::kInvalidArgument);
}

TEST(OptimizerTest, InitOptimizerStateFillsAdagradAccumulators) {
  std::vector<float> state(5, -1.0f);
  InitOptimizerState(Adagrad(0.1f, 1e-8f, 0.25f), state.data(), 5);
  for (float v : state) EXPECT_EQ(v, 0.25f);
  OptimizerParams rowwise = Adagrad(0.1f, 1e-8f, 0.25f);
  rowwise.kind = OptimizerKind::kRowwiseAdagrad;
  std::vector<float> row_state(2, -1.0f);
  InitOptimizerState(rowwise, row_state.data(), 5);
  EXPECT_EQ(row_state[0], 0.25f);
  EXPECT_EQ(row_state[1], -1.0f);  // one float of state, whatever the dim
  rowwise.initial_accumulator = -1.0f;
  EXPECT_NE(ValidateOptimizerParams(rowwise).message().find("rowwise-adagrad"), std::string::npos);
  std::vector<float> untouched(3, -1.0f);
  InitOptimizerState(Sgd(0.1f), untouched.data(), 3);
  for (float v : untouched) EXPECT_EQ(v, -1.0f);
}

TEST(OptimizerTest, InitOptimizerStateZeroesAdamAndFtrlState) {
  std::vector<float> adam(OptimizerStateFloats(OptimizerKind::kAdam, 4), -1.0f);
  InitOptimizerState(Adam(0.1f, 0.9f, 0.999f, 1e-8f), adam.data(), 4);
  for (float v : adam) EXPECT_EQ(v, 0.0f);
  std::vector<float> ftrl(OptimizerStateFloats(OptimizerKind::kFtrl, 4), -1.0f);
  InitOptimizerState(Ftrl(0.1f, 1.0f, 0.5f, 1.0f), ftrl.data(), 4);
  for (float v : ftrl) EXPECT_EQ(v, 0.0f);
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

// Hand-computed (double precision): lr 0.1, beta1 0.9, beta2 0.999, eps 0, w = 1, g = 2, -1.
// t = 1: m = 0.2, v = 0.004, step size = 0.1 sqrt(0.001) / 0.1 = 0.0316228; w = 1 - 0.1 = 0.9.
// t = 2: m = 0.08, v = 0.004996, step size = 0.1 sqrt(0.001999) / 0.19 = 0.0235317;
//        w = 0.9 - 0.0235317 * 0.08 / sqrt(0.004996) = 0.8733663.
TEST(OptimizerMathTest, AdamStepMatchesHandComputedValues) {
  const AdamParams p{0.1f, 0.9f, 0.999f, 0.0f};
  EXPECT_NEAR(AdamStepSize(1.0f, p), 0.031622777f, kBetaRounding * 0.031622777f);
  EXPECT_NEAR(AdamStepSize(2.0f, p), 0.023531673f, kBetaRounding * 0.023531673f);
  float m = 0.0f, v = 0.0f;
  float w = AdamStep(1.0f, 2.0f, &m, &v, AdamStepSize(1.0f, p), p);
  EXPECT_FLOAT_EQ(m, 0.2f);
  EXPECT_NEAR(v, 0.004f, kBetaRounding * 0.004f);
  EXPECT_FLOAT_EQ(w, 0.9f);
  w = AdamStep(w, -1.0f, &m, &v, AdamStepSize(2.0f, p), p);
  EXPECT_FLOAT_EQ(m, 0.08f);
  EXPECT_NEAR(v, 0.004996f, kBetaRounding * 0.004996f);
  EXPECT_FLOAT_EQ(w, 0.87336630f);
}

// Hand-computed: alpha 0.1, beta 1, l1 0.5, l2 1, from z = n = w = 0.
// g = 2:  sigma = 2 / 0.1 = 20, z = 2, n = 4, w = -(2 - 0.5) / ((1 + 2) / 0.1 + 1) = -1.5 / 31.
// g = -1: sigma = (sqrt(5) - 2) / 0.1 = 2.3606798, z = 2 - 1 + 2.3606798 * 1.5 / 31 = 1.1142264,
//         n = 5, w = -(1.1142264 - 0.5) / ((1 + sqrt(5)) / 0.1 + 1) = -0.018411688.
TEST(OptimizerMathTest, FtrlStepMatchesHandComputedValues) {
  const FtrlParams p{0.1f, 1.0f, 0.5f, 1.0f};
  float z = 0.0f, n = 0.0f;
  float w = FtrlStep(0.0f, 2.0f, &z, &n, p);
  EXPECT_FLOAT_EQ(z, 2.0f);
  EXPECT_FLOAT_EQ(n, 4.0f);
  EXPECT_FLOAT_EQ(w, -1.5f / 31.0f);
  w = FtrlStep(w, -1.0f, &z, &n, p);
  EXPECT_FLOAT_EQ(z, 1.1142264f);
  EXPECT_FLOAT_EQ(n, 5.0f);
  EXPECT_FLOAT_EQ(w, -0.018411688f);
}

TEST(OptimizerMathTest, FtrlWeightIsExactlyZeroInsideTheL1Ball) {
  const FtrlParams p{0.1f, 1.0f, 0.5f, 1.0f};
  EXPECT_EQ(FtrlWeight(0.0f, 0.0f, p), 0.0f);
  EXPECT_EQ(FtrlWeight(0.5f, 9.0f, p), 0.0f);
  EXPECT_EQ(FtrlWeight(-0.3f, 9.0f, p), 0.0f);
  // Just outside: -(z - sgn(z) l1) / ((1 + 3) / 0.1 + 1) = -+0.25 / 41.
  EXPECT_FLOAT_EQ(FtrlWeight(0.75f, 9.0f, p), -0.25f / 41.0f);
  EXPECT_FLOAT_EQ(FtrlWeight(-0.75f, 9.0f, p), 0.25f / 41.0f);
  // A first gradient of 0.3 moves z to 0.3, inside the ball: the weight stays exactly 0.
  float z = 0.0f, n = 0.0f;
  EXPECT_EQ(FtrlStep(0.0f, 0.3f, &z, &n, p), 0.0f);
  EXPECT_FLOAT_EQ(z, 0.3f);
}

// z0 = -(w (beta / alpha + l2) + sgn(w) l1) = -(0.25 * 11 + 0.5) = -3.25 (alpha 0.1, beta 1,
// l1 0.5, l2 1); FtrlWeight(-3.25, 0) = 2.75 / 11 = 0.25.
TEST(OptimizerMathTest, FtrlZForWeightInvertsTheWeightAtZeroN) {
  const FtrlParams p{0.1f, 1.0f, 0.5f, 1.0f};
  EXPECT_FLOAT_EQ(FtrlZForWeight(0.25f, p), -3.25f);
  EXPECT_FLOAT_EQ(FtrlZForWeight(-0.25f, p), 3.25f);
  EXPECT_EQ(FtrlZForWeight(0.0f, p), 0.0f);
  EXPECT_FLOAT_EQ(FtrlWeight(-3.25f, 0.0f, p), 0.25f);
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
  EXPECT_EQ(ApplySparseUpdateCpu(Adam(0.1f, 1.5f, 0.999f, 1e-8f), rows, &grad, 1, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpu(Ftrl(0.1f, 1.0f, -0.5f, 0.0f), rows, &grad, 1, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(row[0], 1.0f);  // nothing was applied
}

// The lanes of an update, run one after the other (or on two threads), leave every row as one
// whole update does, repeated row pointers included, and split the rows about evenly.
TEST(SparseOptimizerTest, LanesTogetherMatchOneUpdateBitForBit) {
  constexpr int kDim = 12;
  constexpr int kRows = 500;
  for (const OptimizerParams& p :
       {Sgd(0.1f), Adagrad(0.1f, 1e-8f, 0.1f), Adam(0.01f, 0.9f, 0.999f, 1e-8f),
        Ftrl(0.1f, 1.0f, 0.01f, 0.1f)}) {
    const int row_floats = kDim + OptimizerStateFloats(p.kind, kDim);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    std::vector<float> table(kRows * row_floats, 0.0f);
    for (int r = 0; r < kRows; ++r) {
      for (int j = 0; j < kDim; ++j) table[r * row_floats + j] = value(rng);
      InitOptimizerStateForRow(p, &table[r * row_floats], kDim);
    }
    std::vector<float> whole = table, split = table;
    std::vector<float*> whole_rows, split_rows;
    std::vector<float> grads;
    for (int i = 0; i < 3 * kRows; ++i) {  // every row about three times, in random order
      const int r = static_cast<int>(rng() % kRows);
      whole_rows.push_back(&whole[r * row_floats]);
      split_rows.push_back(&split[r * row_floats]);
      for (int j = 0; j < kDim; ++j) grads.push_back(value(rng));
    }
    const int64_t n = static_cast<int64_t>(whole_rows.size());
    ASSERT_TRUE(ApplySparseUpdateCpu(p, whole_rows.data(), grads.data(), n, kDim).ok());
    ASSERT_TRUE(ApplySparseUpdateCpuLane(p, split_rows.data(), grads.data(), n, kDim, 1, 2).ok());
    ASSERT_TRUE(ApplySparseUpdateCpuLane(p, split_rows.data(), grads.data(), n, kDim, 0, 2).ok());
    EXPECT_EQ(whole, split) << OptimizerName(p.kind);
  }
  std::vector<float> rows(1000 * 16);
  int lane_one = 0;
  for (int r = 0; r < 1000; ++r) lane_one += RowLane(&rows[r * 16], 2);
  EXPECT_GT(lane_one, 350);
  EXPECT_LT(lane_one, 650);
}

TEST(SparseOptimizerTest, LaneOutsideTheLanesIsRefused) {
  std::vector<float> row = {1.0f, 0.0f};
  float* rows[] = {row.data()};
  const float grad = 1.0f;
  const OptimizerParams p = Adagrad(0.1f, 1e-8f, 0.0f);
  EXPECT_EQ(ApplySparseUpdateCpuLane(p, rows, &grad, 1, 1, 2, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpuLane(p, rows, &grad, 1, 1, -1, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCpuLane(p, rows, &grad, 1, 1, 0, 0).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(row[0], 1.0f);
}

// The kernels run their widest clone for this CPU (kernels/cpu_simd.h); the per-element steps of
// optimizer_math.h in plain scalar code must give the same bits at every dim (blocks of 8, a
// remainder, and AVX-512's 16 lanes).
TEST(SparseOptimizerTest, KernelsGiveTheScalarStepsBitForBit) {
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (int dim = 1; dim <= 70; ++dim) {
    SCOPED_TRACE("dim=" + std::to_string(dim));
    // Adagrad: [w | acc].
    std::vector<float> row(2 * dim), grads(dim);
    for (float& v : row) v = std::fabs(uniform(rng));
    for (float& v : grads) v = uniform(rng);
    std::vector<float> expected = row;
    const OptimizerParams ada = Adagrad(0.05f, 1e-8f, 0.0f);
    const AdagradParams ada_step{ada.lr, ada.eps};
    for (int j = 0; j < dim; ++j) {
      expected[j] = AdagradStep(expected[j], grads[j], &expected[dim + j], ada_step);
    }
    float* rows[] = {row.data()};
    ASSERT_TRUE(ApplySparseUpdateCpu(ada, rows, grads.data(), 1, dim).ok());
    EXPECT_EQ(row, expected);
    // Adam: [w | m | v | step].
    std::vector<float> arow(3 * dim + 1);
    for (float& v : arow) v = std::fabs(uniform(rng));
    arow[3 * dim] = 4.0f;
    std::vector<float> aexpected = arow;
    const OptimizerParams adam = Adam(0.01f, 0.9f, 0.99f, 1e-8f);
    const AdamParams adam_step{adam.lr, adam.beta1, adam.beta2, adam.eps};
    const float size = AdamStepSize(5.0f, adam_step);
    for (int j = 0; j < dim; ++j) {
      aexpected[j] = AdamStep(aexpected[j], grads[j], &aexpected[dim + j], &aexpected[2 * dim + j],
                              size, adam_step);
    }
    aexpected[3 * dim] = 5.0f;
    float* arows[] = {arow.data()};
    ASSERT_TRUE(ApplySparseUpdateCpu(adam, arows, grads.data(), 1, dim).ok());
    EXPECT_EQ(arow, aexpected);
  }
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
