// ApplySparseUpdateCuda against ApplySparseUpdateCpu on the same random rows (label gpu).
// Skips when no CUDA device is usable. Tolerance: 1e-5 relative (nvcc may fuse multiply-adds
// such as acc += g * g into an FMA, and device powf may differ from the host's by an ulp;
// otherwise the formulas and IEEE sqrt/division are the same).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/sparse_optimizer.h"
#include "tests/testing/cuda_test_util.h"

#if TESSERA_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace tessera::kernels {
namespace {

#if TESSERA_WITH_CUDA

using ::tessera::testing::DeviceVector;

// Runs one update on CPU and CUDA over the same table and compares the whole table. Rows are
// a random subset of the table in random order (distinct, as the CUDA kernel requires).
// With same_bits, every float must have the CPU's bits (the emulated device, whose kernels are
// the same sources compiled as C++ without fused multiply-adds).
void CompareCpuAndCuda(const OptimizerParams& p, int64_t num_rows, int dim, unsigned seed,
                       cudaStream_t stream, bool same_bits = false) {
  SCOPED_TRACE("seed=" + std::to_string(seed) + " optimizer=" + OptimizerName(p.kind) +
               " num_rows=" + std::to_string(num_rows) + " dim=" + std::to_string(dim));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int64_t row_floats = dim + OptimizerStateFloats(p.kind, dim);
  const int64_t table_rows = num_rows + 3;  // some rows stay untouched
  std::vector<float> table(table_rows * row_floats);
  for (float& v : table) v = uniform(rng);
  for (int64_t r = 0; r < table_rows; ++r) {
    float* state = &table[r * row_floats + dim];
    InitOptimizerState(p, state, dim);
    for (int j = 0; j < OptimizerStateFloats(p.kind, dim); ++j) state[j] += std::fabs(uniform(rng));
  }
  std::vector<int64_t> order(table_rows);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(num_rows);
  std::vector<float> grads(num_rows * dim);
  for (float& v : grads) v = uniform(rng);

  DeviceVector<float> d_table(table);
  DeviceVector<float> d_grads(grads);
  std::vector<float*> h_rows, d_row_ptrs;
  std::vector<float> cpu_table = table;
  for (int64_t r : order) {
    h_rows.push_back(&cpu_table[r * row_floats]);
    d_row_ptrs.push_back(d_table.data() + r * row_floats);
  }
  DeviceVector<float*> d_rows(d_row_ptrs);

  ASSERT_TRUE(ApplySparseUpdateCpu(p, h_rows.data(), grads.data(), num_rows, dim).ok());
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  ctx.stream = stream;
  Status s = ApplySparseUpdate(ctx, p, d_rows.data(), d_grads.data(), num_rows, dim);
  ASSERT_TRUE(s.ok()) << s.ToString();
  TS_ASSERT_CUDA_OK(cudaStreamSynchronize(stream));
  const std::vector<float> gpu_table = d_table.ToHost();
  ASSERT_EQ(gpu_table.size(), cpu_table.size());
  for (size_t k = 0; k < cpu_table.size(); ++k) {
    if (same_bits) {
      ASSERT_EQ(std::memcmp(&gpu_table[k], &cpu_table[k], sizeof(float)), 0)
          << "element " << k << ": " << gpu_table[k] << " against the CPU's " << cpu_table[k];
    }
    ASSERT_NEAR(gpu_table[k], cpu_table[k], 1e-5f * (1.0f + std::fabs(cpu_table[k])))
        << "element " << k;
  }
}

TEST(SparseOptimizerCudaTest, MatchesCpuOnRandomRows) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  cudaStream_t stream = nullptr;
  TS_ASSERT_CUDA_OK(cudaStreamCreate(&stream));
  // Sizes 0, 1, around the 256-thread block, and large enough for several blocks.
  const int64_t row_counts[] = {0, 1, 7, 255, 256, 257, 1000, 5003};
  const int dims[] = {1, 8, 31, 32, 33, 128};
  unsigned seed = 2024;
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam,
                             OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    OptimizerParams p;
    p.kind = kind;
    p.lr = 0.05f;
    p.initial_accumulator = 0.1f;
    p.l1 = 0.1f;  // ftrl: some weights land exactly on 0
    p.l2 = 0.01f;
    for (int64_t num_rows : row_counts) {
      for (int dim : dims) CompareCpuAndCuda(p, num_rows, dim, ++seed, stream);
    }
  }
  TS_ASSERT_CUDA_OK(cudaStreamDestroy(stream));
}

// Row-wise Adagrad's kernel gives each of a row's kRowwiseLanes threads one lane of the mean
// square and adds the lanes in the CPU's order: on the emulated device (no fused multiply-adds)
// its rows are the CPU's to the bit, for rows shorter than, equal to and longer than the lanes,
// and for more rows than one grid pass of groups covers.
TEST(SparseOptimizerCudaTest, RowwiseAdagradAddsTheLanesInTheCpuOrder) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
#if !TESSERA_CUDA_EMULATION
  GTEST_SKIP() << "a GPU fuses multiply-adds: MatchesCpuOnRandomRows compares to rounding";
#endif
  OptimizerParams p;
  p.kind = OptimizerKind::kRowwiseAdagrad;
  p.lr = 0.05f;
  p.initial_accumulator = 0.1f;
  unsigned seed = 77;
  for (int64_t num_rows : {1, 16, 17, 2000}) {
    for (int dim : {1, 15, 16, 17, 33, 128, 200}) {
      CompareCpuAndCuda(p, num_rows, dim, ++seed, nullptr, /*same_bits=*/true);
    }
  }
}

TEST(SparseOptimizerCudaTest, RandomSizesMatchCpuOnDefaultStream) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  const unsigned seed = 77;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> rows(0, 3000);
  std::uniform_int_distribution<int> dims(1, 200);
  for (OptimizerKind kind : {OptimizerKind::kAdagrad, OptimizerKind::kAdam, OptimizerKind::kFtrl,
                             OptimizerKind::kRowwiseAdagrad}) {
    OptimizerParams p;  // defaults of each kind
    p.kind = kind;
    for (int trial = 0; trial < 10; ++trial) {
      CompareCpuAndCuda(p, rows(rng), dims(rng), seed + trial, nullptr);
    }
  }
}

// Lazy Adam on the device: three updates of the same rows advance each row's step to 3 exactly
// (the step kernel runs after the element kernel on the same stream) and match the CPU.
TEST(SparseOptimizerCudaTest, AdamStepAdvancesOncePerUpdate) {
  TS_SKIP_WITHOUT_CUDA_DEVICE();
  OptimizerParams p;
  p.kind = OptimizerKind::kAdam;
  p.lr = 0.01f;
  const int dim = 33;
  const int64_t num_rows = 300;
  const int64_t row_floats = dim + OptimizerStateFloats(p.kind, dim);
  std::vector<float> table(num_rows * row_floats, 0.0f);
  for (int64_t r = 0; r < num_rows; ++r) table[r * row_floats] = 0.5f;
  std::vector<float> grads(num_rows * dim);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (float& g : grads) g = uniform(rng);
  DeviceVector<float> d_table(table);
  DeviceVector<float> d_grads(grads);
  std::vector<float*> h_rows, d_row_ptrs;
  for (int64_t r = 0; r < num_rows; ++r) {
    h_rows.push_back(&table[r * row_floats]);
    d_row_ptrs.push_back(d_table.data() + r * row_floats);
  }
  DeviceVector<float*> d_rows(d_row_ptrs);
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE(ApplySparseUpdateCpu(p, h_rows.data(), grads.data(), num_rows, dim).ok());
    ASSERT_TRUE(ApplySparseUpdate(ctx, p, d_rows.data(), d_grads.data(), num_rows, dim).ok());
  }
  TS_ASSERT_CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> gpu_table = d_table.ToHost();
  for (int64_t r = 0; r < num_rows; ++r) {
    ASSERT_EQ(gpu_table[r * row_floats + 3 * dim], 3.0f) << "row " << r;
  }
  for (size_t k = 0; k < table.size(); ++k) {
    ASSERT_NEAR(gpu_table[k], table[k], 1e-5f * (1.0f + std::fabs(table[k]))) << "element " << k;
  }
}

TEST(SparseOptimizerCudaTest, RejectsInvalidArgumentsWithoutTouchingTheDevice) {
  const OptimizerParams p;
  EXPECT_EQ(ApplySparseUpdateCuda(p, nullptr, nullptr, -1, 4, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCuda(p, nullptr, nullptr, 3, 4, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplySparseUpdateCuda(p, nullptr, nullptr, 0, 0, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(ApplySparseUpdateCuda(p, nullptr, nullptr, 0, 4, nullptr).ok());
}

#else  // !TESSERA_WITH_CUDA

TEST(SparseOptimizerCudaTest, MatchesCpuOnRandomRows) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tessera::kernels
