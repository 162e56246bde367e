// Dense optimizers (CPU). Golden values computed by hand from the formulas, in double precision,
// written next to each test; they do not call optimizer_math.h.
#include "kernels/dense_optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::kernels {
namespace {

OptimizerParams Params(OptimizerKind kind, float lr) {
  OptimizerParams p;
  p.kind = kind;
  p.lr = lr;
  p.eps = 0.0f;
  return p;
}

// 1 - 0.999f is 9.99987e-4 in float: Adam's v is checked to this relative tolerance.
constexpr float kBetaRounding = 2e-5f;

TEST(DenseOptimizerTest, StateFloatsPerKind) {
  EXPECT_EQ(DenseOptimizerStateFloats(OptimizerKind::kSgd, 1000), 0);
  EXPECT_EQ(DenseOptimizerStateFloats(OptimizerKind::kAdagrad, 1000), 1000);
  EXPECT_EQ(DenseOptimizerStateFloats(OptimizerKind::kAdam, 1000), 2000);
  EXPECT_EQ(DenseOptimizerStateFloats(OptimizerKind::kAdam, int64_t{3} << 31), int64_t{3} << 32);
  EXPECT_EQ(DenseOptimizerStateFloats(OptimizerKind::kFtrl, 1000), 0);
}

TEST(DenseOptimizerTest, InitSizesAndFillsTheState) {
  DenseOptimizerState state;
  state.step = 9;
  OptimizerParams adagrad = Params(OptimizerKind::kAdagrad, 0.1f);
  adagrad.initial_accumulator = 0.5f;
  ASSERT_TRUE(InitDenseOptimizerState(adagrad, 5, &state).ok());
  EXPECT_EQ(state.slots, std::vector<float>(5, 0.5f));
  EXPECT_EQ(state.step, 0);
  ASSERT_TRUE(InitDenseOptimizerState(Params(OptimizerKind::kAdam, 0.1f), 3, &state).ok());
  EXPECT_EQ(state.slots, std::vector<float>(6, 0.0f));
  ASSERT_TRUE(InitDenseOptimizerState(Params(OptimizerKind::kSgd, 0.1f), 3, &state).ok());
  EXPECT_TRUE(state.slots.empty());
}

TEST(DenseOptimizerTest, SgdMatchesHandComputedValues) {
  std::vector<float> w = {1.0f, -2.0f, 0.5f};
  const std::vector<float> g = {0.5f, -1.0f, 2.0f};
  DenseOptimizerState state;
  const OptimizerParams p = Params(OptimizerKind::kSgd, 0.1f);
  ASSERT_TRUE(InitDenseOptimizerState(p, 3, &state).ok());
  ASSERT_TRUE(ApplyDenseUpdate(DeviceContext{}, p, w.data(), g.data(), 3, &state).ok());
  EXPECT_FLOAT_EQ(w[0], 0.95f);
  EXPECT_FLOAT_EQ(w[1], -1.9f);
  EXPECT_FLOAT_EQ(w[2], 0.3f);
}

// acc = 9, 16: w = 1 - 0.1 * 3 / 3 = 0.9, 2 + 0.1 * 4 / 4 = 2.1; then acc = 18, 32:
// 0.9 - 0.3 / sqrt(18) = 0.82928932, 2.1 + 0.4 / sqrt(32) = 2.17071068.
TEST(DenseOptimizerTest, AdagradMatchesHandComputedValues) {
  std::vector<float> w = {1.0f, 2.0f};
  const std::vector<float> g = {3.0f, -4.0f};
  DenseOptimizerState state;
  const OptimizerParams p = Params(OptimizerKind::kAdagrad, 0.1f);
  ASSERT_TRUE(InitDenseOptimizerState(p, 2, &state).ok());
  ASSERT_TRUE(ApplyDenseUpdateCpu(p, w.data(), g.data(), 2, &state).ok());
  EXPECT_FLOAT_EQ(w[0], 0.9f);
  EXPECT_FLOAT_EQ(w[1], 2.1f);
  ASSERT_TRUE(ApplyDenseUpdateCpu(p, w.data(), g.data(), 2, &state).ok());
  EXPECT_FLOAT_EQ(w[0], 0.82928932f);
  EXPECT_FLOAT_EQ(w[1], 2.17071068f);
  EXPECT_FLOAT_EQ(state.slots[0], 18.0f);
  EXPECT_FLOAT_EQ(state.slots[1], 32.0f);
}

// lr 0.1, beta1 0.9, beta2 0.999, eps 0; w = (1, -2, 0.5).
// t = 1, g = (2, 0.5, -1): first Adam step moves each weight by lr * sign(g): (0.9, -2.1, 0.6).
// t = 2, g = (-1, 0.5, 0): step size 0.1 sqrt(0.001999) / 0.19 = 0.023531673;
//   m = (0.08, 0.095, -0.09), v = (0.004996, 0.00049975, 0.000999);
//   w = (0.87336630, -2.2, 0.66700583).
TEST(DenseOptimizerTest, AdamMatchesHandComputedValues) {
  std::vector<float> w = {1.0f, -2.0f, 0.5f};
  DenseOptimizerState state;
  const OptimizerParams p = Params(OptimizerKind::kAdam, 0.1f);
  ASSERT_TRUE(InitDenseOptimizerState(p, 3, &state).ok());
  const std::vector<float> g1 = {2.0f, 0.5f, -1.0f};
  ASSERT_TRUE(ApplyDenseUpdateCpu(p, w.data(), g1.data(), 3, &state).ok());
  EXPECT_FLOAT_EQ(w[0], 0.9f);
  EXPECT_FLOAT_EQ(w[1], -2.1f);
  EXPECT_FLOAT_EQ(w[2], 0.6f);
  EXPECT_EQ(state.step, 1);
  const std::vector<float> g2 = {-1.0f, 0.5f, 0.0f};
  ASSERT_TRUE(ApplyDenseUpdateCpu(p, w.data(), g2.data(), 3, &state).ok());
  EXPECT_FLOAT_EQ(w[0], 0.87336630f);
  EXPECT_FLOAT_EQ(w[1], -2.2f);
  EXPECT_FLOAT_EQ(w[2], 0.66700583f);
  EXPECT_EQ(state.step, 2);
  EXPECT_FLOAT_EQ(state.slots[0], 0.08f);  // m
  EXPECT_FLOAT_EQ(state.slots[1], 0.095f);
  EXPECT_FLOAT_EQ(state.slots[2], -0.09f);
  EXPECT_NEAR(state.slots[3], 0.004996f, kBetaRounding * 0.004996f);  // v
  EXPECT_NEAR(state.slots[4], 0.00049975f, kBetaRounding * 0.00049975f);
  EXPECT_NEAR(state.slots[5], 0.000999f, kBetaRounding * 0.000999f);
}

// Every kind, sizes around the 8-element block and its remainder, against a plain loop.
TEST(DenseOptimizerTest, EverySizeMatchesElementwiseReference) {
  const unsigned seed = 31337;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam}) {
    OptimizerParams p;
    p.kind = kind;
    p.lr = 0.01f;
    p.initial_accumulator = 0.1f;
    for (int64_t count : {0, 1, 7, 8, 9, 17, 100, 1001}) {
      SCOPED_TRACE(std::string(OptimizerName(kind)) + " count=" + std::to_string(count));
      std::vector<float> w(count), expected(count);
      for (float& x : w) x = uniform(rng);
      expected = w;
      DenseOptimizerState state;
      ASSERT_TRUE(InitDenseOptimizerState(p, count, &state).ok());
      std::vector<float> acc(count, p.initial_accumulator), m(count, 0.0f), v(count, 0.0f);
      for (int step = 1; step <= 3; ++step) {
        std::vector<float> g(count);
        for (float& x : g) x = uniform(rng);
        const float t = static_cast<float>(step);
        const float step_size =
            p.lr * std::sqrt(1.0f - std::pow(p.beta2, t)) / (1.0f - std::pow(p.beta1, t));
        for (int64_t i = 0; i < count; ++i) {
          if (kind == OptimizerKind::kSgd) {
            expected[i] -= p.lr * g[i];
          } else if (kind == OptimizerKind::kAdagrad) {
            acc[i] += g[i] * g[i];
            expected[i] -= p.lr * g[i] / (std::sqrt(acc[i]) + p.eps);
          } else {
            m[i] = p.beta1 * m[i] + (1.0f - p.beta1) * g[i];
            v[i] = p.beta2 * v[i] + (1.0f - p.beta2) * g[i] * g[i];
            expected[i] -= step_size * m[i] / (std::sqrt(v[i]) + p.eps);
          }
        }
        ASSERT_TRUE(ApplyDenseUpdateCpu(p, w.data(), g.data(), count, &state).ok());
      }
      for (int64_t i = 0; i < count; ++i) EXPECT_FLOAT_EQ(w[i], expected[i]) << i;
    }
  }
}

// The dense update and the sparse row update share their math: dense Adam over n parameters is
// bit-identical to lazy Adam on one row of dim n pushed every step.
TEST(DenseOptimizerTest, AdamIsBitIdenticalToASparseRowUpdatedEveryStep) {
  const int dim = 45;
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  OptimizerParams p;
  p.kind = OptimizerKind::kAdam;
  p.lr = 0.003f;
  std::vector<float> row(dim + OptimizerStateFloats(p.kind, dim));
  for (int j = 0; j < dim; ++j) row[j] = uniform(rng);
  InitOptimizerState(p, row.data() + dim, dim);
  std::vector<float> dense(row.begin(), row.begin() + dim);
  DenseOptimizerState state;
  ASSERT_TRUE(InitDenseOptimizerState(p, dim, &state).ok());
  float* rows[] = {row.data()};
  for (int step = 0; step < 5; ++step) {
    std::vector<float> g(dim);
    for (float& x : g) x = uniform(rng);
    ASSERT_TRUE(ApplySparseUpdateCpu(p, rows, g.data(), 1, dim).ok());
    ASSERT_TRUE(ApplyDenseUpdateCpu(p, dense.data(), g.data(), dim, &state).ok());
  }
  EXPECT_EQ(std::memcmp(dense.data(), row.data(), dim * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(state.slots.data(), row.data() + dim, 2 * dim * sizeof(float)), 0);
  EXPECT_EQ(static_cast<float>(state.step), row[3 * dim]);
}

// Replicas that start equal and get equal gradients stay bit-identical.
TEST(DenseOptimizerTest, ReplicasStayBitIdentical) {
  const int64_t count = 4099;
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> a(count);
  for (float& x : a) x = uniform(rng);
  std::vector<float> b = a;
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam}) {
    OptimizerParams p;
    p.kind = kind;
    DenseOptimizerState sa, sb;
    ASSERT_TRUE(InitDenseOptimizerState(p, count, &sa).ok());
    ASSERT_TRUE(InitDenseOptimizerState(p, count, &sb).ok());
    for (int step = 0; step < 4; ++step) {
      std::vector<float> g(count);
      for (float& x : g) x = uniform(rng);
      const std::vector<float> g_copy = g;
      ASSERT_TRUE(ApplyDenseUpdateCpu(p, a.data(), g.data(), count, &sa).ok());
      ASSERT_TRUE(ApplyDenseUpdateCpu(p, b.data(), g_copy.data(), count, &sb).ok());
    }
    EXPECT_EQ(std::memcmp(a.data(), b.data(), count * sizeof(float)), 0) << OptimizerName(kind);
    EXPECT_EQ(sa.slots, sb.slots);
  }
}

TEST(DenseOptimizerTest, RejectsInvalidArgumentsWithoutChangingAnything) {
  std::vector<float> w = {1.0f, 2.0f};
  const std::vector<float> g = {1.0f, 1.0f};
  const OptimizerParams adam = Params(OptimizerKind::kAdam, 0.1f);
  DenseOptimizerState state;
  ASSERT_TRUE(InitDenseOptimizerState(adam, 2, &state).ok());
  const DenseOptimizerState before = state;
  auto code = [&](const OptimizerParams& p, float* params, const float* grads, int64_t count,
                  DenseOptimizerState* s) {
    return ApplyDenseUpdateCpu(p, params, grads, count, s).code();
  };
  EXPECT_EQ(code(adam, w.data(), g.data(), -1, &state), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(adam, nullptr, g.data(), 2, &state), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(adam, w.data(), nullptr, 2, &state), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(adam, w.data(), g.data(), 2, nullptr), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(adam, w.data(), g.data(), 1, &state), StatusCode::kInvalidArgument);  // size
  Status wrong_kind = ApplyDenseUpdateCpu(Params(OptimizerKind::kAdagrad, 0.1f), w.data(), g.data(),
                                          2, &state);  // 4 floats, adagrad needs 2
  EXPECT_EQ(wrong_kind.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_kind.message().find("InitDenseOptimizerState"), std::string::npos);
  OptimizerParams bad_beta = adam;
  bad_beta.beta2 = 1.0f;
  EXPECT_EQ(code(bad_beta, w.data(), g.data(), 2, &state), StatusCode::kInvalidArgument);
  EXPECT_EQ(w, (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(state.slots, before.slots);
  EXPECT_EQ(state.step, 0);
}

TEST(DenseOptimizerTest, FtrlAndRowwiseAdagradAreRejectedAsSparseOnlyOptimizers) {
  DenseOptimizerState state;
  for (OptimizerKind kind : {OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    OptimizerParams row_only;
    row_only.kind = kind;
    Status s = InitDenseOptimizerState(row_only, 4, &state);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(OptimizerName(kind)), std::string::npos) << s.message();
    std::vector<float> w(4, 1.0f), g(4, 1.0f);
    EXPECT_EQ(ApplyDenseUpdateCpu(row_only, w.data(), g.data(), 4, &state).code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(InitDenseOptimizerState(OptimizerParams{}, -1, &state).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(InitDenseOptimizerState(OptimizerParams{}, 1, nullptr).code(),
            StatusCode::kInvalidArgument);
}

TEST(DenseOptimizerTest, EmptyVectorAcceptsNullPointersAndCountsAdamSteps) {
  OptimizerParams adam;
  adam.kind = OptimizerKind::kAdam;
  DenseOptimizerState state;
  ASSERT_TRUE(InitDenseOptimizerState(adam, 0, &state).ok());
  EXPECT_TRUE(ApplyDenseUpdateCpu(adam, nullptr, nullptr, 0, &state).ok());
  EXPECT_EQ(state.step, 1);
}

TEST(DenseOptimizerTest, HostStateIsRefusedOnCuda) {
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  DenseOptimizerState state;
  EXPECT_EQ(ApplyDenseUpdate(ctx, OptimizerParams{}, nullptr, nullptr, 0, &state).code(),
            StatusCode::kInvalidArgument);
}

// The slots form (the state in the context's memory, as the CTR replica keeps it) runs the same
// loops: three steps of each optimizer give the bits of the DenseOptimizerState form.
TEST(DenseOptimizerTest, SlotsFormGivesTheBitsOfTheStateForm) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam}) {
    SCOPED_TRACE(OptimizerName(kind));
    OptimizerParams p = Params(kind, 0.01f);
    p.eps = 1e-8f;
    p.initial_accumulator = 0.1f;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const int64_t n = 37;
    std::vector<float> w(n);
    for (float& x : w) x = u(rng);
    std::vector<float> w2 = w;
    DenseOptimizerState state, slots_state;
    ASSERT_TRUE(InitDenseOptimizerState(p, n, &state).ok());
    ASSERT_TRUE(InitDenseOptimizerState(p, n, &slots_state).ok());
    std::vector<float> slots = slots_state.slots;
    int64_t step = 0;
    for (int t = 0; t < 3; ++t) {
      std::vector<float> g(n);
      for (float& x : g) x = u(rng);
      ASSERT_TRUE(ApplyDenseUpdate(DeviceContext{}, p, w.data(), g.data(), n, &state).ok());
      ASSERT_TRUE(
          ApplyDenseUpdate(DeviceContext{}, p, w2.data(), g.data(), n, slots.data(), &step).ok());
    }
    EXPECT_EQ(0, std::memcmp(w.data(), w2.data(), sizeof(float) * n));
    ASSERT_EQ(state.slots.size(), slots.size());
    EXPECT_TRUE(slots.empty() ||  // SGD has none, and memcmp must not get a null data()
                std::memcmp(state.slots.data(), slots.data(), sizeof(float) * slots.size()) == 0);
    EXPECT_EQ(step, state.step);
  }
  int64_t step = 0;
  float w = 1.0f, g = 1.0f;
  EXPECT_EQ(
      ApplyDenseUpdateCpu(Params(OptimizerKind::kAdagrad, 0.1f), &w, &g, 1, nullptr, &step).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ApplyDenseUpdateCpu(Params(OptimizerKind::kSgd, 0.1f), &w, &g, 1, nullptr, nullptr).code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::kernels
