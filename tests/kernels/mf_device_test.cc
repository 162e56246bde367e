// MfDeviceWorkspace without a GPU (label unit): the kCpu workspace is a pure pass-through, so
// its outputs and Status are bit-for-bit those of MfBatchGradientCpu / MfPredictCpu; Create for
// kCuda fails with CheckCudaAvailable's reason where no device is usable.
#include "kernels/mf_device.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/device.h"
#include "kernels/device_resources.h"
#include "kernels/mf.h"
#include "tests/testing/mf_problem.h"
#include "tests/testing/mf_stage.h"

namespace tessera::kernels {
namespace {

using Problem = ::tessera::testing::MfProblem;

// A random batch with global mean 3.5, l2 0.05 and no bias regularisation.
Problem RandomProblem(unsigned seed, int64_t num_samples, int dim, int64_t num_users,
                      int64_t num_items) {
  Problem pr = ::tessera::testing::RandomMfProblem(seed, num_samples, dim, num_users, num_items);
  pr.l2_bias = 0.0f;
  return pr;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  // Empty vectors may hold null data(), which memcmp must not get (UBSan: nonnull).
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

std::unique_ptr<MfDeviceWorkspace> CpuWorkspace() {
  auto ws = MfDeviceWorkspace::Create(DeviceContext{});
  EXPECT_TRUE(ws.ok()) << ws.status().ToString();
  return ws.ok() ? std::move(*ws) : nullptr;
}

TEST(MfDeviceWorkspaceTest, CpuIsBitIdenticalToCpuKernels) {
  auto ws = CpuWorkspace();
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ(ws->device(), Device::kCpu);
  unsigned seed = 77;
  // One workspace across calls of changing sizes, 0 samples included.
  for (int64_t num_samples : {0, 1, 9, 300, 2000, 0, 40}) {
    for (int dim : {1, 8, 13, 64}) {
      const Problem pr = RandomProblem(++seed, num_samples, dim, 17, 29);
      const MfBatch b = pr.Batch();
      std::vector<float> ref_user(pr.user_rows.size()), ref_item(pr.item_rows.size());
      std::vector<float> ref_pred(num_samples);
      double ref_sq = -1.0;
      ASSERT_TRUE(MfBatchGradientCpu(b, ref_user.data(), ref_item.data(), &ref_sq).ok());
      ASSERT_TRUE(MfPredictCpu(b, ref_pred.data()).ok());

      std::vector<float> user(ref_user.size(), 42.0f), item(ref_item.size(), 42.0f);
      std::vector<float> pred(num_samples, 42.0f);
      double sq = 42.0;
      ASSERT_TRUE(ws->BatchGradient(b, user.data(), item.data(), &sq, nullptr).ok());
      ASSERT_TRUE(ws->Predict(b, pred.data()).ok());
      EXPECT_TRUE(SameBits(user, ref_user)) << "samples " << num_samples << " dim " << dim;
      EXPECT_TRUE(SameBits(item, ref_item)) << "samples " << num_samples << " dim " << dim;
      EXPECT_TRUE(SameBits(pred, ref_pred)) << "samples " << num_samples << " dim " << dim;
      EXPECT_EQ(std::memcmp(&sq, &ref_sq, sizeof(double)), 0);
      // A null sq_error_sum is allowed, as for the kernels.
      ASSERT_TRUE(ws->BatchGradient(b, user.data(), item.data(), nullptr, nullptr).ok());
      EXPECT_TRUE(SameBits(user, ref_user));
    }
  }
}

TEST(MfDeviceWorkspaceTest, CpuReturnsTheKernelsErrors) {
  auto ws = CpuWorkspace();
  ASSERT_NE(ws, nullptr);
  Problem pr = RandomProblem(5, 10, 4, 3, 3);
  pr.item_index[6] = 3;  // out of range
  const MfBatch b = pr.Batch();
  std::vector<float> user(pr.user_rows.size(), 7.0f), item(pr.item_rows.size(), 7.0f);
  std::vector<float> pred(10, 7.0f);
  const Status want_grad = MfBatchGradientCpu(b, user.data(), item.data(), nullptr);
  const Status want_pred = MfPredictCpu(b, pred.data());
  ASSERT_EQ(want_grad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws->BatchGradient(b, user.data(), item.data(), nullptr, nullptr), want_grad);
  EXPECT_EQ(ws->Predict(b, pred.data()), want_pred);
  for (float v : user) EXPECT_EQ(v, 7.0f);  // nothing written
  for (float v : pred) EXPECT_EQ(v, 7.0f);

  MfBatch bad = pr.Batch();
  bad.dim = 0;
  EXPECT_EQ(ws->BatchGradient(bad, user.data(), item.data(), nullptr, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ws->Predict(bad, pred.data()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws->Predict(pr.Batch(), nullptr).code(), StatusCode::kInvalidArgument);
}

TEST(MfDeviceWorkspaceTest, CpuStagedStepsGiveTheCpuKernelsBits) {
  auto ws = CpuWorkspace();
  ASSERT_NE(ws, nullptr);
  unsigned seed = 400;
  for (int64_t num_samples : {0, 1, 33, 1000}) {
    for (int64_t plan_bytes : {0, 5}) {
      const Problem pr = RandomProblem(++seed, num_samples, 7, 11, 23);
      const MfBatch b = pr.Batch();
      std::vector<float> ref_user(pr.user_rows.size()), ref_item(pr.item_rows.size());
      std::vector<float> ref_pred(num_samples);
      double ref_sq = -1.0;
      ASSERT_TRUE(MfBatchGradientCpu(b, ref_user.data(), ref_item.data(), &ref_sq).ok());
      ASSERT_TRUE(MfPredictCpu(b, ref_pred.data()).ok());

      auto step = ws->Stage(::tessera::testing::MfShapeOf(pr, plan_bytes));
      ASSERT_TRUE(step.ok()) << step.status().ToString();
      MfStagedStep* s = step->get();
      EXPECT_EQ(s->plan() != nullptr, plan_bytes > 0);
      ::tessera::testing::FillMfStep(pr, s);
      ASSERT_TRUE(ws->EnqueueGradient(s, ::tessera::testing::MfScalarsOf(pr)).ok());
      double sq = 42.0;
      ASSERT_TRUE(ws->FinishGradient(s, &sq).ok());
      const std::vector<float> user(s->gradients(), s->gradients() + ref_user.size());
      const std::vector<float> item(s->gradients() + ref_user.size(),
                                    s->gradients() + ref_user.size() + ref_item.size());
      EXPECT_TRUE(SameBits(user, ref_user)) << "samples " << num_samples;
      EXPECT_TRUE(SameBits(item, ref_item)) << "samples " << num_samples;
      EXPECT_EQ(std::memcmp(&sq, &ref_sq, sizeof(double)), 0);
      ASSERT_TRUE(ws->EnqueuePredict(s, ::tessera::testing::MfScalarsOf(pr)).ok());
      ASSERT_TRUE(ws->FinishPredict(s).ok());
      const std::vector<float> pred(s->predictions(), s->predictions() + num_samples);
      EXPECT_TRUE(SameBits(pred, ref_pred)) << "samples " << num_samples;
    }
  }
}

TEST(MfDeviceWorkspaceTest, StagedStepsCheckIndicesShapesAndOrder) {
  auto ws = CpuWorkspace();
  ASSERT_NE(ws, nullptr);
  Problem pr = RandomProblem(9, 10, 4, 3, 3);
  pr.user_index[4] = -1;
  auto step = ws->Stage(::tessera::testing::MfShapeOf(pr));
  ASSERT_TRUE(step.ok());
  ::tessera::testing::FillMfStep(pr, step->get());
  const Status bad = ws->EnqueueGradient(step->get(), ::tessera::testing::MfScalarsOf(pr));
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("sample 4"), std::string::npos) << bad.ToString();
  // Nothing was queued, so there is nothing to finish.
  EXPECT_EQ(ws->FinishGradient(step->get(), nullptr).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ws->FinishPredict(step->get()).code(), StatusCode::kFailedPrecondition);
  MfStageShape shape = ::tessera::testing::MfShapeOf(pr);
  shape.plan_bytes = -1;
  EXPECT_EQ(ws->Stage(shape).status().code(), StatusCode::kInvalidArgument);
  shape.plan_bytes = 0;
  shape.dim = 0;
  EXPECT_EQ(ws->Stage(shape).status().code(), StatusCode::kInvalidArgument);
}

TEST(MfDeviceWorkspaceTest, ReserveChecksItsArguments) {
  auto ws = CpuWorkspace();
  ASSERT_NE(ws, nullptr);
  EXPECT_TRUE(ws->Reserve(0, 1, 0, 0).ok());
  EXPECT_TRUE(ws->Reserve(1000, 64, 500, 800).ok());
  EXPECT_EQ(ws->Reserve(-1, 8, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws->Reserve(1, 0, 1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws->Reserve(1, 8, -1, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws->Reserve(1, 8, 1, -1).code(), StatusCode::kInvalidArgument);
}

TEST(MfDeviceWorkspaceTest, CudaCreateFollowsCheckCudaAvailable) {
  DeviceOptions options;
  options.device = Device::kCuda;
  auto resources = DeviceResources::Create(options);
  DeviceContext bare;  // no stream: not made by DeviceResources
  bare.device = Device::kCuda;
  auto bare_ws = MfDeviceWorkspace::Create(bare);
  const Status available = CheckCudaAvailable();
  if (available.ok()) {
    ASSERT_TRUE(resources.ok()) << resources.status().ToString();
    ASSERT_NE((*resources)->context().stream, nullptr);
    auto ws = MfDeviceWorkspace::Create((*resources)->context());
    ASSERT_TRUE(ws.ok()) << ws.status().ToString();
    EXPECT_EQ((*ws)->device(), Device::kCuda);
    ASSERT_FALSE(bare_ws.ok());
    EXPECT_EQ(bare_ws.status().code(), StatusCode::kInvalidArgument);
    return;
  }
  // No usable device here (or a build without CUDA): the same reason, not a crash later.
  ASSERT_FALSE(resources.ok());
  EXPECT_EQ(resources.status(), available);
  ASSERT_FALSE(bare_ws.ok());
  EXPECT_EQ(bare_ws.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(bare_ws.status().message().empty());
  EXPECT_EQ(bare_ws.status(), available);
}

TEST(MfDeviceWorkspaceTest, UnknownDeviceIsInvalidArgument) {
  DeviceContext ctx;
  ctx.device = static_cast<Device>(7);
  auto ws = MfDeviceWorkspace::Create(ctx);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(ws.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::kernels
