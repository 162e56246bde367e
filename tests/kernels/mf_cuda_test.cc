// MfBatchGradientCuda / MfPredictCuda against the CPU kernels on the same random batches
// (label gpu). Skips when no CUDA device is usable. GPU per-row sums use atomicAdd in
// unspecified order, so gradients are compared with a tolerance of 1e-4 * (1 + |cpu|) and
// the squared-error sum with 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/mf.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/mf_problem.h"

#if TESSERA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace tessera::kernels {
namespace {

#if TESSERA_WITH_CUDA

using ::tessera::testing::DeviceVector;
using ::tessera::testing::ExpectClose;

using ::tessera::testing::MfProblem;

// A random batch with global mean 3.6, l2 0.02 and l2_bias 0.005.
MfProblem RandomBatch(unsigned seed, int64_t num_samples, int dim, int64_t num_users,
                      int64_t num_items) {
  MfProblem h = ::tessera::testing::RandomMfProblem(seed, num_samples, dim, num_users, num_items);
  h.global_mean = 3.6f;
  h.l2 = 0.02f;
  h.l2_bias = 0.005f;
  return h;
}

void CompareCpuAndCuda(int64_t num_samples, int dim, int64_t num_users, int64_t num_items,
                       unsigned seed, cudaStream_t stream) {
  SCOPED_TRACE("seed=" + std::to_string(seed) + " samples=" + std::to_string(num_samples) +
               " dim=" + std::to_string(dim) + " users=" + std::to_string(num_users) +
               " items=" + std::to_string(num_items));
  const MfProblem h = RandomBatch(seed, num_samples, dim, num_users, num_items);
  const MfBatch cpu_batch = h.Batch();
  std::vector<float> cpu_user_grads(h.user_rows.size()), cpu_item_grads(h.item_rows.size());
  std::vector<float> cpu_predictions(num_samples);
  double cpu_sq_error = 0.0;
  ASSERT_TRUE(
      MfBatchGradientCpu(cpu_batch, cpu_user_grads.data(), cpu_item_grads.data(), &cpu_sq_error)
          .ok());
  ASSERT_TRUE(MfPredictCpu(cpu_batch, cpu_predictions.data()).ok());

  DeviceVector<int32_t> d_user_index(h.user_index), d_item_index(h.item_index);
  DeviceVector<float> d_ratings(h.ratings), d_user_rows(h.user_rows), d_item_rows(h.item_rows);
  // Outputs start as garbage: the kernel must overwrite them.
  DeviceVector<float> d_user_grads(std::vector<float>(h.user_rows.size(), 42.0f));
  DeviceVector<float> d_item_grads(std::vector<float>(h.item_rows.size(), 42.0f));
  DeviceVector<double> d_sq_error(std::vector<double>{42.0});
  DeviceVector<float> d_predictions(static_cast<size_t>(num_samples));
  const MfBatch gpu_batch = h.View(d_user_index.data(), d_item_index.data(), d_ratings.data(),
                                   d_user_rows.data(), d_item_rows.data());
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  ctx.stream = stream;
  Status s =
      MfBatchGradient(ctx, gpu_batch, d_user_grads.data(), d_item_grads.data(), d_sq_error.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = MfPredict(ctx, gpu_batch, d_predictions.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  TS_ASSERT_CUDA_OK(cudaStreamSynchronize(stream));

  ExpectClose(d_user_grads.ToHost(), cpu_user_grads, 1e-4f);
  ExpectClose(d_item_grads.ToHost(), cpu_item_grads, 1e-4f);
  ExpectClose(d_predictions.ToHost(), cpu_predictions, 1e-5f);
  const double gpu_sq_error = d_sq_error.ToHost()[0];
  EXPECT_NEAR(gpu_sq_error, cpu_sq_error, 1e-5 * (1.0 + cpu_sq_error));
}

TEST(MfCudaTest, MatchesCpuOnRandomBatches) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  cudaStream_t stream = nullptr;
  TS_ASSERT_CUDA_OK(cudaStreamCreate(&stream));
  // 8 samples per 256-thread block and 32 lanes per sample: cover 0, 1, non-multiples of
  // both, and dims below, at and above one warp.
  const int64_t sample_counts[] = {0, 1, 7, 8, 9, 255, 256, 257, 3001};
  const int dims[] = {1, 5, 31, 32, 33, 128, 130};
  unsigned seed = 500;
  for (int64_t num_samples : sample_counts) {
    for (int dim : dims) CompareCpuAndCuda(num_samples, dim, 37, 53, ++seed, stream);
  }
  TS_ASSERT_CUDA_OK(cudaStreamDestroy(stream));
}

TEST(MfCudaTest, HeavilySharedRowsMatchCpu) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  // Every sample hits one of two users: many atomicAdds on the same floats.
  CompareCpuAndCuda(20000, 32, 2, 3, 9001, nullptr);
}

TEST(MfCudaTest, RandomSizesMatchCpu) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  const unsigned seed = 4242;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> samples(0, 5000);
  std::uniform_int_distribution<int> dims(1, 160);
  std::uniform_int_distribution<int64_t> rows(1, 400);
  for (int trial = 0; trial < 10; ++trial) {
    CompareCpuAndCuda(samples(rng), dims(rng), rows(rng), rows(rng), seed + trial, nullptr);
  }
}

TEST(MfCudaTest, EmptyBatchZeroesDeviceOutputs) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  MfBatch b;
  b.dim = 4;
  b.num_users = 3;
  b.num_items = 2;
  DeviceVector<float> d_user_grads(std::vector<float>(15, 1.0f));
  DeviceVector<float> d_item_grads(std::vector<float>(10, 1.0f));
  DeviceVector<double> d_sq_error(std::vector<double>{1.0});
  ASSERT_TRUE(
      MfBatchGradientCuda(b, d_user_grads.data(), d_item_grads.data(), d_sq_error.data(), nullptr)
          .ok());
  TS_ASSERT_CUDA_OK(cudaDeviceSynchronize());
  for (float v : d_user_grads.ToHost()) EXPECT_EQ(v, 0.0f);
  for (float v : d_item_grads.ToHost()) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(d_sq_error.ToHost()[0], 0.0);
}

TEST(MfCudaTest, RejectsInvalidArgumentsWithoutTouchingTheDevice) {
  MfBatch b;
  b.dim = 0;
  EXPECT_EQ(MfBatchGradientCuda(b, nullptr, nullptr, nullptr, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MfPredictCuda(b, nullptr, nullptr).code(), StatusCode::kInvalidArgument);
  b.dim = 4;
  b.num_samples = 3;  // null indices and rows
  b.num_users = 1;
  b.num_items = 1;
  EXPECT_EQ(MfBatchGradientCuda(b, nullptr, nullptr, nullptr, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MfPredictCuda(b, nullptr, nullptr).code(), StatusCode::kInvalidArgument);
}

#else  // !TESSERA_WITH_CUDA

TEST(MfCudaTest, MatchesCpuOnRandomBatches) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tessera::kernels
