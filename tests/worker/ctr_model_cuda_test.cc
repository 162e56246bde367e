// The CTR models and the dense replica on CUDA against the CPU (label gpu; skips without a usable
// CUDA device): one forward/backward per model kind on the same random batch, and the dense
// state moving between a CUDA and a CPU replica as a checkpoint moves it.
// Tolerances: per array, max |cuda - cpu| <= 5e-4 * max |cpu| (cuBLAS vs OpenBLAS summation
// order, fused multiply-adds and atomic scatter-adds; the backward sums up to ~300 samples per
// weight); the loss sum within 1e-5 relative; probabilities within 1e-5. The dense optimizer is
// the CPU's to the bit (kernels/dense_optimizer.h), so replicas compare exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/device_memory.h"
#include "kernels/device_resources.h"
#include "tests/testing/ctr_batch.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/test_util.h"
#include "worker/ctr_dense.h"
#include "worker/ctr_model.h"

namespace tessera::worker {
namespace {

using kernels::Device;
using kernels::DeviceBuffer;

// A random batch of 300 samples over 50 rows: one-hot (5 fields) or multi-hot (one bag of 0 to 3
// keys: empty bags too).
testing::CtrBatch RandomBatch(CtrModelKind kind, bool multi_hot, unsigned seed) {
  CtrModelConfig config;
  config.kind = kind;
  config.num_fields = multi_hot ? 1 : 5;
  config.num_dense = 3;
  config.emb_dim = 8;
  config.mlp = {32, 16};
  config.cross_layers = 2;
  config.seed = seed;
  return testing::RandomCtrBatch(config, /*batch_size=*/300, /*num_rows=*/50, multi_hot,
                                 /*min_bag_keys=*/0, seed);
}

void ExpectNormClose(const std::vector<float>& gpu, const std::vector<float>& cpu,
                     const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  float scale = 0.0f;
  for (float x : cpu) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], 5e-4f * scale + 1e-7f) << what << "[" << i << "]";
  }
}

class CtrCudaTest : public ::testing::Test {
 public:
  void SetUp() override {
    TS_SKIP_WITHOUT_CUDA_DEVICE();
    kernels::DeviceOptions options;
    options.device = Device::kCuda;
    auto resources = kernels::DeviceResources::Create(options);
    ASSERT_TRUE(resources.ok()) << resources.status().ToString();
    cuda_ = std::move(*resources);
  }
  const kernels::DeviceContext& cuda() const { return cuda_->context(); }

  // Uploads host floats into `buffer` (a CUDA buffer).
  float* Upload(DeviceBuffer* buffer, const std::vector<float>& host) {
    auto d = buffer->Get<float>(host.size() + 1);
    EXPECT_TRUE(d.ok());
    EXPECT_TRUE(kernels::CopyToDevice(cuda(), *d, host.data(), sizeof(float) * host.size()).ok());
    return *d;
  }
  std::vector<float> Download(const float* d, size_t count) {
    std::vector<float> host(count);
    EXPECT_TRUE(kernels::CopyToHost(cuda(), host.data(), d, sizeof(float) * count).ok());
    EXPECT_TRUE(kernels::SyncDevice(cuda()).ok());
    return host;
  }

  std::unique_ptr<kernels::DeviceResources> cuda_;
};

void CheckModel(CtrCudaTest* t, CtrModelKind kind, bool multi_hot) {
  SCOPED_TRACE(std::string(CtrModelName(kind)) + (multi_hot ? " multi-hot" : " one-hot"));
  const testing::CtrBatch fx = RandomBatch(kind, multi_hot, 5 + static_cast<unsigned>(kind));
  auto cpu_model = CtrModel::Create(fx.config, kernels::DeviceContext{});
  auto cuda_model = CtrModel::Create(fx.config, t->cuda());
  ASSERT_TRUE(cpu_model.ok() && cuda_model.ok()) << cuda_model.status().ToString();
  std::vector<float> params((*cpu_model)->num_params());
  (*cpu_model)->InitParams(params.data());
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> jitter(-0.1f, 0.1f);
  for (float& p : params) p += jitter(rng);  // non-zero biases
  const float scale = 1.0f / static_cast<float>(fx.batch);
  const size_t emb_floats = fx.rows * fx.config.emb_dim;

  std::vector<float> cpu_params_grad(params.size()), cpu_emb(emb_floats), cpu_linear(fx.rows);
  double cpu_loss = 0;
  TS_ASSERT_OK((*cpu_model)
                   ->ForwardBackward(params.data(), fx.View(), scale,
                                     {cpu_params_grad.data(), cpu_emb.data(), cpu_linear.data()},
                                     &cpu_loss));

  DeviceBuffer d_params(Device::kCuda, "params"), d_grads(Device::kCuda, "grads");
  float* dp = t->Upload(&d_params, params);
  float* dg = t->Upload(&d_grads, std::vector<float>(params.size(), 42.0f));
  // Garbage in the host outputs: the model must overwrite every float it owns.
  std::vector<float> gpu_emb(emb_floats, 42.0f), gpu_linear(fx.rows, 42.0f);
  double gpu_loss = -1;
  TS_ASSERT_OK((*cuda_model)
                   ->ForwardBackward(dp, fx.View(), scale, {dg, gpu_emb.data(), gpu_linear.data()},
                                     &gpu_loss));
  EXPECT_NEAR(gpu_loss, cpu_loss, 1e-5 * cpu_loss);
  ExpectNormClose(t->Download(dg, params.size()), cpu_params_grad, "dense params");
  if (UsesEmbeddingTable(kind)) {
    ExpectNormClose(gpu_emb, cpu_emb, "emb rows");
  }
  if (UsesLinearTable(kind)) {
    ExpectNormClose(gpu_linear, cpu_linear, "linear rows");
  }

  std::vector<float> cpu_probs(fx.batch), gpu_probs(fx.batch, 42.0f);
  TS_ASSERT_OK((*cpu_model)->Predict(params.data(), fx.View(), cpu_probs.data()));
  TS_ASSERT_OK((*cuda_model)->Predict(dp, fx.View(), gpu_probs.data()));
  for (int64_t b = 0; b < fx.batch; ++b) ASSERT_NEAR(gpu_probs[b], cpu_probs[b], 1e-5f) << b;

  // An empty batch: zero gradients and loss, nothing read.
  testing::CtrBatch empty = fx;
  empty.batch = 0;
  empty.offsets = {0};
  TS_ASSERT_OK((*cuda_model)
                   ->ForwardBackward(dp, empty.View(), scale,
                                     {dg, gpu_emb.data(), gpu_linear.data()}, &gpu_loss));
  EXPECT_EQ(gpu_loss, 0.0);
  EXPECT_EQ(t->Download(dg, params.size()), std::vector<float>(params.size(), 0.0f));
  if (UsesEmbeddingTable(kind)) {
    EXPECT_EQ(gpu_emb, std::vector<float>(emb_floats, 0.0f));
  }
}

TEST_F(CtrCudaTest, LrMatchesCpu) { CheckModel(this, CtrModelKind::kLr, false); }
TEST_F(CtrCudaTest, FmMatchesCpu) { CheckModel(this, CtrModelKind::kFm, false); }
TEST_F(CtrCudaTest, DeepFmMatchesCpu) {
  CheckModel(this, CtrModelKind::kDeepFm, false);
  CheckModel(this, CtrModelKind::kDeepFm, true);
}
TEST_F(CtrCudaTest, WideDeepMatchesCpu) { CheckModel(this, CtrModelKind::kWideDeep, true); }
TEST_F(CtrCudaTest, DcnV2MatchesCpu) {
  CheckModel(this, CtrModelKind::kDcnV2, false);
  CheckModel(this, CtrModelKind::kDcnV2, true);
}

// A checkpoint's dense state (ToHost on one device, Load on the other) continues on the other
// device with the same bits, in both directions.
TEST_F(CtrCudaTest, DenseStateMovesBetweenCudaAndCpuReplicas) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> initial(1001);
  for (float& x : initial) x = u(rng);
  std::vector<std::vector<float>> grads(4, std::vector<float>(initial.size()));
  for (auto& g : grads) {
    for (float& x : g) x = u(rng);
  }
  kernels::OptimizerParams adam;
  adam.kind = kernels::OptimizerKind::kAdam;
  adam.lr = 0.01f;
  auto step = [&](CtrDenseReplica* r, const kernels::DeviceContext& ctx, int t) {
    TS_ASSERT_OK(
        kernels::CopyToDevice(ctx, r->grads(), grads[t].data(), sizeof(float) * initial.size()));
    TS_ASSERT_OK(r->AllReduceGrads(nullptr));  // one worker: nothing to sum
    TS_ASSERT_OK(r->ApplyUpdate());
  };
  for (bool from_cuda : {true, false}) {
    SCOPED_TRACE(from_cuda ? "cuda -> cpu" : "cpu -> cuda");
    const kernels::DeviceContext cpu_ctx{};
    const kernels::DeviceContext& first_ctx = from_cuda ? cuda() : cpu_ctx;
    const kernels::DeviceContext& second_ctx = from_cuda ? cpu_ctx : cuda();
    auto reference = CtrDenseReplica::Create(cpu_ctx, adam, initial);
    auto first = CtrDenseReplica::Create(first_ctx, adam, initial);
    auto second = CtrDenseReplica::Create(second_ctx, adam, std::vector<float>(initial.size()));
    ASSERT_TRUE(reference.ok() && first.ok() && second.ok());
    for (int t = 0; t < 2; ++t) {
      step(reference->get(), cpu_ctx, t);
      step(first->get(), first_ctx, t);
    }
    std::vector<float> params, slots;
    int64_t adam_step = 0;
    TS_ASSERT_OK((*first)->ToHost(&params, &slots, &adam_step));
    EXPECT_EQ(adam_step, 2);
    TS_ASSERT_OK((*second)->Load(params, slots, adam_step));
    for (int t = 2; t < 4; ++t) {
      step(reference->get(), cpu_ctx, t);
      step(second->get(), second_ctx, t);
    }
    std::vector<float> want, got, want_slots, got_slots;
    TS_ASSERT_OK((*reference)->ToHost(&want, &want_slots, nullptr));
    TS_ASSERT_OK((*second)->ToHost(&got, &got_slots, &adam_step));
    EXPECT_EQ(adam_step, 4);
    EXPECT_EQ(0, std::memcmp(want.data(), got.data(), sizeof(float) * want.size()));
    EXPECT_EQ(0, std::memcmp(want_slots.data(), got_slots.data(), sizeof(float) * want.size()));
    // A state of the wrong size is refused.
    EXPECT_FALSE((*second)->Load(std::vector<float>(3), slots, 0).ok());
  }
}

}  // namespace
}  // namespace tessera::worker
