#include "worker/ctr_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "tests/testing/ctr_batch.h"

namespace tessera::worker {
namespace {

// The model of the batches below: small, so that finite differences are cheap.
CtrModelConfig SmallConfig(CtrModelKind kind, bool multi_hot, unsigned seed) {
  CtrModelConfig config;
  config.kind = kind;
  config.num_fields = multi_hot ? 1 : 3;
  config.num_dense = 2;
  config.emb_dim = 4;
  config.mlp = {5, 3};
  config.cross_layers = 2;
  config.seed = seed;
  return config;
}

// A small random batch: one-hot (one key per field) or multi-hot (several keys in one bag), and
// the dense parameters, which the test sets.
struct Fixture : testing::CtrBatch {
  Fixture(CtrModelKind kind, bool multi_hot, unsigned seed)
      : testing::CtrBatch(
            testing::RandomCtrBatch(SmallConfig(kind, multi_hot, seed), /*batch_size=*/6,
                                    /*num_rows=*/7, multi_hot, /*min_bag_keys=*/1, seed)) {}
  std::vector<float> params;
};

// Host vectors for every gradient ForwardBackward writes (kCpu: params are host memory too).
struct HostGradients {
  std::vector<float> params, emb_rows, linear_rows;
  HostGradients(const CtrModel& model, const Fixture& fx)
      : params(model.num_params()), emb_rows(fx.rows * fx.config.emb_dim), linear_rows(fx.rows) {}
  CtrGradients View() { return {params.data(), emb_rows.data(), linear_rows.data()}; }
};

double Loss(CtrModel& model, const Fixture& fx) {
  HostGradients g(model, fx);
  double loss = 0;
  EXPECT_TRUE(model.ForwardBackward(fx.params.data(), fx.View(), 1.0f, g.View(), &loss).ok());
  return loss;
}

// Every gradient the model returns (dense parameters, embedding rows, linear rows) matches a
// central finite difference of the loss.
void CheckGradients(CtrModelKind kind, bool multi_hot) {
  for (unsigned seed : {1u, 2u}) {
    SCOPED_TRACE(std::string(CtrModelName(kind)) + (multi_hot ? " multi-hot" : " one-hot") +
                 " seed " + std::to_string(seed));
    Fixture fx(kind, multi_hot, seed);
    auto model = CtrModel::Create(fx.config, kernels::DeviceContext{});
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    fx.params.resize((*model)->num_params());
    (*model)->InitParams(fx.params.data());
    // Biases start at 0, which puts many ReLU inputs of a tiny net near their kink, where a
    // finite difference is meaningless: give every parameter a random offset.
    std::mt19937 rng(seed + 100);
    std::uniform_real_distribution<float> jitter(-0.2f, 0.2f);
    for (float& p : fx.params) p += jitter(rng);
    HostGradients grads(**model, fx);
    double loss = 0;
    ASSERT_TRUE(
        (*model)->ForwardBackward(fx.params.data(), fx.View(), 1.0f, grads.View(), &loss).ok());
    ASSERT_TRUE(std::isfinite(loss));
    const float eps = 1e-3f;
    auto check = [&](std::vector<float>& values, const std::vector<float>& analytic,
                     const char* what) {
      ASSERT_EQ(values.size(), analytic.size()) << what;
      for (size_t i = 0; i < values.size(); ++i) {
        const float saved = values[i];
        values[i] = saved + eps;
        const double up = Loss(**model, fx);
        values[i] = saved - eps;
        const double down = Loss(**model, fx);
        values[i] = saved;
        const double numeric = (up - down) / (2.0 * eps);
        EXPECT_NEAR(analytic[i], numeric, 2e-3 + 1e-2 * std::fabs(numeric))
            << what << "[" << i << "]";
      }
    };
    check(fx.params, grads.params, "params");
    if (UsesEmbeddingTable(kind)) check(fx.emb, grads.emb_rows, "emb_rows");
    if (UsesLinearTable(kind)) check(fx.linear, grads.linear_rows, "linear_rows");
  }
}

TEST(CtrModelTest, LrGradientsMatchFiniteDifferences) { CheckGradients(CtrModelKind::kLr, false); }
TEST(CtrModelTest, FmGradientsMatchFiniteDifferences) { CheckGradients(CtrModelKind::kFm, false); }
TEST(CtrModelTest, DeepFmGradientsMatchFiniteDifferences) {
  CheckGradients(CtrModelKind::kDeepFm, false);
  CheckGradients(CtrModelKind::kDeepFm, true);
}
TEST(CtrModelTest, WideDeepGradientsMatchFiniteDifferences) {
  CheckGradients(CtrModelKind::kWideDeep, false);
}
TEST(CtrModelTest, DcnV2GradientsMatchFiniteDifferences) {
  CheckGradients(CtrModelKind::kDcnV2, false);
  CheckGradients(CtrModelKind::kDcnV2, true);
}

// The model writes every dense gradient without reading the buffer first (it is not zeroed
// before a step): a buffer full of NaN gives the bits of a zeroed one, for every model, and an
// empty batch gives zeros.
TEST(CtrModelTest, EveryDenseGradientIsWrittenWhateverTheBufferHeld) {
  for (CtrModelKind kind : {CtrModelKind::kLr, CtrModelKind::kFm, CtrModelKind::kDeepFm,
                            CtrModelKind::kWideDeep, CtrModelKind::kDcnV2}) {
    for (bool multi_hot : {false, true}) {
      SCOPED_TRACE(std::string(CtrModelName(kind)) + (multi_hot ? " multi-hot" : " one-hot"));
      Fixture fx(kind, multi_hot, 5);
      auto model = CtrModel::Create(fx.config, kernels::DeviceContext{});
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      fx.params.resize((*model)->num_params());
      (*model)->InitParams(fx.params.data());
      HostGradients zeroed(**model, fx), poisoned(**model, fx);
      std::fill(poisoned.params.begin(), poisoned.params.end(), NAN);
      double loss = 0;
      ASSERT_TRUE(
          (*model)->ForwardBackward(fx.params.data(), fx.View(), 1.0f, zeroed.View(), &loss).ok());
      ASSERT_TRUE((*model)
                      ->ForwardBackward(fx.params.data(), fx.View(), 1.0f, poisoned.View(), &loss)
                      .ok());
      ASSERT_EQ(zeroed.params.size(), poisoned.params.size());
      EXPECT_EQ(std::memcmp(zeroed.params.data(), poisoned.params.data(),
                            zeroed.params.size() * sizeof(float)),
                0);
      // An empty batch: every gradient zero.
      std::fill(poisoned.params.begin(), poisoned.params.end(), NAN);
      CtrBatchView empty = fx.View();
      empty.batch_size = 0;
      ASSERT_TRUE(
          (*model)->ForwardBackward(fx.params.data(), empty, 1.0f, poisoned.View(), &loss).ok());
      for (float v : poisoned.params) ASSERT_EQ(v, 0.0f);
    }
  }
}

TEST(CtrModelTest, PredictGivesTheProbabilitiesOfTheTrainingForward) {
  Fixture fx(CtrModelKind::kDeepFm, false, 3);
  auto model = CtrModel::Create(fx.config, kernels::DeviceContext{});
  ASSERT_TRUE(model.ok());
  fx.params.resize((*model)->num_params());
  (*model)->InitParams(fx.params.data());
  std::vector<float> probs(fx.batch);
  ASSERT_TRUE((*model)->Predict(fx.params.data(), fx.View(), probs.data()).ok());
  double expect = 0;
  for (int64_t b = 0; b < fx.batch; ++b) {
    ASSERT_GT(probs[b], 0.0f);
    ASSERT_LT(probs[b], 1.0f);
    expect -= fx.labels[b] ? std::log(probs[b]) : std::log(1.0 - probs[b]);
  }
  EXPECT_NEAR(Loss(**model, fx), expect, 1e-4);
}

TEST(CtrModelTest, InitIsDeterministicAndSeeded) {
  CtrModelConfig c;
  c.num_fields = 26;
  c.num_dense = 13;
  auto a = CtrModel::Create(c, kernels::DeviceContext{}),
       b = CtrModel::Create(c, kernels::DeviceContext{});
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<float> pa((*a)->num_params()), pb((*b)->num_params());
  (*a)->InitParams(pa.data());
  (*b)->InitParams(pb.data());
  EXPECT_EQ(pa, pb);
  c.seed = 2;
  auto other = CtrModel::Create(c, kernels::DeviceContext{});
  std::vector<float> pc((*other)->num_params());
  (*other)->InitParams(pc.data());
  EXPECT_NE(pa, pc);
  // 26 x 16 + 13 = 429 inputs; 429*400+400 + 400*400+400 + 400*400+400 + 400+1 + 1 bias + 13.
  EXPECT_EQ((*a)->num_params(), 429u * 400 + 400 + 2 * (400u * 400 + 400) + 401 + 1 + 13);
}

TEST(CtrModelTest, BadConfigurationsAreRefused) {
  CtrModelConfig c;
  c.num_fields = 0;
  EXPECT_FALSE(CtrModel::Create(c, kernels::DeviceContext{}).ok());
  c.num_fields = 2;
  c.mlp = {};
  EXPECT_FALSE(CtrModel::Create(c, kernels::DeviceContext{}).ok());
  c.mlp = {8};
  c.emb_dim = 0;
  EXPECT_FALSE(CtrModel::Create(c, kernels::DeviceContext{}).ok());
  EXPECT_FALSE(ParseCtrModel("xgboost").ok());
  EXPECT_EQ(*ParseCtrModel("dcn_v2"), CtrModelKind::kDcnV2);
}

}  // namespace
}  // namespace tessera::worker
