// CPU kernels of the dense CTR layers (kernels/dense.h: linear, ReLU, fused sigmoid + BCE),
// checked three independent ways: values worked by hand, plain double-precision reference loops
// written from the formulas (no shared code), and, for every backward, central finite
// differences of a scalar loss accumulated in double, L = sum_k r_k * y_k for fixed random r (so
// dy = r). The layers are linear or quadratic in any single input, where central differences are
// exact up to float rounding of the forward; the tolerances below cover that rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/dense.h"
#include "kernels/dense_ops.h"
#include "kernels/device.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "tests/kernels/ctr_kernels_test_util.h"

namespace tessera::kernels {
namespace {

using test_util::Dot;
using test_util::ExpectMatchesFiniteDifferences;
using test_util::ExpectNear;
using test_util::kNan;
using test_util::Random;
using test_util::RandomIndices;

// ---------------------------------------------------------------- Linear

TEST(CtrLinearTest, MatchesHandComputedValues) {
  // x = [1 2; 3 4], w = [1 0 -1; 2 1 0], b = [0.5 -0.5 1]:
  // x w = [5 2 -1; 11 4 -3], y = x w + b.
  const std::vector<float> x = {1, 2, 3, 4};
  const std::vector<float> w = {1, 0, -1, 2, 1, 0};
  const std::vector<float> b = {0.5f, -0.5f, 1.0f};
  std::vector<float> y(6, kNan);
  ASSERT_TRUE(LinearForwardCpu(x.data(), w.data(), b.data(), y.data(), 2, 2, 3).ok());
  EXPECT_EQ(y, (std::vector<float>{5.5f, 1.5f, 0.0f, 11.5f, 3.5f, -2.0f}));
  ASSERT_TRUE(LinearForwardCpu(x.data(), w.data(), nullptr, y.data(), 2, 2, 3).ok());
  EXPECT_EQ(y, (std::vector<float>{5, 2, -1, 11, 4, -3}));

  // dy = [1 0 1; 0 1 0]: dx = dy w^T = [0 2; 0 1], dw = x^T dy = [1 3 1; 2 4 2], db = [1 1 1].
  // Outputs start as NaN: they must be overwritten, not scaled.
  const std::vector<float> dy = {1, 0, 1, 0, 1, 0};
  std::vector<float> dx(4, kNan), dw(6, kNan), db(3, kNan);
  ASSERT_TRUE(
      LinearBackwardCpu(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), 2, 2, 3)
          .ok());
  EXPECT_EQ(dx, (std::vector<float>{0, 2, 0, 1}));
  EXPECT_EQ(dw, (std::vector<float>{1, 3, 1, 2, 4, 2}));
  EXPECT_EQ(db, (std::vector<float>{1, 1, 1}));
}

TEST(CtrLinearTest, MatchesDoubleReferenceOnRandomInputs) {
  std::mt19937 rng(11);
  const int64_t batch = 37;
  const int in = 19, out = 23;  // odd sizes: no SGEMM kernel-size multiples
  const std::vector<float> x = Random(&rng, batch * in), w = Random(&rng, in * out),
                           b = Random(&rng, out), dy = Random(&rng, batch * out);
  std::vector<float> y(batch * out), dx(batch * in), dw(in * out), db(out);
  ASSERT_TRUE(LinearForwardCpu(x.data(), w.data(), b.data(), y.data(), batch, in, out).ok());
  ASSERT_TRUE(LinearBackwardCpu(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                                batch, in, out)
                  .ok());
  std::vector<double> ref_y(batch * out), ref_dx(batch * in, 0.0), ref_dw(in * out, 0.0),
      ref_db(out, 0.0);
  for (int64_t r = 0; r < batch; ++r) {
    for (int o = 0; o < out; ++o) {
      double sum = b[o];
      for (int i = 0; i < in; ++i) sum += static_cast<double>(x[r * in + i]) * w[i * out + o];
      ref_y[r * out + o] = sum;
      const double g = dy[r * out + o];
      ref_db[o] += g;
      for (int i = 0; i < in; ++i) {
        ref_dx[r * in + i] += g * w[i * out + o];
        ref_dw[i * out + o] += g * x[r * in + i];
      }
    }
  }
  ExpectNear(y, ref_y, 1e-5, "y");
  ExpectNear(dx, ref_dx, 1e-5, "dx");
  ExpectNear(dw, ref_dw, 1e-5, "dw");
  ExpectNear(db, ref_db, 1e-5, "db");
}

TEST(CtrLinearTest, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(12);
  const int64_t batch = 4;
  const int in = 5, out = 3;
  std::vector<float> x = Random(&rng, batch * in), w = Random(&rng, in * out),
                     b = Random(&rng, out);
  const std::vector<float> r = Random(&rng, batch * out);
  std::vector<float> y(batch * out);
  const auto loss = [&]() {
    EXPECT_TRUE(LinearForwardCpu(x.data(), w.data(), b.data(), y.data(), batch, in, out).ok());
    return Dot(r, y);
  };
  std::vector<float> dx(batch * in), dw(in * out), db(out);
  ASSERT_TRUE(LinearBackwardCpu(x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data(),
                                batch, in, out)
                  .ok());
  ExpectMatchesFiniteDifferences(loss, &x, dx, "dx");
  ExpectMatchesFiniteDifferences(loss, &w, dw, "dw");
  ExpectMatchesFiniteDifferences(loss, &b, db, "db");
}

TEST(CtrLinearTest, SizesZeroAndOne) {
  // Empty batch: nothing to read, gradients of the parameters are zero (overwritten).
  const std::vector<float> w = {2.0f};
  std::vector<float> dw = {kNan}, db = {kNan};
  ASSERT_TRUE(LinearForwardCpu(nullptr, w.data(), nullptr, nullptr, 0, 1, 1).ok());
  ASSERT_TRUE(
      LinearBackwardCpu(nullptr, w.data(), nullptr, nullptr, dw.data(), db.data(), 0, 1, 1).ok());
  EXPECT_EQ(dw[0], 0.0f);
  EXPECT_EQ(db[0], 0.0f);
  // 1 x 1 x 1: y = 3 * 2 + 1; dy = 5 gives dx = 10, dw = 15, db = 5; dx may be skipped.
  const std::vector<float> x = {3.0f}, b = {1.0f}, dy = {5.0f};
  std::vector<float> y(1), dx(1);
  ASSERT_TRUE(LinearForwardCpu(x.data(), w.data(), b.data(), y.data(), 1, 1, 1).ok());
  EXPECT_EQ(y[0], 7.0f);
  ASSERT_TRUE(
      LinearBackwardCpu(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), 1, 1, 1)
          .ok());
  EXPECT_EQ(dx[0], 10.0f);
  EXPECT_EQ(dw[0], 15.0f);
  EXPECT_EQ(db[0], 5.0f);
  ASSERT_TRUE(
      LinearBackwardCpu(x.data(), nullptr, dy.data(), nullptr, dw.data(), nullptr, 1, 1, 1).ok());
  EXPECT_EQ(dw[0], 15.0f);
}

TEST(CtrLinearTest, RejectsInvalidArguments) {
  const std::vector<float> buf(16, 1.0f);
  std::vector<float> out(16);
  const float* p = buf.data();
  EXPECT_EQ(LinearForwardCpu(p, p, p, out.data(), -1, 2, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LinearForwardCpu(p, p, p, out.data(), 2, 0, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(LinearForwardCpu(nullptr, p, p, out.data(), 2, 2, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LinearForwardCpu(p, p, p, out.data(), int64_t{1} << 32, 2, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(LinearBackwardCpu(p, p, p, out.data(), nullptr, nullptr, 2, 2, 2).code(),
            StatusCode::kInvalidArgument);  // dw is required
  EXPECT_EQ(LinearBackwardCpu(p, nullptr, p, out.data(), out.data(), nullptr, 2, 2, 2).code(),
            StatusCode::kInvalidArgument);  // dx needs w
  DeviceContext bad;
  bad.device = static_cast<Device>(7);
  EXPECT_EQ(LinearForward(bad, nullptr, p, p, p, out.data(), 2, 2, 2).code(),
            StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- ReLU

TEST(CtrReluTest, MatchesHandComputedValuesAndRunsInPlace) {
  std::vector<float> x = {-2.0f, -0.0f, 0.0f, 0.5f, 3.0f};
  std::vector<float> y(5);
  ASSERT_TRUE(ReluForwardCpu(x.data(), y.data(), 5).ok());
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 0.5f, 3}));
  std::vector<float> dy = {1, 2, 3, 4, 5}, dx(5);
  ASSERT_TRUE(ReluBackwardCpu(y.data(), dy.data(), dx.data(), 5).ok());
  EXPECT_EQ(dx, (std::vector<float>{0, 0, 0, 4, 5}));  // zero gradient at x = 0
  ASSERT_TRUE(ReluForwardCpu(x.data(), x.data(), 5).ok());
  EXPECT_EQ(x, y);
  ASSERT_TRUE(ReluBackwardCpu(y.data(), dy.data(), dy.data(), 5).ok());
  EXPECT_EQ(dy, dx);
  ASSERT_TRUE(ReluForwardCpu(nullptr, nullptr, 0).ok());
  EXPECT_EQ(ReluForwardCpu(nullptr, y.data(), 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReluBackwardCpu(y.data(), dy.data(), dx.data(), -1).code(),
            StatusCode::kInvalidArgument);
}

TEST(CtrReluTest, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(21);
  std::vector<float> x = Random(&rng, 40, 0.05f, 1.0f);   // away from the kink at 0 ...
  for (size_t k = 0; k < x.size(); k += 2) x[k] = -x[k];  // ... on both sides
  const std::vector<float> r = Random(&rng, x.size());
  std::vector<float> y(x.size()), dx(x.size());
  const auto loss = [&]() {
    EXPECT_TRUE(ReluForwardCpu(x.data(), y.data(), static_cast<int64_t>(x.size())).ok());
    return Dot(r, y);
  };
  loss();
  ASSERT_TRUE(ReluBackwardCpu(y.data(), r.data(), dx.data(), static_cast<int64_t>(x.size())).ok());
  ExpectMatchesFiniteDifferences(loss, &x, dx, "dx");
}

// ---------------------------------------------------------------- Fused: linear + ReLU

TEST(CtrFusedTest, LinearReluMatchesTheUnfusedLayersOnEveryShape) {
  std::mt19937 rng(21);
  // Odd sizes, a single row, and the MLP's own 400-wide layer on a partial batch; with and
  // without a bias. The matmul's products may sum in another order than SGEMM's: close, not equal.
  for (const auto& [batch, in, out] :
       {std::tuple<int64_t, int, int>{37, 19, 23}, {1, 7, 5}, {300, 429, 400}, {64, 400, 1}}) {
    for (bool with_bias : {true, false}) {
      const std::vector<float> x = Random(&rng, batch * in), w = Random(&rng, in * out),
                               b = Random(&rng, out);
      const float* bias = with_bias ? b.data() : nullptr;
      std::vector<float> fused(batch * out, kNan), unfused(batch * out);
      ASSERT_TRUE(
          LinearReluForwardCpu(x.data(), w.data(), bias, fused.data(), batch, in, out).ok());
      ASSERT_TRUE(LinearForwardCpu(x.data(), w.data(), bias, unfused.data(), batch, in, out).ok());
      ASSERT_TRUE(ReluForwardCpu(unfused.data(), unfused.data(), batch * out).ok());
      std::vector<double> ref(unfused.begin(), unfused.end());
      ExpectNear(
          fused, ref, 2e-5,
          "y " + std::to_string(batch) + "x" + std::to_string(in) + "x" + std::to_string(out));
      int negatives = 0;
      for (float v : fused) negatives += v < 0;
      EXPECT_EQ(negatives, 0);
      // A second call reuses the primitive made for the shape: the same bits.
      std::vector<float> again(batch * out);
      ASSERT_TRUE(
          LinearReluForwardCpu(x.data(), w.data(), bias, again.data(), batch, in, out).ok());
      EXPECT_EQ(again, fused);
    }
  }
}

TEST(CtrFusedTest, ReluBackwardColumnSumIsBitIdenticalToTheTwoPasses) {
  std::mt19937 rng(22);
  const int64_t rows = 129;
  const int cols = 67;
  std::vector<float> y = Random(&rng, rows * cols);
  for (size_t i = 0; i < y.size(); i += 3) y[i] = 0;  // ReLU outputs: zeros and positives
  for (float& v : y) v = std::max(v, 0.0f);
  const std::vector<float> dy = Random(&rng, rows * cols);
  std::vector<float> dx(rows * cols), db(cols, kNan), two_dx(rows * cols), two_db(cols);
  ASSERT_TRUE(ReluBackwardColumnSumCpu(y.data(), dy.data(), dx.data(), db.data(), rows, cols).ok());
  ASSERT_TRUE(ReluBackwardCpu(y.data(), dy.data(), two_dx.data(), rows * cols).ok());
  const DeviceContext cpu;
  ASSERT_TRUE(ColumnSum(cpu, two_dx.data(), rows, cols, two_db.data()).ok());
  EXPECT_EQ(dx, two_dx);
  EXPECT_EQ(db, two_db);
  // In place, as the MLP's backward pass calls it.
  std::vector<float> inplace = dy, inplace_db(cols);
  ASSERT_TRUE(ReluBackwardColumnSumCpu(y.data(), inplace.data(), inplace.data(), inplace_db.data(),
                                       rows, cols)
                  .ok());
  EXPECT_EQ(inplace, two_dx);
  EXPECT_EQ(inplace_db, two_db);
  EXPECT_EQ(ReluBackwardColumnSumCpu(y.data(), dy.data(), dx.data(), nullptr, rows, cols).code(),
            StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- Sigmoid + BCE

TEST(CtrSigmoidBceTest, MatchesHandComputedValues) {
  // z = 0, y = 1: p = 0.5, loss ln 2. z = 2, y = 0: p = 1 / (1 + e^-2), loss = -ln(1 - p).
  // z = -1, y = 0.25 (soft): loss = -0.25 ln p - 0.75 ln(1 - p).
  const std::vector<float> z = {0.0f, 2.0f, -1.0f}, y = {1.0f, 0.0f, 0.25f};
  std::vector<float> probs(3), dz(3);
  double loss_sum = -1.0;
  ASSERT_TRUE(SigmoidBceForwardCpu(z.data(), y.data(), probs.data(), &loss_sum, 3).ok());
  const double p1 = 1.0 / (1.0 + std::exp(-2.0)), p2 = 1.0 / (1.0 + std::exp(1.0));
  ExpectNear(probs, {0.5, p1, p2}, 1e-6, "probs");
  const double expected =
      std::log(2.0) - std::log(1.0 - p1) - 0.25 * std::log(p2) - 0.75 * std::log(1.0 - p2);
  EXPECT_NEAR(loss_sum, expected, 1e-6);
  // Mean over the batch: scale 1/3.
  ASSERT_TRUE(SigmoidBceBackwardCpu(z.data(), y.data(), dz.data(), 3, 1.0f / 3).ok());
  ExpectNear(dz, {(0.5 - 1.0) / 3, p1 / 3, (p2 - 0.25) / 3}, 1e-6, "dlogits");
  // Both outputs of the forward are optional.
  ASSERT_TRUE(SigmoidBceForwardCpu(z.data(), y.data(), nullptr, nullptr, 3).ok());
}

TEST(CtrSigmoidBceTest, ExtremeLogitsStayFinite) {
  const float big = std::numeric_limits<float>::max();
  struct Case {
    float z, y;
    double loss, prob;  // expected: right label with a huge margin ~0, wrong label ~|z|
  };
  const Case cases[] = {
      {100.0f, 1.0f, 0.0, 1.0},  {-100.0f, 0.0f, 0.0, 0.0}, {88.0f, 1.0f, 0.0, 1.0},
      {-88.0f, 1.0f, 88.0, 0.0}, {1e4f, 0.0f, 1e4, 1.0},    {-1e4f, 1.0f, 1e4, 0.0},
      {big, 1.0f, 0.0, 1.0},     {-big, 0.0f, 0.0, 0.0},    {big, 0.5f, 0.5 * big, 1.0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("z=" + std::to_string(c.z) + " y=" + std::to_string(c.y));
    float prob = kNan, dz = kNan;
    double loss = -1.0;
    ASSERT_TRUE(SigmoidBceForwardCpu(&c.z, &c.y, &prob, &loss, 1).ok());
    ASSERT_TRUE(SigmoidBceBackwardCpu(&c.z, &c.y, &dz, 1, 1.0f).ok());
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_GE(loss, 0.0);
    EXPECT_NEAR(loss, c.loss, 1e-6 * (1.0 + c.loss));
    EXPECT_NEAR(prob, c.prob, 1e-30);
    EXPECT_TRUE(std::isfinite(dz));
    EXPECT_EQ(dz, prob - c.y);
  }
}

TEST(CtrSigmoidBceTest, BackwardMatchesFiniteDifferencesOfTheMeanLoss) {
  std::mt19937 rng(31);
  const int64_t batch = 7;
  std::vector<float> z = Random(&rng, batch, -4.0f, 4.0f);
  const std::vector<float> y = {0, 1, 1, 0, 0.3f, 1, 0};
  const float scale = 1.0f / batch;
  const auto loss = [&]() {
    double sum = 0.0;
    EXPECT_TRUE(SigmoidBceForwardCpu(z.data(), y.data(), nullptr, &sum, batch).ok());
    return sum / batch;
  };
  std::vector<float> dz(batch);
  ASSERT_TRUE(SigmoidBceBackwardCpu(z.data(), y.data(), dz.data(), batch, scale).ok());
  ExpectMatchesFiniteDifferences(loss, &z, dz, "dlogits", 2e-4, 1e-2f);
}

TEST(CtrSigmoidBceTest, EmptyBatchAndInvalidArguments) {
  double loss_sum = -1.0;
  ASSERT_TRUE(SigmoidBceForwardCpu(nullptr, nullptr, nullptr, &loss_sum, 0).ok());
  EXPECT_EQ(loss_sum, 0.0);
  ASSERT_TRUE(SigmoidBceBackwardCpu(nullptr, nullptr, nullptr, 0, 1.0f).ok());
  const float one = 1.0f;
  float out = 0.0f;
  EXPECT_EQ(SigmoidBceForwardCpu(&one, nullptr, &out, nullptr, 1).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SigmoidBceBackwardCpu(&one, &one, nullptr, 1, 1.0f).code(),
            StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- Dispatch (every CTR layer)

TEST(CtrDispatchTest, CpuContextRunsTheCpuKernels) {
  const DeviceContext cpu;
  const std::vector<float> v = {1, 2, 3, -1, 0, 4};
  std::vector<float> y(1), relu(6);
  ASSERT_TRUE(FmForward(cpu, v.data(), y.data(), 1, 3, 2).ok());
  EXPECT_EQ(y[0], 5.0f);
  ASSERT_TRUE(ReluForward(cpu, v.data(), relu.data(), 6).ok());
  EXPECT_EQ(relu, (std::vector<float>{1, 2, 3, 0, 0, 4}));
  const int32_t index = 1;
  std::vector<float> row(2);
  ASSERT_TRUE(EmbeddingGather(cpu, v.data(), 3, &index, row.data(), 1, 1, 2).ok());
  EXPECT_EQ(row, (std::vector<float>{3, -1}));
  DeviceContext bad;
  bad.device = static_cast<Device>(7);
  EXPECT_EQ(FmForward(bad, v.data(), y.data(), 1, 3, 2).code(), StatusCode::kInvalidArgument);
#if !TESSERA_WITH_CUDA
  DeviceContext cuda;
  cuda.device = Device::kCuda;
  EXPECT_EQ(FmForward(cuda, v.data(), y.data(), 1, 3, 2).code(), StatusCode::kFailedPrecondition);
#endif
}

}  // namespace
}  // namespace tessera::kernels
