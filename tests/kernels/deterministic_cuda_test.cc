// The deterministic CUDA kernels (no float atomics; kernels/segments.h plans) against their CPU
// twins, and run twice under different schedules (label gpu). Under the emulated device the two
// runs use different fiber schedule seeds (cuda_emu::SetScheduleSeed), on a GPU they are simply
// two runs; either way the results must be the same bits. Skips when no CUDA device is usable.
// Tolerances against the CPU, |gpu - cpu| <= tol * (1 + |cpu|):
//   exact (bits)  gather backward: plain float additions in the CPU's order;
//   1e-5          pool backward (nvcc fuses weight * grad + sum), BCE loss sum (relative);
//   1e-4          MF gradients (the residual's dot product is a warp butterfly, not the CPU's
//                 8-lane blocks; the sums then run in the CPU's order), squared error 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dense.h"
#include "kernels/device.h"
#include "kernels/device_resources.h"
#include "kernels/embedding.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "kernels/segments.h"
#include "tests/kernels/ctr_kernels_test_util.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/mf_problem.h"
#include "tests/testing/test_util.h"

#if TESSERA_WITH_CUDA
#include <cuda_runtime.h>
#endif
#if TESSERA_CUDA_EMULATION
#include "cuda_emu/cuda_emu.h"
#endif

namespace tessera::kernels {
namespace {

#if TESSERA_WITH_CUDA

using ::tessera::testing::DeviceVector;
using ::tessera::testing::ExpectClose;
using ::tessera::testing::MfProblem;
using test_util::Random;
using test_util::RandomIndices;
using test_util::SameBits;

// Threads of one grid-stride pass: cuda_util.cuh's grid cap (65536 blocks on a GPU, 64 on the
// emulated device) of 256 threads. The sizes derived from it make every grid-stride loop take a
// second pass.
#if TESSERA_CUDA_EMULATION
constexpr int64_t kOnePass = int64_t{64} * 256;
#else
constexpr int64_t kOnePass = int64_t{65536} * 256;
#endif
constexpr int64_t kOnePassOfWarps = kOnePass / 32;  // one warp per sample

// The emulator's fiber schedule for the kernels launched next; a no-op on a real GPU.
void UseSchedule(uint64_t seed) {
#if TESSERA_CUDA_EMULATION
  cuda_emu::SetScheduleSeed(seed);
#else
  (void)seed;
#endif
}

// A host plan and its device copy.
struct DevicePlan {
  DevicePlan(const int32_t* indices, int64_t num_positions, int64_t num_rows) {
    Status s = host.Build(indices, num_positions, num_rows);
    EXPECT_TRUE(s.ok()) << s.ToString();
    s = device.Upload(host, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  SegmentPlan host;
  DeviceSegments device;
};

// One deterministic MF gradient on the device: outputs start as garbage (every element must be
// written).
struct MfGpuResult {
  std::vector<float> user_grads, item_grads;
  double sq_error = 0.0;
};

MfGpuResult RunMfDeterministic(const MfProblem& h, uint64_t schedule_seed) {
  const MfBatch host = h.Batch();
  DevicePlan users(host.user_index, host.num_samples, host.num_users);
  DevicePlan items(host.item_index, host.num_samples, host.num_items);
  DeviceVector<int32_t> d_user_index(h.user_index), d_item_index(h.item_index);
  DeviceVector<float> d_ratings(h.ratings), d_user_rows(h.user_rows), d_item_rows(h.item_rows);
  DeviceVector<float> d_user_grads(std::vector<float>(h.user_rows.size(), 42.0f));
  DeviceVector<float> d_item_grads(std::vector<float>(h.item_rows.size(), 42.0f));
  DeviceVector<double> d_sq_error(std::vector<double>{42.0});
  DeviceVector<float> d_errors(std::vector<float>(h.ratings.size(), 42.0f));
  MfGradientPlan plan;
  plan.users = users.device.view();
  plan.items = items.device.view();
  plan.errors = d_errors.data();
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  ctx.deterministic = true;
  UseSchedule(schedule_seed);
  const MfBatch d = h.View(d_user_index.data(), d_item_index.data(), d_ratings.data(),
                           d_user_rows.data(), d_item_rows.data());
  Status s =
      MfBatchGradient(ctx, d, d_user_grads.data(), d_item_grads.data(), d_sq_error.data(), &plan);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_user_grads.ToHost(), d_item_grads.ToHost(), d_sq_error.ToHost()[0]};
}

void ExpectMfMatchesCpu(const MfProblem& h) {
  std::vector<float> user_grads(h.user_rows.size()), item_grads(h.item_rows.size());
  double sq_error = 0.0;
  TS_ASSERT_OK(MfBatchGradientCpu(h.Batch(), user_grads.data(), item_grads.data(), &sq_error));
  const MfGpuResult gpu = RunMfDeterministic(h, 1);
  ExpectClose(gpu.user_grads, user_grads, 1e-4f, "user_grads");
  ExpectClose(gpu.item_grads, item_grads, 1e-4f, "item_grads");
  EXPECT_NEAR(gpu.sq_error, sq_error, 1e-5 * (1.0 + sq_error));
}

MfProblem RandomProblem(unsigned seed, int64_t num_samples, int dim, int64_t num_users,
                        int64_t num_items) {
  MfProblem h = ::tessera::testing::RandomMfProblem(seed, num_samples, dim, num_users, num_items);
  h.global_mean = 3.6f;
  h.l2 = 0.02f;
  h.l2_bias = 0.005f;
  return h;
}

TEST(DeterministicCudaTest, MfGradientMatchesCpu) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  unsigned seed = 900;
  for (int64_t num_samples : {0, 1, 33, 257, 3001}) {
    for (int dim : {1, 31, 33, 128}) {
      SCOPED_TRACE("seed=" + std::to_string(seed + 1) + " samples=" + std::to_string(num_samples) +
                   " dim=" + std::to_string(dim));
      ExpectMfMatchesCpu(RandomProblem(++seed, num_samples, dim, 37, 53));
    }
  }
  SCOPED_TRACE("heavily shared rows");
  ExpectMfMatchesCpu(RandomProblem(9001, 20000, 32, 2, 3));
}

TEST(DeterministicCudaTest, MfGradientCoversMoreThanOneGridStridePass) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  // More samples than warps in one pass (the residual kernel), more user-gradient floats than
  // threads in one pass (the side kernel), few items (long segments).
  const int dim = 63;
  const int64_t num_samples = kOnePassOfWarps + 100;
  const int64_t num_users = kOnePass / (dim + 1) + 100;
  ASSERT_GT(num_users * (dim + 1), kOnePass);
  ExpectMfMatchesCpu(RandomProblem(4711, num_samples, dim, num_users, 7));
}

TEST(DeterministicCudaTest, MfGradientIsBitIdenticalAcrossSchedules) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  // Few rows, many samples each: the atomic kernel's order would vary here.
  const MfProblem h = RandomProblem(31337, 5000, 33, 3, 257);
  const MfGpuResult first = RunMfDeterministic(h, 1);
  const MfGpuResult second = RunMfDeterministic(h, 0x9e3779b97f4a7c15ull);
  EXPECT_TRUE(SameBits(first.user_grads, second.user_grads));
  EXPECT_TRUE(SameBits(first.item_grads, second.item_grads));
  EXPECT_EQ(std::memcmp(&first.sq_error, &second.sq_error, sizeof(double)), 0);
}

TEST(DeterministicCudaTest, MfWorkspaceOfADeterministicContextRepeatsItsBits) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  DeviceOptions options;
  options.device = Device::kCuda;
  options.deterministic = true;
  auto resources = DeviceResources::Create(options);
  ASSERT_TRUE(resources.ok()) << resources.status().ToString();
  ASSERT_TRUE((*resources)->context().deterministic);
  auto workspace = MfDeviceWorkspace::Create((*resources)->context());
  ASSERT_TRUE(workspace.ok()) << workspace.status().ToString();
  const MfProblem h = RandomProblem(2024, 4000, 16, 5, 300);
  std::vector<float> cpu_users(h.user_rows.size()), cpu_items(h.item_rows.size());
  double cpu_sq_error = 0.0;
  TS_ASSERT_OK(MfBatchGradientCpu(h.Batch(), cpu_users.data(), cpu_items.data(), &cpu_sq_error));
  std::vector<float> users[2], items[2];
  double sq_error[2] = {0.0, 0.0};
  for (int run = 0; run < 2; ++run) {
    UseSchedule(100 + run);
    users[run].assign(h.user_rows.size(), 42.0f);
    items[run].assign(h.item_rows.size(), 42.0f);
    TS_ASSERT_OK((*workspace)
                     ->BatchGradient(h.Batch(), users[run].data(), items[run].data(),
                                     &sq_error[run], nullptr));
  }
  EXPECT_TRUE(SameBits(users[0], users[1]));
  EXPECT_TRUE(SameBits(items[0], items[1]));
  EXPECT_EQ(std::memcmp(&sq_error[0], &sq_error[1], sizeof(double)), 0);
  ExpectClose(users[0], cpu_users, 1e-4f, "user_grads");
  ExpectClose(items[0], cpu_items, 1e-4f, "item_grads");
  EXPECT_NEAR(sq_error[0], cpu_sq_error, 1e-5 * (1.0 + cpu_sq_error));
}

// One deterministic gather backward and pool backward on the device, both adding into a
// grad_rows that starts at `initial`. Pool positions start at offsets[0], which may be > 0.
struct EmbeddingProblem {
  int64_t batch = 0;
  int fields = 3;
  int dim = 0;
  int64_t num_rows = 0;
  std::vector<int32_t> indices;  // batch * fields
  std::vector<float> grad_out;   // batch * fields * dim
  std::vector<int64_t> offsets;  // bags + 1, starting at `first`
  std::vector<int32_t> keys;     // offsets.back() entries; [0, first) are never read
  std::vector<float> weights;
  std::vector<float> initial;  // num_rows * dim
  // The pool backward reads its bags' gradient as the layout places them in grad_out (the gather
  // backward reads grad_out densely).
  BagLayout layout;
  int64_t num_bags() const { return batch * fields; }
};

// pad > 0: the bags' gradient as the first columns of rows pad floats wider (BagLayout).
EmbeddingProblem RandomEmbeddingProblem(unsigned seed, int64_t batch, int dim, int64_t num_rows,
                                        int pad = 0) {
  std::mt19937 rng(seed);
  EmbeddingProblem p;
  p.batch = batch;
  p.dim = dim;
  p.num_rows = num_rows;
  p.indices = RandomIndices(&rng, batch * p.fields, static_cast<int32_t>(num_rows));
  if (pad > 0) p.layout = {p.fields, p.fields * dim + pad};
  p.grad_out = Random(&rng, batch * (p.fields * dim + pad));
  const int64_t first = 3;
  p.offsets = {first};
  for (int64_t k = 0; k < p.num_bags(); ++k) p.offsets.push_back(p.offsets.back() + k % 5);
  p.keys = RandomIndices(&rng, p.offsets.back(), static_cast<int32_t>(num_rows));
  for (int64_t k = 0; k < first; ++k) p.keys[k] = -1;  // before offsets[0]: never read
  p.weights = Random(&rng, p.offsets.back());
  p.initial = Random(&rng, num_rows * dim);
  return p;
}

struct EmbeddingResult {
  std::vector<float> gather, pool;  // grad_rows after each backward
};

EmbeddingResult RunEmbeddingCpu(const EmbeddingProblem& p) {
  EmbeddingResult r{p.initial, p.initial};
  EXPECT_TRUE(EmbeddingGatherBackwardCpu(p.indices.data(), p.grad_out.data(), r.gather.data(),
                                         p.num_rows, p.batch, p.fields, p.dim)
                  .ok());
  EXPECT_TRUE(EmbeddingPoolBackwardCpu(p.offsets.data(), p.keys.data(), p.weights.data(),
                                       p.grad_out.data(), r.pool.data(), p.num_rows, p.num_bags(),
                                       p.dim, p.layout)
                  .ok());
  return r;
}

EmbeddingResult RunEmbeddingDeterministic(const EmbeddingProblem& p, uint64_t schedule_seed) {
  DevicePlan gather_plan(p.indices.data(), static_cast<int64_t>(p.indices.size()), p.num_rows);
  const int64_t first = p.offsets.front();
  DevicePlan pool_plan(p.keys.data() + first, p.offsets.back() - first, p.num_rows);
  DeviceVector<int32_t> d_indices(p.indices), d_keys(p.keys);
  DeviceVector<float> d_grad_out(p.grad_out), d_weights(p.weights);
  DeviceVector<int64_t> d_offsets(p.offsets);
  DeviceVector<float> d_gather(p.initial), d_pool(p.initial);
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  ctx.deterministic = true;
  UseSchedule(schedule_seed);
  const SegmentsView gather_segments = gather_plan.device.view();
  const SegmentsView pool_segments = pool_plan.device.view();
  Status s = EmbeddingGatherBackward(ctx, d_indices.data(), d_grad_out.data(), d_gather.data(),
                                     p.num_rows, p.batch, p.fields, p.dim, &gather_segments);
  EXPECT_TRUE(s.ok()) << s.ToString();
  s = EmbeddingPoolBackward(ctx, d_offsets.data(), d_keys.data(), d_weights.data(),
                            d_grad_out.data(), d_pool.data(), p.num_rows, p.num_bags(), p.dim,
                            &pool_segments, p.layout);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return {d_gather.ToHost(), d_pool.ToHost()};
}

void ExpectEmbeddingMatchesCpu(const EmbeddingProblem& p) {
  const EmbeddingResult cpu = RunEmbeddingCpu(p);
  const EmbeddingResult gpu = RunEmbeddingDeterministic(p, 7);
  EXPECT_TRUE(SameBits(gpu.gather, cpu.gather)) << "gather backward differs from the CPU's bits";
  ExpectClose(gpu.pool, cpu.pool, 1e-5f, "pool backward");
}

TEST(DeterministicCudaTest, EmbeddingBackwardsMatchCpu) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  unsigned seed = 300;
  for (int64_t batch : {0, 1, 33, 257, 3000}) {
    for (int dim : {1, 8, 33}) {
      for (int64_t num_rows : {1, 17, 1000}) {
        SCOPED_TRACE("seed=" + std::to_string(seed + 1) + " batch=" + std::to_string(batch) +
                     " dim=" + std::to_string(dim) + " rows=" + std::to_string(num_rows));
        ExpectEmbeddingMatchesCpu(RandomEmbeddingProblem(++seed, batch, dim, num_rows));
      }
      // The pool backward reading x0's gradient in place (the fused CTR step).
      SCOPED_TRACE("in a wider matrix, batch=" + std::to_string(batch));
      ExpectEmbeddingMatchesCpu(RandomEmbeddingProblem(++seed, batch, dim, 17, /*pad=*/7));
    }
  }
}

TEST(DeterministicCudaTest, EmbeddingBackwardsCoverMoreThanOneGridStridePass) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  const int dim = 64;
  const int64_t num_rows = kOnePass / dim + 100;
  ASSERT_GT(num_rows * dim, kOnePass);
  ExpectEmbeddingMatchesCpu(RandomEmbeddingProblem(8080, 200, dim, num_rows));
}

TEST(DeterministicCudaTest, EmbeddingBackwardsAreBitIdenticalAcrossSchedules) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  const EmbeddingProblem p = RandomEmbeddingProblem(555, 2000, 16, 5);
  const EmbeddingResult first = RunEmbeddingDeterministic(p, 11);
  const EmbeddingResult second = RunEmbeddingDeterministic(p, 0xfeedfaceull);
  EXPECT_TRUE(SameBits(first.gather, second.gather));
  EXPECT_TRUE(SameBits(first.pool, second.pool));
}

TEST(DeterministicCudaTest, BceLossSumMatchesCpuAndRepeatsItsBits) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  std::mt19937 rng(77);
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  ctx.deterministic = true;
  for (int64_t size : {0, 1, 33, 257, 100000}) {
    SCOPED_TRACE("size=" + std::to_string(size));
    const std::vector<float> logits = Random(&rng, size, -8.0f, 8.0f);
    const std::vector<float> labels = Random(&rng, size, 0.0f, 1.0f);
    std::vector<float> probs(size);
    double loss = 0.0;
    TS_ASSERT_OK(SigmoidBceForwardCpu(logits.data(), labels.data(), probs.data(), &loss, size));
    DeviceVector<float> d_logits(logits), d_labels(labels);
    double gpu_loss[2] = {0.0, 0.0};
    std::vector<float> gpu_probs[2];
    for (int run = 0; run < 2; ++run) {
      UseSchedule(40 + run);
      DeviceVector<float> d_probs(std::vector<float>(size, 42.0f));
      DeviceVector<double> d_loss(std::vector<double>{42.0});
      TS_ASSERT_OK(SigmoidBceForward(ctx, d_logits.data(), d_labels.data(), d_probs.data(),
                                     d_loss.data(), size));
      TS_ASSERT_CUDA_OK(cudaDeviceSynchronize());
      gpu_loss[run] = d_loss.ToHost()[0];
      gpu_probs[run] = d_probs.ToHost();
    }
    EXPECT_EQ(std::memcmp(&gpu_loss[0], &gpu_loss[1], sizeof(double)), 0);
    EXPECT_TRUE(SameBits(gpu_probs[0], gpu_probs[1]));
    EXPECT_NEAR(gpu_loss[0], loss, 1e-5 * (1.0 + loss));
    ExpectClose(gpu_probs[0], probs, 1e-6f, "probs");
  }
}

// Needs no device: the checks run before anything is queued.
TEST(DeterministicCudaArgsTest, DeterministicContextNeverFallsBackToAtomics) {
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  ctx.deterministic = true;
  float f = 0.0f;
  int32_t i = 0;
  int64_t offsets[2] = {0, 1};
  MfBatch b;
  b.dim = 1;
  b.num_samples = 1;
  b.num_users = 1;
  b.num_items = 1;
  b.user_index = b.item_index = &i;
  b.user_rows = b.item_rows = b.ratings = &f;
  EXPECT_EQ(MfBatchGradient(ctx, b, &f, &f, nullptr).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(EmbeddingGatherBackward(ctx, &i, &f, &f, 1, 1, 1, 1).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(EmbeddingPoolBackward(ctx, offsets, &i, nullptr, &f, &f, 1, 1, 1).code(),
            StatusCode::kFailedPrecondition);
}

TEST(DeterministicCudaArgsTest, PlansOfTheWrongSizeAreRejected) {
  float f = 0.0f;
  int32_t i = 0;
  int32_t plan_offsets[3] = {0, 1, 1};
  SegmentsView two_rows;
  two_rows.num_rows = 2;
  two_rows.num_positions = 1;
  two_rows.offsets = plan_offsets;
  two_rows.order = &i;
  MfBatch b;
  b.dim = 1;
  b.num_samples = 1;
  b.num_users = 1;  // the plan says 2
  b.num_items = 2;
  b.user_index = b.item_index = &i;
  b.user_rows = b.item_rows = b.ratings = &f;
  MfGradientPlan plan;
  plan.users = two_rows;
  plan.items = two_rows;
  plan.errors = &f;
  EXPECT_EQ(MfBatchGradientDeterministicCuda(b, plan, &f, &f, nullptr, nullptr).code(),
            StatusCode::kInvalidArgument);
  b.num_users = 2;
  plan.errors = nullptr;
  EXPECT_EQ(MfBatchGradientDeterministicCuda(b, plan, &f, &f, nullptr, nullptr).code(),
            StatusCode::kInvalidArgument);
  // Gather: 2 lookups, the plan has 1 position.
  EXPECT_EQ(EmbeddingGatherBackwardDeterministicCuda(two_rows, &f, &f, 2, 2, 1, 1, nullptr).code(),
            StatusCode::kInvalidArgument);
  // Pool: 3 rows, the plan has 2.
  int64_t offsets[2] = {0, 1};
  EXPECT_EQ(
      EmbeddingPoolBackwardDeterministicCuda(offsets, two_rows, nullptr, &f, &f, 3, 1, 1, nullptr)
          .code(),
      StatusCode::kInvalidArgument);
}

#else  // !TESSERA_WITH_CUDA

TEST(DeterministicCudaTest, MatchesCpu) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tessera::kernels
