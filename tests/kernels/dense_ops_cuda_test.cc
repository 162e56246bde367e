// CUDA twins of kernels/dense_ops.h and kernels/dense_optimizer.h, and the kCuda memory helpers of
// kernels/device_memory.h, against the CPU on the same random inputs (label gpu); skips when no
// CUDA device is usable. Sizes include 0, 1, non-multiples of the 256-thread blocks and (repeat)
// more elements than one pass of the capped grid.
// Tolerances, |gpu - cpu| <= tol * (1 + |cpu|):
//   exact          copies, repeats, copy-and-add (one add per element), the dense optimizer
//                  (dense_optimizer_cuda.cu is built without fused multiply-adds: same bits);
//   1e-5           first-order logits (nvcc fuses the multiply-adds);
//   column sums    |gpu - cpu| <= 1e-6 * (1 + sum of the column's |terms|): the GPU combines 16
//                  partial sums per column, the CPU adds in row order; with thousands of terms
//                  that cancel, the difference is relative to the terms, not to the sum.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dense.h"
#include "kernels/dense_ops.h"
#include "kernels/dense_optimizer.h"
#include "kernels/device.h"
#include "kernels/device_memory.h"
#include "kernels/device_resources.h"
#include "tests/kernels/ctr_kernels_test_util.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/test_util.h"

namespace tessera::kernels {
namespace {

#if TESSERA_WITH_CUDA

using ::tessera::testing::DeviceVector;
using ::tessera::testing::ExpectClose;
using test_util::Random;

// The context a worker gets: DeviceResources' stream and cuBLAS handle.
class DenseOpsCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TS_SKIP_WITHOUT_CUDA_DEVICE();
    DeviceOptions options;
    options.device = Device::kCuda;
    auto resources = DeviceResources::Create(options);
    ASSERT_TRUE(resources.ok()) << resources.status().ToString();
    resources_ = std::move(*resources);
    ctx_ = resources_->context();
    ASSERT_NE(ctx_.stream, nullptr);
    ASSERT_NE(ctx_.cublas, nullptr);
  }
  void Sync() { TS_ASSERT_OK(SyncDevice(ctx_)); }

  std::unique_ptr<DeviceResources> resources_;
  DeviceContext ctx_;
};

std::vector<float> Garbage(size_t size) { return std::vector<float>(size, 42.0f); }

TEST_F(DenseOpsCudaTest, ColumnSumsMatchCpu) {
  unsigned seed = 10;
  for (int64_t rows : {0, 1, 17, 257, 5000}) {
    for (int cols : {1, 13, 33, 100}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      std::mt19937 rng(++seed);
      const std::vector<float> m = Random(&rng, rows * cols), scale = Random(&rng, rows);
      std::vector<float> sum(cols), weighted(cols);
      TS_ASSERT_OK(ColumnSum(DeviceContext{}, m.data(), rows, cols, sum.data()));
      TS_ASSERT_OK(WeightedColumnSumCpu(scale.data(), m.data(), rows, cols, weighted.data()));
      DeviceVector<float> d_m(m), d_scale(scale), d_sum(Garbage(cols)), d_weighted(Garbage(cols));
      TS_ASSERT_OK(ColumnSum(ctx_, d_m.data(), rows, cols, d_sum.data()));
      TS_ASSERT_OK(
          WeightedColumnSum(ctx_, d_scale.data(), d_m.data(), rows, cols, d_weighted.data()));
      Sync();
      const std::vector<float> gpu_sum = d_sum.ToHost(), gpu_weighted = d_weighted.ToHost();
      for (int j = 0; j < cols; ++j) {
        double abs_sum = 0, abs_weighted = 0;
        for (int64_t i = 0; i < rows; ++i) {
          abs_sum += std::fabs(m[i * cols + j]);
          abs_weighted += std::fabs(scale[i] * m[i * cols + j]);
        }
        EXPECT_NEAR(gpu_sum[j], sum[j], 1e-6 * (1 + abs_sum)) << "sum column " << j;
        EXPECT_NEAR(gpu_weighted[j], weighted[j], 1e-6 * (1 + abs_weighted))
            << "weighted column " << j;
      }
    }
  }
}

TEST_F(DenseOpsCudaTest, CopyColumnsAndRepeatMatchCpuExactly) {
  std::mt19937 rng(20);
  for (int64_t rows : {0, 1, 255, 1001}) {
    for (int cols : {1, 7, 300}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
      const int src_cols = cols + 5, dst_cols = cols + 3;
      const std::vector<float> src = Random(&rng, rows * src_cols),
                               dst0 = Random(&rng, rows * dst_cols);
      for (bool accumulate : {false, true}) {
        std::vector<float> dst = dst0;
        TS_ASSERT_OK(CopyColumnsCpu(src.data(), src_cols, 4, dst.data(), dst_cols, 2, rows, cols,
                                    accumulate));
        DeviceVector<float> d_src(src), d_dst(dst0);
        TS_ASSERT_OK(CopyColumns(ctx_, d_src.data(), src_cols, 4, d_dst.data(), dst_cols, 2, rows,
                                 cols, accumulate));
        Sync();
        EXPECT_EQ(d_dst.ToHost(), dst) << "accumulate=" << accumulate;
      }
    }
  }
  // 65536 blocks x 256 threads is one pass of the capped grid; this takes two.
  const int64_t size = int64_t{65536} * 256 / 4 + 3;
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{257}, size}) {
    const std::vector<float> x = Random(&rng, n);
    std::vector<float> out(n * 4);
    TS_ASSERT_OK(RepeatElementsCpu(x.data(), n, 4, out.data()));
    DeviceVector<float> d_x(x), d_out(Garbage(out.size()));
    TS_ASSERT_OK(RepeatElements(ctx_, d_x.data(), n, 4, d_out.data()));
    Sync();
    EXPECT_TRUE(d_out.ToHost() == out) << "n=" << n;
  }
}

TEST_F(DenseOpsCudaTest, FirstOrderLogitsMatchCpu) {
  unsigned seed = 30;
  for (int64_t batch : {0, 1, 257, 20000}) {
    for (int terms : {0, 1, 26}) {
      for (int num_x : {0, 13}) {
        SCOPED_TRACE("batch=" + std::to_string(batch) + " terms=" + std::to_string(terms) +
                     " num_x=" + std::to_string(num_x));
        std::mt19937 rng(++seed);
        const std::vector<float> bias = Random(&rng, 1), t = Random(&rng, batch * terms),
                                 w = Random(&rng, num_x), x = Random(&rng, batch * num_x);
        std::vector<float> logits(batch);
        TS_ASSERT_OK(FirstOrderLogitsCpu(bias.data(), terms ? t.data() : nullptr, terms,
                                         num_x ? w.data() : nullptr, num_x ? x.data() : nullptr,
                                         num_x, logits.data(), batch));
        DeviceVector<float> d_bias(bias), d_t(t), d_w(w), d_x(x), d_logits(Garbage(batch));
        TS_ASSERT_OK(FirstOrderLogits(ctx_, d_bias.data(), terms ? d_t.data() : nullptr, terms,
                                      num_x ? d_w.data() : nullptr, num_x ? d_x.data() : nullptr,
                                      num_x, d_logits.data(), batch));
        Sync();
        ExpectClose(d_logits.ToHost(), logits, 1e-5f, "logits");
      }
    }
  }
}

TEST_F(DenseOpsCudaTest, DenseOptimizerGivesTheCpuBits) {
  unsigned seed = 40;
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam}) {
    for (int64_t count : {0, 1, 255, 257, 100003}) {
      SCOPED_TRACE(std::string(OptimizerName(kind)) + " count=" + std::to_string(count));
      std::mt19937 rng(++seed);
      OptimizerParams p;
      p.kind = kind;
      p.lr = 0.01f;
      p.initial_accumulator = 0.1f;
      DenseOptimizerState state;
      TS_ASSERT_OK(InitDenseOptimizerState(p, count, &state));
      std::vector<float> w = Random(&rng, count);
      DeviceVector<float> d_w(w), d_slots(state.slots);
      int64_t step = 0;
      for (int t = 0; t < 3; ++t) {
        const std::vector<float> g = Random(&rng, count);
        TS_ASSERT_OK(ApplyDenseUpdateCpu(p, w.data(), g.data(), count, &state));
        DeviceVector<float> d_g(g);
        TS_ASSERT_OK(
            ApplyDenseUpdate(ctx_, p, d_w.data(), d_g.data(), count, d_slots.data(), &step));
        Sync();
      }
      EXPECT_EQ(step, state.step);
      const std::vector<float> gpu_w = d_w.ToHost(), gpu_slots = d_slots.ToHost();
      EXPECT_EQ(0, std::memcmp(gpu_w.data(), w.data(), sizeof(float) * count));
      EXPECT_EQ(
          0, std::memcmp(gpu_slots.data(), state.slots.data(), sizeof(float) * state.slots.size()));
    }
  }
}

// DeviceResources' cuBLAS handle multiplies in full FP32 unless allow_tf32: 1 + 2^-15 survives
// a product in FP32 and not in TF32 (10 mantissa bits), where it may round to 1.
TEST_F(DenseOpsCudaTest, DefaultMathIsFullFp32AndTf32OnlyWhenAsked) {
  const float exact = 1.0f + 1.0f / 32768.0f;
  const std::vector<float> x(64, exact), w(64, 1.0f / 64.0f);
  for (bool allow_tf32 : {false, true}) {
    SCOPED_TRACE(allow_tf32 ? "tf32" : "fp32");
    DeviceOptions options;
    options.device = Device::kCuda;
    options.allow_tf32 = allow_tf32;
    auto resources = DeviceResources::Create(options);
    ASSERT_TRUE(resources.ok()) << resources.status().ToString();
    const DeviceContext& ctx = (*resources)->context();
    DeviceVector<float> d_x(x), d_w(w), d_y(Garbage(1));
    // y (1 x 1) = x (1 x 64) w (64 x 1) = mean of x.
    TS_ASSERT_OK(
        LinearForward(ctx, ctx.cublas, d_x.data(), d_w.data(), nullptr, d_y.data(), 1, 64, 1));
    TS_ASSERT_OK(SyncDevice(ctx));
    const float y = d_y.ToHost()[0];
    if (!allow_tf32) {
      EXPECT_EQ(y, exact);
    } else {
      EXPECT_NEAR(y, exact, exact / 1024.0f);
    }
  }
}

TEST_F(DenseOpsCudaTest, DeviceMemoryRoundTripsThroughPinnedBuffers) {
  DeviceBuffer a(Device::kCuda, "a"), b(Device::kCuda, "b");
  PinnedBuffer pinned(Device::kCuda, "pinned");
  const size_t n = 1000;
  TS_ASSERT_OK(pinned.Reserve(sizeof(float) * n));
  for (size_t i = 0; i < n; ++i) pinned.data<float>()[i] = static_cast<float>(i);
  auto d_a = a.Get<float>(n);
  auto d_b = b.Get<float>(n);
  ASSERT_TRUE(d_a.ok() && d_b.ok());
  TS_ASSERT_OK(CopyToDevice(ctx_, *d_a, pinned.data<float>(), sizeof(float) * n));
  TS_ASSERT_OK(CopyOnDevice(ctx_, *d_b, *d_a, sizeof(float) * n));
  TS_ASSERT_OK(FillZeros(ctx_, *d_b, sizeof(float) * 10));
  std::vector<float> back(n, -1.0f);
  TS_ASSERT_OK(CopyToHost(ctx_, back.data(), *d_b, sizeof(float) * n));
  Sync();
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], i < 10 ? 0.0f : static_cast<float>(i)) << i;
}

TEST_F(DenseOpsCudaTest, AnAllocationBeyondTheDeviceNamesTheBufferAndTheSize) {
  DeviceBuffer huge(Device::kCuda, "huge test buffer");
  const Status s = huge.Reserve(size_t{1} << 52);
  ASSERT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("huge test buffer"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(std::to_string(size_t{1} << 52)), std::string::npos) << s.message();
  EXPECT_EQ(huge.capacity(), 0u);
  TS_ASSERT_OK(huge.Reserve(16));  // the device is still usable
}

#endif  // TESSERA_WITH_CUDA

}  // namespace
}  // namespace tessera::kernels
