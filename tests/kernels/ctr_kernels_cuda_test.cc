// CUDA twins of the CTR layer kernels (dense.h, fm.h, cross.h, embedding.h) against the CPU
// kernels on the same random inputs (label gpu); skips when no CUDA device is usable. Sizes
// include 0, 1 and non-multiples of the 256-thread blocks and 32-lane warps.
// Tolerances, |gpu - cpu| <= tol * (1 + |cpu|):
//   exact (tol 0)  ReLU, gather: copies and comparisons only;
//   1e-6           sigmoid / BCE gradient (CUDA expf is within 2 ulp of glibc's);
//   1e-5           pool (nvcc fuses multiply-adds), loss sum (relative; per-block double
//                  partial sums);
//   1e-4           FM (different summation order over dim), scatter-add backwards (atomicAdd
//                  order over ~1500 additions per float in the heavily shared test);
//   5e-4           SGEMM outputs (cuBLAS vs OpenBLAS blocking, sums of up to ~1000 products).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cross.h"
#include "kernels/dense.h"
#include "kernels/device.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "tests/kernels/ctr_kernels_test_util.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/test_util.h"

#if TESSERA_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

namespace tessera::kernels {
namespace {

#if TESSERA_WITH_CUDA

using ::tessera::testing::DeviceVector;
using ::tessera::testing::ExpectClose;
using test_util::Random;
using test_util::RandomIndices;

// One stream and one cuBLAS handle per test; the kernels bind the handle to the stream.
class CtrCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TS_SKIP_WITHOUT_CUDA_DEVICE();
    TS_ASSERT_CUDA_OK(cudaStreamCreate(&stream_));
    ASSERT_EQ(cublasCreate(&cublas_), CUBLAS_STATUS_SUCCESS);
    ctx_.device = Device::kCuda;
    ctx_.stream = stream_;
  }
  void TearDown() override {
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  void Sync() { ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess); }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  DeviceContext ctx_;
};

// Initial contents of device outputs: the kernels must overwrite them.
std::vector<float> Garbage(size_t size) { return std::vector<float>(size, 42.0f); }

constexpr float kGemmTol = 5e-4f;

TEST_F(CtrCudaTest, LinearMatchesCpu) {
  unsigned seed = 100;
  for (int64_t batch : {0, 1, 7, 257, 1000}) {
    for (int in : {1, 33, 130}) {
      for (int out : {1, 64, 77}) {
        const bool bias = (batch + in + out) % 2 == 0;  // both cases across the sweep
        SCOPED_TRACE("seed=" + std::to_string(++seed) + " batch=" + std::to_string(batch) +
                     " in=" + std::to_string(in) + " out=" + std::to_string(out));
        std::mt19937 rng(seed);
        const std::vector<float> x = Random(&rng, batch * in), w = Random(&rng, in * out),
                                 b = Random(&rng, out), dy = Random(&rng, batch * out);
        std::vector<float> y(batch * out), dx(batch * in), dw(in * out), db(out);
        const float* b_ptr = bias ? b.data() : nullptr;
        TS_ASSERT_OK(LinearForwardCpu(x.data(), w.data(), b_ptr, y.data(), batch, in, out));
        TS_ASSERT_OK(LinearBackwardCpu(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                                       bias ? db.data() : nullptr, batch, in, out));
        DeviceVector<float> d_x(x), d_w(w), d_b(b), d_dy(dy);
        DeviceVector<float> d_y(Garbage(y.size())), d_dx(Garbage(dx.size())),
            d_dw(Garbage(dw.size())), d_db(Garbage(db.size()));
        TS_ASSERT_OK(LinearForward(ctx_, cublas_, d_x.data(), d_w.data(),
                                   bias ? d_b.data() : nullptr, d_y.data(), batch, in, out));
        TS_ASSERT_OK(LinearBackward(ctx_, cublas_, d_x.data(), d_w.data(), d_dy.data(), d_dx.data(),
                                    d_dw.data(), bias ? d_db.data() : nullptr, batch, in, out));
        Sync();
        if (batch > 0) ExpectClose(d_y.ToHost(), y, kGemmTol, "y");
        if (batch > 0) ExpectClose(d_dx.ToHost(), dx, kGemmTol, "dx");
        ExpectClose(d_dw.ToHost(), dw, kGemmTol, "dw");
        if (bias) ExpectClose(d_db.ToHost(), db, kGemmTol, "db");
      }
    }
  }
}

TEST_F(CtrCudaTest, ReluAndSigmoidBceMatchCpu) {
  std::mt19937 rng(200);
  for (int64_t size : {0, 1, 255, 256, 257, 10001}) {
    SCOPED_TRACE("size=" + std::to_string(size));
    std::vector<float> x = Random(&rng, size, -30.0f, 30.0f);
    if (size > 3) {
      x[0] = 0.0f;
      x[1] = 1e4f;
      x[2] = -1e4f;
    }
    std::vector<float> labels = Random(&rng, size, 0.0f, 1.0f);
    for (int64_t i = 0; i < size; i += 2) labels[i] = labels[i] < 0.5f ? 0.0f : 1.0f;
    const std::vector<float> dy = Random(&rng, size);
    std::vector<float> y(size), dx(size), probs(size), dlogits(size);
    double loss = 0.0;
    TS_ASSERT_OK(ReluForwardCpu(x.data(), y.data(), size));
    TS_ASSERT_OK(ReluBackwardCpu(y.data(), dy.data(), dx.data(), size));
    TS_ASSERT_OK(SigmoidBceForwardCpu(x.data(), labels.data(), probs.data(), &loss, size));
    const float scale = size > 0 ? 1.0f / size : 1.0f;
    TS_ASSERT_OK(SigmoidBceBackwardCpu(x.data(), labels.data(), dlogits.data(), size, scale));

    DeviceVector<float> d_x(x), d_labels(labels), d_dy(dy);
    DeviceVector<float> d_y(Garbage(size)), d_dx(Garbage(size)), d_probs(Garbage(size)),
        d_dlogits(Garbage(size));
    DeviceVector<double> d_loss(std::vector<double>{42.0});
    TS_ASSERT_OK(ReluForward(ctx_, d_x.data(), d_y.data(), size));
    TS_ASSERT_OK(ReluBackward(ctx_, d_y.data(), d_dy.data(), d_dx.data(), size));
    TS_ASSERT_OK(
        SigmoidBceForward(ctx_, d_x.data(), d_labels.data(), d_probs.data(), d_loss.data(), size));
    TS_ASSERT_OK(
        SigmoidBceBackward(ctx_, d_x.data(), d_labels.data(), d_dlogits.data(), size, scale));
    Sync();
    EXPECT_EQ(d_y.ToHost(), y);
    EXPECT_EQ(d_dx.ToHost(), dx);
    ExpectClose(d_probs.ToHost(), probs, 1e-6f, "probs");
    ExpectClose(d_dlogits.ToHost(), dlogits, 1e-6f, "dlogits");
    const double gpu_loss = d_loss.ToHost()[0];
    EXPECT_TRUE(std::isfinite(gpu_loss));
    EXPECT_NEAR(gpu_loss, loss, 1e-5 * (1.0 + loss));
  }
}

TEST_F(CtrCudaTest, FmMatchesCpu) {
  unsigned seed = 300;
  for (int64_t batch : {0, 1, 9, 1001}) {
    for (int fields : {1, 5, 39}) {
      for (int dim : {1, 16, 33, 130}) {
        SCOPED_TRACE("seed=" + std::to_string(++seed) + " batch=" + std::to_string(batch) +
                     " fields=" + std::to_string(fields) + " dim=" + std::to_string(dim));
        std::mt19937 rng(seed);
        const std::vector<float> v = Random(&rng, batch * fields * dim), dy = Random(&rng, batch);
        std::vector<float> y(batch), dv(v.size());
        TS_ASSERT_OK(FmForwardCpu(v.data(), y.data(), batch, fields, dim));
        TS_ASSERT_OK(FmBackwardCpu(v.data(), dy.data(), dv.data(), batch, fields, dim));
        DeviceVector<float> d_v(v), d_dy(dy), d_y(Garbage(y.size())), d_dv(Garbage(dv.size()));
        TS_ASSERT_OK(FmForward(ctx_, d_v.data(), d_y.data(), batch, fields, dim));
        TS_ASSERT_OK(FmBackward(ctx_, d_v.data(), d_dy.data(), d_dv.data(), batch, fields, dim));
        Sync();
        ExpectClose(d_y.ToHost(), y, 1e-4f, "y");
        ExpectClose(d_dv.ToHost(), dv, 1e-4f, "dv");
      }
    }
  }
}

TEST_F(CtrCudaTest, CrossMatchesCpu) {
  unsigned seed = 400;
  for (int64_t batch : {0, 1, 300, 1000}) {
    for (int dim : {1, 13, 64, 257}) {
      SCOPED_TRACE("seed=" + std::to_string(++seed) + " batch=" + std::to_string(batch) +
                   " dim=" + std::to_string(dim));
      std::mt19937 rng(seed);
      const int64_t n = batch * dim;
      const std::vector<float> x0 = Random(&rng, n), xl = Random(&rng, n),
                               w = Random(&rng, static_cast<size_t>(dim) * dim, -0.1f, 0.1f),
                               b = Random(&rng, dim), dy = Random(&rng, n),
                               dx0_start = Random(&rng, n);
      std::vector<float> z(n), y(n), dx0 = dx0_start, dxl(n), dw(dim * dim), db(dim), ws(n);
      TS_ASSERT_OK(CrossForwardCpu(x0.data(), xl.data(), w.data(), b.data(), z.data(), y.data(),
                                   batch, dim));
      TS_ASSERT_OK(CrossBackwardCpu(x0.data(), xl.data(), w.data(), z.data(), dy.data(), dx0.data(),
                                    dxl.data(), dw.data(), db.data(), ws.data(), batch, dim));
      DeviceVector<float> d_x0(x0), d_xl(xl), d_w(w), d_b(b), d_dy(dy), d_dx0(dx0_start);
      DeviceVector<float> d_z(Garbage(n)), d_y(Garbage(n)), d_y2(Garbage(n)), d_dxl(Garbage(n)),
          d_dw(Garbage(dw.size())), d_db(Garbage(dim)), d_ws(Garbage(n));
      TS_ASSERT_OK(CrossForward(ctx_, cublas_, d_x0.data(), d_xl.data(), d_w.data(), d_b.data(),
                                d_z.data(), d_y.data(), batch, dim));
      TS_ASSERT_OK(CrossForward(ctx_, cublas_, d_x0.data(), d_xl.data(), d_w.data(), d_b.data(),
                                nullptr, d_y2.data(), batch, dim));
      TS_ASSERT_OK(CrossBackward(ctx_, cublas_, d_x0.data(), d_xl.data(), d_w.data(), d_z.data(),
                                 d_dy.data(), d_dx0.data(), d_dxl.data(), d_dw.data(), d_db.data(),
                                 d_ws.data(), batch, dim));
      Sync();
      ExpectClose(d_z.ToHost(), z, kGemmTol, "z");
      ExpectClose(d_y.ToHost(), y, kGemmTol, "y");
      ExpectClose(d_y2.ToHost(), y, kGemmTol, "y without z");
      ExpectClose(d_dx0.ToHost(), dx0, kGemmTol, "dx0");
      ExpectClose(d_dxl.ToHost(), dxl, kGemmTol, "dxl");
      ExpectClose(d_dw.ToHost(), dw, kGemmTol, "dw");
      ExpectClose(d_db.ToHost(), db, kGemmTol, "db");
    }
  }
}

TEST_F(CtrCudaTest, GatherAndPoolMatchCpu) {
  unsigned seed = 500;
  for (int64_t batch : {0, 1, 77, 3000}) {
    for (int dim : {1, 8, 33}) {
      SCOPED_TRACE("seed=" + std::to_string(++seed) + " batch=" + std::to_string(batch) +
                   " dim=" + std::to_string(dim));
      std::mt19937 rng(seed);
      const int fields = 3;
      const int32_t num_rows = 17;  // few rows: heavy sharing, many atomics on one float
      const std::vector<float> rows = Random(&rng, num_rows * dim);
      const std::vector<int32_t> indices = RandomIndices(&rng, batch * fields, num_rows);
      const std::vector<float> grad_out = Random(&rng, batch * fields * dim);
      // Multi-hot: bag k = b * fields + f holds k % 5 keys (empty bags included).
      std::vector<int64_t> offsets = {0};
      for (int64_t k = 0; k < batch * fields; ++k) offsets.push_back(offsets.back() + k % 5);
      const std::vector<int32_t> keys = RandomIndices(&rng, offsets.back(), num_rows);
      const std::vector<float> weights = Random(&rng, offsets.back());
      const int64_t num_bags = batch * fields;

      std::vector<float> out(grad_out.size()), pooled(grad_out.size());
      std::vector<float> grad_rows(rows.size(), 0.0f);
      TS_ASSERT_OK(EmbeddingGatherCpu(rows.data(), num_rows, indices.data(), out.data(), batch,
                                      fields, dim));
      TS_ASSERT_OK(EmbeddingGatherBackwardCpu(indices.data(), grad_out.data(), grad_rows.data(),
                                              num_rows, batch, fields, dim));
      TS_ASSERT_OK(EmbeddingPoolCpu(rows.data(), num_rows, offsets.data(), keys.data(),
                                    weights.data(), pooled.data(), num_bags, dim));
      TS_ASSERT_OK(EmbeddingPoolBackwardCpu(offsets.data(), keys.data(), weights.data(),
                                            grad_out.data(), grad_rows.data(), num_rows, num_bags,
                                            dim));

      DeviceVector<float> d_rows(rows), d_grad_out(grad_out), d_weights(weights);
      DeviceVector<int32_t> d_indices(indices), d_keys(keys);
      DeviceVector<int64_t> d_offsets(offsets);
      DeviceVector<float> d_out(Garbage(out.size())), d_pooled(Garbage(pooled.size()));
      DeviceVector<float> d_grad_rows(std::vector<float>(rows.size(), 0.0f));
      TS_ASSERT_OK(EmbeddingGather(ctx_, d_rows.data(), num_rows, d_indices.data(), d_out.data(),
                                   batch, fields, dim));
      TS_ASSERT_OK(EmbeddingGatherBackward(ctx_, d_indices.data(), d_grad_out.data(),
                                           d_grad_rows.data(), num_rows, batch, fields, dim));
      TS_ASSERT_OK(EmbeddingPool(ctx_, d_rows.data(), num_rows, d_offsets.data(), d_keys.data(),
                                 d_weights.data(), d_pooled.data(), num_bags, dim));
      TS_ASSERT_OK(EmbeddingPoolBackward(ctx_, d_offsets.data(), d_keys.data(), d_weights.data(),
                                         d_grad_out.data(), d_grad_rows.data(), num_rows, num_bags,
                                         dim));
      Sync();
      EXPECT_EQ(d_out.ToHost(), out);
      ExpectClose(d_pooled.ToHost(), pooled, 1e-5f, "pooled");
      ExpectClose(d_grad_rows.ToHost(), grad_rows, 1e-4f, "grad_rows");
    }
  }
}

// The fused layouts of the CTR step (embeddings pooled into the MLP input x0, FM read from it and
// added into the logits and x0's gradient) against the CPU's, which tests/kernels/
// fused_layout_test.cc holds to the unfused passes.
TEST_F(CtrCudaTest, FusedLayoutsMatchCpu) {
  unsigned seed = 600;
  for (int64_t batch : {0, 1, 77, 2000}) {
    for (int dim : {1, 16, 33}) {
      SCOPED_TRACE("seed=" + std::to_string(++seed) + " batch=" + std::to_string(batch) +
                   " dim=" + std::to_string(dim));
      std::mt19937 rng(seed);
      const int fields = 3, extra = 5, x0_cols = fields * dim + extra;
      const int32_t num_rows = 17;
      const BagLayout layout{fields, x0_cols};
      const std::vector<float> rows = Random(&rng, num_rows * dim);
      std::vector<int64_t> offsets = {0};
      for (int64_t k = 0; k < batch * fields; ++k) offsets.push_back(offsets.back() + k % 5);
      const std::vector<int32_t> keys = RandomIndices(&rng, offsets.back(), num_rows);
      const std::vector<float> weights = Random(&rng, offsets.back());
      const std::vector<float> x0_start = Random(&rng, batch * x0_cols);
      const std::vector<float> dx0 = Random(&rng, batch * x0_cols);
      const std::vector<float> logits_start = Random(&rng, batch), dy = Random(&rng, batch);
      const int64_t num_bags = batch * fields;

      std::vector<float> x0 = x0_start, logits = logits_start, dx0_fm = dx0;
      std::vector<float> grad_rows(rows.size(), 0.0f);
      TS_ASSERT_OK(EmbeddingPoolCpu(rows.data(), num_rows, offsets.data(), keys.data(),
                                    weights.data(), x0.data(), num_bags, dim, layout));
      TS_ASSERT_OK(FmForwardCpu(x0.data(), logits.data(), batch, fields, dim, x0_cols, true));
      TS_ASSERT_OK(FmBackwardCpu(x0.data(), dy.data(), dx0_fm.data(), batch, fields, dim, x0_cols,
                                 x0_cols, true));
      TS_ASSERT_OK(EmbeddingPoolBackwardCpu(offsets.data(), keys.data(), weights.data(),
                                            dx0_fm.data(), grad_rows.data(), num_rows, num_bags,
                                            dim, layout));

      DeviceVector<float> d_rows(rows), d_weights(weights), d_x0(x0_start), d_dy(dy);
      DeviceVector<float> d_logits(logits_start), d_dx0(dx0);
      DeviceVector<int32_t> d_keys(keys);
      DeviceVector<int64_t> d_offsets(offsets);
      DeviceVector<float> d_grad_rows(std::vector<float>(rows.size(), 0.0f));
      TS_ASSERT_OK(EmbeddingPool(ctx_, d_rows.data(), num_rows, d_offsets.data(), d_keys.data(),
                                 d_weights.data(), d_x0.data(), num_bags, dim, layout));
      TS_ASSERT_OK(
          FmForward(ctx_, d_x0.data(), d_logits.data(), batch, fields, dim, x0_cols, true));
      TS_ASSERT_OK(FmBackward(ctx_, d_x0.data(), d_dy.data(), d_dx0.data(), batch, fields, dim,
                              x0_cols, x0_cols, true));
      TS_ASSERT_OK(EmbeddingPoolBackward(ctx_, d_offsets.data(), d_keys.data(), d_weights.data(),
                                         d_dx0.data(), d_grad_rows.data(), num_rows, num_bags, dim,
                                         nullptr, layout));
      Sync();
      ExpectClose(d_x0.ToHost(), x0, 1e-5f, "x0 (the dense columns untouched)");
      ExpectClose(d_logits.ToHost(), logits, 1e-4f, "logits + FM");
      ExpectClose(d_dx0.ToHost(), dx0_fm, 1e-4f, "dx0 + FM gradient");
      ExpectClose(d_grad_rows.ToHost(), grad_rows, 1e-4f, "grad_rows");
    }
  }
}

TEST_F(CtrCudaTest, OutOfRangeIndicesAreNeverRead) {
  const std::vector<float> rows = {1, 2, 3, 4};  // 2 rows of dim 2
  const std::vector<int32_t> indices = {1, 2, -1, 0};
  const std::vector<int64_t> offsets = {0, 1, 3, 4};  // bags {1}, {2, -1}, {0}
  DeviceVector<float> d_rows(rows), d_out(std::vector<float>(8)), d_pooled(std::vector<float>(6));
  DeviceVector<float> d_grad_out(std::vector<float>(8, 1.0f));
  DeviceVector<float> d_grad_rows(std::vector<float>(4, 0.0f));
  DeviceVector<int32_t> d_indices(indices);
  DeviceVector<int64_t> d_offsets(offsets);
  TS_ASSERT_OK(EmbeddingGather(ctx_, d_rows.data(), 2, d_indices.data(), d_out.data(), 4, 1, 2));
  TS_ASSERT_OK(EmbeddingGatherBackward(ctx_, d_indices.data(), d_grad_out.data(),
                                       d_grad_rows.data(), 2, 4, 1, 2));
  TS_ASSERT_OK(EmbeddingPool(ctx_, d_rows.data(), 2, d_offsets.data(), d_indices.data(), nullptr,
                             d_pooled.data(), 3, 2));
  Sync();
  const std::vector<float> out = d_out.ToHost();
  EXPECT_EQ(out[0], 3.0f);
  EXPECT_TRUE(std::isnan(out[2]) && std::isnan(out[5]));
  EXPECT_EQ(out[6], 1.0f);
  EXPECT_EQ(d_grad_rows.ToHost(), (std::vector<float>{1, 1, 1, 1}));  // rows 1 and 0 once each
  const std::vector<float> pooled = d_pooled.ToHost();
  EXPECT_EQ(pooled[0], 3.0f);
  EXPECT_TRUE(std::isnan(pooled[2]) && std::isnan(pooled[3]));
  EXPECT_EQ(pooled[4], 1.0f);
}

// Argument checks run on the host before anything touches the device: no GPU needed.
TEST(CtrCudaArgsTest, RejectsInvalidArgumentsWithoutTouchingTheDevice) {
  const float* none = nullptr;
  float* out = nullptr;
  cublasHandle_t no_handle = nullptr;
  EXPECT_EQ(LinearForwardCuda(no_handle, none, none, none, out, 1, 1, 1, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      LinearBackwardCuda(no_handle, none, none, none, out, out, out, -1, 1, 1, nullptr).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(ReluForwardCuda(none, out, 3, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SigmoidBceForwardCuda(none, none, out, nullptr, 2, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(FmForwardCuda(none, out, 1, 0, 4, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CrossForwardCuda(no_handle, none, none, none, none, out, out, 1, 4, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingGatherCuda(none, 3, nullptr, out, 2, 1, 4, nullptr).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingPoolCuda(none, 0, nullptr, nullptr, none, out, 2, 4, nullptr).code(),
            StatusCode::kInvalidArgument);
  // A valid batch with a null cuBLAS handle is rejected too.
  const std::vector<float> buf(4, 1.0f);
  std::vector<float> y(4);
  EXPECT_EQ(
      LinearForwardCuda(no_handle, buf.data(), buf.data(), nullptr, y.data(), 2, 2, 2, nullptr)
          .code(),
      StatusCode::kInvalidArgument);
}

#else  // !TESSERA_WITH_CUDA

TEST(CtrCudaTest, MatchesCpu) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tessera::kernels
