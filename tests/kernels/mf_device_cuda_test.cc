// The kCuda MfDeviceWorkspace against the CPU kernels on the same random host batches (label
// gpu); skips when no CUDA device is usable. One workspace serves batches of growing, shrinking
// and zero size, so the growable device buffers and their reuse are exercised. As in
// mf_cuda_test.cc the CUDA gradients sum with atomicAdd in unspecified order: gradients are
// compared with a tolerance of 1e-4 * (1 + |cpu|), predictions 1e-5 * (1 + |cpu|) and the
// squared-error sum 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/device_resources.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/mf_problem.h"
#include "tests/testing/mf_stage.h"

namespace tessera::kernels {
namespace {

using ::tessera::testing::ExpectClose;
using ::tessera::testing::FillMfStep;
using ::tessera::testing::MfProblem;
using ::tessera::testing::MfScalarsOf;
using ::tessera::testing::MfShapeOf;

// A random batch with global mean 3.6, l2 0.02 and no bias regularisation.
MfProblem RandomBatch(unsigned seed, int64_t num_samples, int dim, int64_t num_users,
                      int64_t num_items) {
  MfProblem h = ::tessera::testing::RandomMfProblem(seed, num_samples, dim, num_users, num_items);
  h.global_mean = 3.6f;
  h.l2 = 0.02f;
  h.l2_bias = 0.0f;
  return h;
}

std::unique_ptr<MfDeviceWorkspace> CudaWorkspace() {
  // One stream for every workspace of the test binary, as a worker has one.
  static const std::unique_ptr<DeviceResources> resources = [] {
    DeviceOptions options;
    options.device = Device::kCuda;
    auto created = DeviceResources::Create(options);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? std::move(*created) : nullptr;
  }();
  if (resources == nullptr) return nullptr;
  auto ws = MfDeviceWorkspace::Create(resources->context());
  EXPECT_TRUE(ws.ok()) << ws.status().ToString();
  return ws.ok() ? std::move(*ws) : nullptr;
}

void CompareWithCpu(MfDeviceWorkspace* ws, int64_t num_samples, int dim, int64_t num_users,
                    int64_t num_items, unsigned seed) {
  SCOPED_TRACE("seed=" + std::to_string(seed) + " samples=" + std::to_string(num_samples) +
               " dim=" + std::to_string(dim) + " users=" + std::to_string(num_users) +
               " items=" + std::to_string(num_items));
  const MfProblem h = RandomBatch(seed, num_samples, dim, num_users, num_items);
  const MfBatch b = h.Batch();
  std::vector<float> cpu_user(h.user_rows.size()), cpu_item(h.item_rows.size());
  std::vector<float> cpu_pred(num_samples);
  double cpu_sq = 0.0;
  ASSERT_TRUE(MfBatchGradientCpu(b, cpu_user.data(), cpu_item.data(), &cpu_sq).ok());
  ASSERT_TRUE(MfPredictCpu(b, cpu_pred.data()).ok());

  // Host outputs start as garbage: the workspace must overwrite every element.
  std::vector<float> user(cpu_user.size(), 42.0f), item(cpu_item.size(), 42.0f);
  std::vector<float> pred(num_samples, 42.0f);
  double sq = 42.0;
  Status s = ws->BatchGradient(b, user.data(), item.data(), &sq, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = ws->Predict(b, pred.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectClose(user, cpu_user, 1e-4f);
  ExpectClose(item, cpu_item, 1e-4f);
  ExpectClose(pred, cpu_pred, 1e-5f);
  EXPECT_NEAR(sq, cpu_sq, 1e-5 * (1.0 + cpu_sq));

  // Without the error sum the gradients are the same.
  std::fill(user.begin(), user.end(), 42.0f);
  s = ws->BatchGradient(b, user.data(), item.data(), nullptr, nullptr);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectClose(user, cpu_user, 1e-4f);
}

TEST(MfDeviceCudaTest, MatchesCpuOnRandomBatches) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ(ws->device(), Device::kCuda);
  unsigned seed = 900;
  for (int64_t num_samples : {1, 7, 256, 257, 3001}) {
    for (int dim : {1, 31, 32, 33, 130}) CompareWithCpu(ws.get(), num_samples, dim, 37, 53, ++seed);
  }
}

TEST(MfDeviceCudaTest, BuffersGrowAndShrinkAcrossCalls) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  // Sizes increase (each call reallocates), then drop (reuse of larger buffers), hit 0, and
  // grow again past every earlier size.
  struct Shape {
    int64_t samples;
    int dim;
    int64_t users, items;
  };
  const Shape shapes[] = {{0, 8, 0, 0},
                          {0, 8, 3, 5},
                          {1, 8, 1, 1},
                          {10, 16, 4, 9},
                          {100, 32, 40, 70},
                          {1000, 64, 300, 500},
                          {20, 64, 5, 5},
                          {0, 64, 300, 500},
                          {5000, 96, 2000, 1500},
                          {3, 5, 2, 2},
                          {20000, 128, 4000, 6000}};
  unsigned seed = 3100;
  for (const Shape& sh : shapes) {
    CompareWithCpu(ws.get(), sh.samples, sh.dim, sh.users, sh.items, ++seed);
  }
}

TEST(MfDeviceCudaTest, ReserveThenUse) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Reserve(4096, 64, 1024, 1024).ok());
  CompareWithCpu(ws.get(), 4096, 64, 1024, 1024, 11);
  CompareWithCpu(ws.get(), 100, 64, 10, 10, 12);
  EXPECT_EQ(ws->Reserve(-1, 64, 1, 1).code(), StatusCode::kInvalidArgument);
}

TEST(MfDeviceCudaTest, EmptyBatchZeroesHostOutputs) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  MfBatch b;
  b.dim = 4;
  b.num_users = 3;
  b.num_items = 2;
  std::vector<float> user(15, 1.0f), item(10, 1.0f);
  double sq = 1.0;
  ASSERT_TRUE(ws->BatchGradient(b, user.data(), item.data(), &sq, nullptr).ok());
  for (float v : user) EXPECT_EQ(v, 0.0f);
  for (float v : item) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(sq, 0.0);
  EXPECT_TRUE(ws->Predict(b, nullptr).ok());
}

TEST(MfDeviceCudaTest, RejectsBadBatchesLikeTheCpu) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  MfProblem h = RandomBatch(8, 10, 4, 3, 3);
  h.user_index[4] = -1;
  const MfBatch b = h.Batch();
  std::vector<float> user(h.user_rows.size(), 7.0f), item(h.item_rows.size(), 7.0f);
  std::vector<float> pred(10, 7.0f);
  EXPECT_EQ(ws->BatchGradient(b, user.data(), item.data(), nullptr, nullptr),
            MfBatchGradientCpu(b, user.data(), item.data(), nullptr));
  EXPECT_EQ(ws->Predict(b, pred.data()), MfPredictCpu(b, pred.data()));
  for (float v : user) EXPECT_EQ(v, 7.0f);
  for (float v : pred) EXPECT_EQ(v, 7.0f);
  MfBatch bad = b;
  bad.dim = 0;
  EXPECT_EQ(ws->BatchGradient(bad, user.data(), item.data(), nullptr, nullptr).code(),
            StatusCode::kInvalidArgument);
  // The workspace still works after rejected calls.
  CompareWithCpu(ws.get(), 50, 8, 6, 6, 9);
}

// The CPU's gradients of `pr`, user rows then item rows (the staged layout).
std::vector<float> CpuGradients(const MfProblem& pr, double* sq) {
  std::vector<float> grads(pr.user_rows.size() + pr.item_rows.size());
  EXPECT_TRUE(
      MfBatchGradientCpu(pr.Batch(), grads.data(), grads.data() + pr.user_rows.size(), sq).ok());
  return grads;
}

std::vector<float> Gradients(const MfStagedStep& step) {
  return std::vector<float>(step.gradients(), step.gradients() + step.num_row_floats());
}

TEST(MfDeviceCudaTest, StagedStepsMatchCpuWithAndWithoutPlanBytes) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  unsigned seed = 5100;
  // Sizes that move every section of the packed buffers off a 256-byte boundary; the plan bytes
  // shift the rows.
  for (int64_t num_samples : {0, 1, 63, 257, 4099}) {
    for (int64_t plan_bytes : {0, 1, 700}) {
      SCOPED_TRACE("samples " + std::to_string(num_samples) + " plan " +
                   std::to_string(plan_bytes));
      const MfProblem pr = RandomBatch(++seed, num_samples, 33, 41, 19);
      double cpu_sq = 0.0;
      const std::vector<float> cpu = CpuGradients(pr, &cpu_sq);
      std::vector<float> cpu_pred(num_samples);
      ASSERT_TRUE(MfPredictCpu(pr.Batch(), cpu_pred.data()).ok());
      auto step = ws->Stage(MfShapeOf(pr, plan_bytes));
      ASSERT_TRUE(step.ok()) << step.status().ToString();
      FillMfStep(pr, step->get());
      ASSERT_TRUE(ws->EnqueueGradient(step->get(), MfScalarsOf(pr)).ok());
      double sq = 42.0;
      ASSERT_TRUE(ws->FinishGradient(step->get(), &sq).ok());
      ExpectClose(Gradients(**step), cpu, 1e-4f, "gradients");
      EXPECT_NEAR(sq, cpu_sq, 1e-5 * (1.0 + cpu_sq));
      ASSERT_TRUE(ws->EnqueuePredict(step->get(), MfScalarsOf(pr)).ok());
      ASSERT_TRUE(ws->FinishPredict(step->get()).ok());
      ExpectClose(std::vector<float>((*step)->predictions(), (*step)->predictions() + num_samples),
                  cpu_pred, 1e-5f, "predictions");
    }
  }
}

TEST(MfDeviceCudaTest, StepsInFlightTogetherEachGetTheirOwnResults) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  // Three steps queued before any is finished, finished out of order: each slot's upload,
  // kernel and download must be ordered by its own events.
  std::vector<MfProblem> problems;
  std::vector<std::unique_ptr<MfStagedStep>> steps;
  for (unsigned k = 0; k < 3; ++k) {
    problems.push_back(RandomBatch(6000 + k, 3000 + 1000 * k, 32, 300 + k, 200));
    auto step = ws->Stage(MfShapeOf(problems.back()));
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    FillMfStep(problems.back(), step->get());
    ASSERT_TRUE(ws->EnqueueGradient(step->get(), MfScalarsOf(problems.back())).ok());
    steps.push_back(std::move(*step));
  }
  for (int k : {2, 0, 1}) {
    double cpu_sq = 0.0, sq = 0.0;
    const std::vector<float> cpu = CpuGradients(problems[k], &cpu_sq);
    ASSERT_TRUE(ws->FinishGradient(steps[k].get(), &sq).ok());
    ExpectClose(Gradients(*steps[k]), cpu, 1e-4f, "step " + std::to_string(k));
    EXPECT_NEAR(sq, cpu_sq, 1e-5 * (1.0 + cpu_sq));
  }
  EXPECT_EQ(ws->FinishGradient(steps[0].get(), nullptr).code(), StatusCode::kFailedPrecondition);
}

TEST(MfDeviceCudaTest, HeldGradientsAreNeverOverwrittenAndSlotsAreReused) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  auto ws = CudaWorkspace();
  ASSERT_NE(ws, nullptr);
  const MfProblem first = RandomBatch(7000, 2000, 16, 100, 100);
  double sq = 0.0;
  std::shared_ptr<const void> held;  // what a push Frame of the first step's gradients holds
  const float* held_grads = nullptr;
  std::vector<float> first_grads;
  {
    auto step = ws->Stage(MfShapeOf(first));
    ASSERT_TRUE(step.ok());
    FillMfStep(first, step->get());
    ASSERT_TRUE(ws->EnqueueGradient(step->get(), MfScalarsOf(first)).ok());
    ASSERT_TRUE(ws->FinishGradient(step->get(), &sq).ok());
    held = (*step)->gradients_owner();
    held_grads = (*step)->gradients();
    first_grads = Gradients(**step);
  }  // the step is released; its gradients are still held
  // Many later steps of the same shape, each released after use: none may write the held slot.
  for (unsigned k = 0; k < 20; ++k) {
    const MfProblem pr = RandomBatch(7100 + k, 2000, 16, 100, 100);
    auto step = ws->Stage(MfShapeOf(pr));
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    EXPECT_NE((*step)->gradients(), held_grads);
    FillMfStep(pr, step->get());
    ASSERT_TRUE(ws->EnqueueGradient(step->get(), MfScalarsOf(pr)).ok());
    ASSERT_TRUE(ws->FinishGradient(step->get(), nullptr).ok());
  }
  EXPECT_EQ(std::vector<float>(held_grads, held_grads + first_grads.size()), first_grads);
  // Holding every slot's gradients exhausts them with a clear error instead of growing forever.
  std::vector<std::shared_ptr<const void>> holders;
  Status last;
  for (int k = 0; k < 64 && last.ok(); ++k) {
    auto step = ws->Stage(MfShapeOf(first));
    last = step.status();
    if (step.ok()) holders.push_back((*step)->gradients_owner());
  }
  EXPECT_EQ(last.code(), StatusCode::kFailedPrecondition) << last.ToString();
  holders.clear();
  held.reset();
  auto again = ws->Stage(MfShapeOf(first));
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

}  // namespace
}  // namespace tessera::kernels
