// CPU kernels of the CTR layers (kernels/dense.h, fm.h, cross.h, embedding.h), checked three
// independent ways: values worked by hand, plain double-precision reference loops written from
// the formulas (no shared code), and, for every backward, central finite differences of a
// scalar loss accumulated in double, L = sum_k r_k * y_k for fixed random r (so dy = r).
// Most layers are linear or quadratic in any single input, where central differences are exact
// up to float rounding of the forward; the tolerances below cover that rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cross.h"
#include "kernels/dense.h"
#include "kernels/device.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"

namespace tessera::kernels {
namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

std::vector<float> Random(std::mt19937* rng, size_t size, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size);
  for (float& x : v) x = dist(*rng);
  return v;
}

std::vector<int32_t> RandomIndices(std::mt19937* rng, size_t size, int32_t num_rows) {
  std::uniform_int_distribution<int32_t> dist(0, num_rows - 1);
  std::vector<int32_t> v(size);
  for (int32_t& x : v) x = dist(*rng);
  return v;
}

// sum_k r[k] * y[k] in double: the scalar loss whose gradient with respect to y is r.
double Dot(const std::vector<float>& r, const std::vector<float>& y) {
  double sum = 0.0;
  for (size_t k = 0; k < y.size(); ++k) sum += static_cast<double>(r[k]) * y[k];
  return sum;
}

void ExpectNear(const std::vector<float>& actual, const std::vector<double>& expected, double tol,
                const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t k = 0; k < actual.size(); ++k) {
    EXPECT_NEAR(actual[k], expected[k], tol * (1.0 + std::fabs(expected[k])))
        << what << " element " << k;
  }
}

// Compares grad with central differences (loss(p + eps) - loss(p - eps)) / (2 eps) of `loss`
// for every element of *param. loss() must read *param. The step is taken in float, and the
// difference divided by the step that float actually took.
void ExpectMatchesFiniteDifferences(const std::function<double()>& loss, std::vector<float>* param,
                                    const std::vector<float>& grad, const std::string& what,
                                    double tol = 1e-3, float eps = 1e-2f) {
  ASSERT_EQ(param->size(), grad.size()) << what;
  for (size_t k = 0; k < param->size(); ++k) {
    const float original = (*param)[k];
    const float plus = original + eps;
    const float minus = original - eps;
    (*param)[k] = plus;
    const double loss_plus = loss();
    (*param)[k] = minus;
    const double loss_minus = loss();
    (*param)[k] = original;
    const double fd = (loss_plus - loss_minus) / (static_cast<double>(plus) - minus);
    EXPECT_NEAR(grad[k], fd, tol * (1.0 + std::fabs(fd))) << what << " element " << k;
  }
}

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

// ---------------------------------------------------------------- FM

// y[b] = sum_{f < g} <v_f, v_g>, the O(F^2) definition, in double.
std::vector<double> PairwiseFm(const std::vector<float>& v, int64_t batch, int fields, int dim) {
  std::vector<double> y(batch, 0.0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int f = 0; f < fields; ++f) {
      for (int g = f + 1; g < fields; ++g) {
        for (int d = 0; d < dim; ++d) {
          y[b] +=
              static_cast<double>(v[(b * fields + f) * dim + d]) * v[(b * fields + g) * dim + d];
        }
      }
    }
  }
  return y;
}

TEST(CtrFmTest, MatchesHandComputedValues) {
  // One sample, 3 fields, dim 2: v = [1 2], [3 -1], [0 4].
  // <v0,v1> + <v0,v2> + <v1,v2> = (3 - 2) + (0 + 8) + (0 - 4) = 5.
  // dv_f = dy * (sum_g v_g - v_f), sum = [4 5]; dy = 2.
  const std::vector<float> v = {1, 2, 3, -1, 0, 4};
  std::vector<float> y(1), dv(6, kNan);
  ASSERT_TRUE(FmForwardCpu(v.data(), y.data(), 1, 3, 2).ok());
  EXPECT_EQ(y[0], 5.0f);
  const float dy = 2.0f;
  ASSERT_TRUE(FmBackwardCpu(v.data(), &dy, dv.data(), 1, 3, 2).ok());
  EXPECT_EQ(dv, (std::vector<float>{6, 6, 2, 12, 8, 2}));
}

TEST(CtrFmTest, MatchesPairwiseFormula) {
  std::mt19937 rng(41);
  // dims below, at and across the CPU's 64-float chunk and 8-float block.
  for (int dim : {1, 7, 8, 64, 65, 130}) {
    const int64_t batch = 5;
    const int fields = 6;
    const std::vector<float> v = Random(&rng, batch * fields * dim);
    std::vector<float> y(batch);
    ASSERT_TRUE(FmForwardCpu(v.data(), y.data(), batch, fields, dim).ok());
    ExpectNear(y, PairwiseFm(v, batch, fields, dim), 1e-5, "dim " + std::to_string(dim));
  }
}

TEST(CtrFmTest, BackwardMatchesFiniteDifferences) {
  std::mt19937 rng(42);
  for (int dim : {3, 70}) {
    const int64_t batch = 3;
    const int fields = 4;
    std::vector<float> v = Random(&rng, batch * fields * dim);
    const std::vector<float> r = Random(&rng, batch);
    std::vector<float> y(batch), dv(v.size());
    const auto loss = [&]() {
      EXPECT_TRUE(FmForwardCpu(v.data(), y.data(), batch, fields, dim).ok());
      return Dot(r, y);
    };
    ASSERT_TRUE(FmBackwardCpu(v.data(), r.data(), dv.data(), batch, fields, dim).ok());
    ExpectMatchesFiniteDifferences(loss, &v, dv, "dv dim " + std::to_string(dim));
  }
}

TEST(CtrFmTest, SizesZeroAndOneAndInvalidArguments) {
  ASSERT_TRUE(FmForwardCpu(nullptr, nullptr, 0, 3, 4).ok());
  ASSERT_TRUE(FmBackwardCpu(nullptr, nullptr, nullptr, 0, 3, 4).ok());
  // One field has no pairs: y = 0 and dv = 0.
  const std::vector<float> v = {1.5f, -2.0f};
  std::vector<float> y(1, kNan), dv(2, kNan);
  const float dy = 3.0f;
  ASSERT_TRUE(FmForwardCpu(v.data(), y.data(), 1, 1, 2).ok());
  EXPECT_EQ(y[0], 0.0f);
  ASSERT_TRUE(FmBackwardCpu(v.data(), &dy, dv.data(), 1, 1, 2).ok());
  EXPECT_EQ(dv, (std::vector<float>{0, 0}));
  EXPECT_EQ(FmForwardCpu(v.data(), y.data(), 1, 0, 2).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FmForwardCpu(v.data(), y.data(), 1, 1, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FmBackwardCpu(v.data(), nullptr, dv.data(), 1, 1, 2).code(),
            StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- Cross

TEST(CtrCrossTest, MatchesHandComputedValues) {
  // dim 2: x0 = [1 2], xl = [3 -1], W = [1 2; 0 -1], b = [0.5 1].
  // z = W xl + b = [1.5 2], y = x0 (.) z + xl = [4.5 3].
  // dy = [1 1]: dz = dy (.) x0 = [1 2]; dx0 += dy (.) z = [1.5 2]; db = [1 2];
  // dW = dz^T xl = [3 -1; 6 -2]; dxl = dy + dz W = [1 1] + [1 0] = [2 1].
  const std::vector<float> x0 = {1, 2}, xl = {3, -1}, w = {1, 2, 0, -1}, b = {0.5f, 1};
  std::vector<float> z(2, kNan), y(2, kNan);
  ASSERT_TRUE(
      CrossForwardCpu(x0.data(), xl.data(), w.data(), b.data(), z.data(), y.data(), 1, 2).ok());
  EXPECT_EQ(z, (std::vector<float>{1.5f, 2}));
  EXPECT_EQ(y, (std::vector<float>{4.5f, 3}));
  std::vector<float> y_no_z(2, kNan);
  ASSERT_TRUE(
      CrossForwardCpu(x0.data(), xl.data(), w.data(), b.data(), nullptr, y_no_z.data(), 1, 2).ok());
  EXPECT_EQ(y_no_z, y);

  const std::vector<float> dy = {1, 1};
  std::vector<float> dx0 = {10, 20};  // added to
  std::vector<float> dxl(2, kNan), dw(4, kNan), db(2, kNan), workspace(2, kNan);
  ASSERT_TRUE(CrossBackwardCpu(x0.data(), xl.data(), w.data(), z.data(), dy.data(), dx0.data(),
                               dxl.data(), dw.data(), db.data(), workspace.data(), 1, 2)
                  .ok());
  EXPECT_EQ(dx0, (std::vector<float>{11.5f, 22}));
  EXPECT_EQ(dxl, (std::vector<float>{2, 1}));
  EXPECT_EQ(dw, (std::vector<float>{3, -1, 6, -2}));
  EXPECT_EQ(db, (std::vector<float>{1, 2}));
}

struct CrossProblem {
  int64_t batch = 0;
  int dim = 0;
  std::vector<float> x0, xl, w, b, r;
};

CrossProblem RandomCross(unsigned seed, int64_t batch, int dim) {
  std::mt19937 rng(seed);
  CrossProblem p;
  p.batch = batch;
  p.dim = dim;
  p.x0 = Random(&rng, batch * dim);
  p.xl = Random(&rng, batch * dim);
  p.w = Random(&rng, static_cast<size_t>(dim) * dim, -0.5f, 0.5f);
  p.b = Random(&rng, dim);
  p.r = Random(&rng, batch * dim);
  return p;
}

TEST(CtrCrossTest, BackwardMatchesFiniteDifferences) {
  CrossProblem p = RandomCross(51, 3, 5);
  const int64_t n = p.batch * p.dim;
  std::vector<float> z(n), y(n);
  const auto loss = [&]() {
    EXPECT_TRUE(CrossForwardCpu(p.x0.data(), p.xl.data(), p.w.data(), p.b.data(), z.data(),
                                y.data(), p.batch, p.dim)
                    .ok());
    return Dot(p.r, y);
  };
  loss();
  std::vector<float> dx0(n, 0.0f), dxl(n), dw(p.dim * p.dim), db(p.dim), workspace(n);
  ASSERT_TRUE(CrossBackwardCpu(p.x0.data(), p.xl.data(), p.w.data(), z.data(), p.r.data(),
                               dx0.data(), dxl.data(), dw.data(), db.data(), workspace.data(),
                               p.batch, p.dim)
                  .ok());
  ExpectMatchesFiniteDifferences(loss, &p.x0, dx0, "dx0");
  ExpectMatchesFiniteDifferences(loss, &p.xl, dxl, "dxl");
  ExpectMatchesFiniteDifferences(loss, &p.w, dw, "dw");
  ExpectMatchesFiniteDifferences(loss, &p.b, db, "db");
}

TEST(CtrCrossTest, TwoLayerStackFromOneInputMatchesFiniteDifferences) {
  // x1 = cross(x0, x0), x2 = cross(x0, x1): x0 feeds both products and the identity path, so
  // its gradient is dx0 accumulated over both layers plus layer 0's dxl.
  CrossProblem p = RandomCross(52, 4, 6);
  CrossProblem q = RandomCross(53, 4, 6);  // second layer's W, b
  const int64_t n = p.batch * p.dim;
  std::vector<float> z1(n), x1(n), z2(n), x2(n);
  const auto loss = [&]() {
    EXPECT_TRUE(CrossForwardCpu(p.x0.data(), p.x0.data(), p.w.data(), p.b.data(), z1.data(),
                                x1.data(), p.batch, p.dim)
                    .ok());
    EXPECT_TRUE(CrossForwardCpu(p.x0.data(), x1.data(), q.w.data(), q.b.data(), z2.data(),
                                x2.data(), p.batch, p.dim)
                    .ok());
    return Dot(p.r, x2);
  };
  loss();
  std::vector<float> dx0(n, 0.0f), dx1(n), dw2(p.dim * p.dim), db2(p.dim), dw1(p.dim * p.dim),
      db1(p.dim), workspace(n);
  std::vector<float> g = p.r;  // dx2, turned into dx1 in place (dxl == dy), then layer 0's dxl
  ASSERT_TRUE(CrossBackwardCpu(p.x0.data(), x1.data(), q.w.data(), z2.data(), g.data(), dx0.data(),
                               g.data(), dw2.data(), db2.data(), workspace.data(), p.batch, p.dim)
                  .ok());
  ASSERT_TRUE(CrossBackwardCpu(p.x0.data(), p.x0.data(), p.w.data(), z1.data(), g.data(),
                               dx0.data(), dx1.data(), dw1.data(), db1.data(), workspace.data(),
                               p.batch, p.dim)
                  .ok());
  for (int64_t i = 0; i < n; ++i) dx0[i] += dx1[i];
  ExpectMatchesFiniteDifferences(loss, &p.x0, dx0, "dx0");
  ExpectMatchesFiniteDifferences(loss, &p.w, dw1, "dw layer 0");
  ExpectMatchesFiniteDifferences(loss, &q.w, dw2, "dw layer 1");
  ExpectMatchesFiniteDifferences(loss, &q.b, db2, "db layer 1");
}

TEST(CtrCrossTest, SizesZeroAndOneAndInvalidArguments) {
  const std::vector<float> w = {2.0f}, b = {1.0f};
  std::vector<float> dw = {kNan}, db = {kNan};
  ASSERT_TRUE(CrossForwardCpu(nullptr, nullptr, w.data(), b.data(), nullptr, nullptr, 0, 1).ok());
  ASSERT_TRUE(CrossBackwardCpu(nullptr, nullptr, w.data(), nullptr, nullptr, nullptr, nullptr,
                               dw.data(), db.data(), nullptr, 0, 1)
                  .ok());
  EXPECT_EQ(dw[0], 0.0f);
  EXPECT_EQ(db[0], 0.0f);
  // dim 1, one sample: z = 2 * 3 + 1 = 7, y = 0.5 * 7 + 3 = 6.5.
  const std::vector<float> x0 = {0.5f}, xl = {3.0f};
  std::vector<float> y(1);
  ASSERT_TRUE(
      CrossForwardCpu(x0.data(), xl.data(), w.data(), b.data(), nullptr, y.data(), 1, 1).ok());
  EXPECT_EQ(y[0], 6.5f);
  EXPECT_EQ(
      CrossForwardCpu(x0.data(), xl.data(), w.data(), nullptr, nullptr, y.data(), 1, 1).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(
      CrossForwardCpu(x0.data(), xl.data(), w.data(), b.data(), nullptr, y.data(), 1, 0).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(CrossBackwardCpu(x0.data(), xl.data(), w.data(), y.data(), y.data(), dw.data(),
                             db.data(), dw.data(), db.data(), nullptr, 1, 1)
                .code(),
            StatusCode::kInvalidArgument);  // null workspace
}

// ---------------------------------------------------------------- Embedding gather / pool

TEST(CtrEmbeddingTest, GatherAndBackwardMatchNaiveLoopsWithRepeatedRows) {
  std::mt19937 rng(61);
  const int64_t num_rows = 5, batch = 9;
  const int fields = 3, dim = 7;
  const std::vector<float> rows = Random(&rng, num_rows * dim);
  const std::vector<int32_t> indices = RandomIndices(&rng, batch * fields, num_rows);  // repeats
  std::vector<float> out(batch * fields * dim, kNan);
  ASSERT_TRUE(
      EmbeddingGatherCpu(rows.data(), num_rows, indices.data(), out.data(), batch, fields, dim)
          .ok());
  const std::vector<float> grad_out = Random(&rng, out.size());
  std::vector<float> grad_rows(rows.size(), 0.5f);  // added to
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(indices.data(), grad_out.data(), grad_rows.data(),
                                         num_rows, batch, fields, dim)
                  .ok());
  std::vector<float> naive_grad(rows.size(), 0.5f);  // same order of additions: bitwise equal
  for (int64_t i = 0; i < batch * fields; ++i) {
    for (int d = 0; d < dim; ++d) {
      EXPECT_EQ(out[i * dim + d], rows[indices[i] * dim + d]);
      naive_grad[indices[i] * dim + d] += grad_out[i * dim + d];
    }
  }
  EXPECT_EQ(grad_rows, naive_grad);
}

TEST(CtrEmbeddingTest, PoolAndBackwardMatchNaiveLoops) {
  std::mt19937 rng(62);
  const int64_t num_rows = 4;
  const int dim = 5;
  // Bags of sizes 3, 0, 1, 4 (the last repeats row 2): a CSR over 8 positions.
  const std::vector<int64_t> offsets = {0, 3, 3, 4, 8};
  const std::vector<int32_t> indices = {0, 3, 1, 2, 2, 0, 2, 3};
  const std::vector<float> weights = Random(&rng, indices.size());
  const std::vector<float> rows = Random(&rng, num_rows * dim);
  const int64_t num_bags = 4;
  for (bool weighted : {true, false}) {
    const float* w = weighted ? weights.data() : nullptr;
    std::vector<float> out(num_bags * dim, kNan);
    ASSERT_TRUE(EmbeddingPoolCpu(rows.data(), num_rows, offsets.data(), indices.data(), w,
                                 out.data(), num_bags, dim)
                    .ok());
    const std::vector<float> grad_out = Random(&rng, out.size());
    std::vector<float> grad_rows(rows.size(), 0.0f);
    ASSERT_TRUE(EmbeddingPoolBackwardCpu(offsets.data(), indices.data(), w, grad_out.data(),
                                         grad_rows.data(), num_rows, num_bags, dim)
                    .ok());
    std::vector<double> naive_out(out.size(), 0.0), naive_grad(rows.size(), 0.0);
    for (int64_t k = 0; k < num_bags; ++k) {
      for (int64_t p = offsets[k]; p < offsets[k + 1]; ++p) {
        const double weight = weighted ? weights[p] : 1.0;
        for (int d = 0; d < dim; ++d) {
          naive_out[k * dim + d] += weight * rows[indices[p] * dim + d];
          naive_grad[indices[p] * dim + d] += weight * grad_out[k * dim + d];
        }
      }
    }
    ExpectNear(out, naive_out, 1e-6, weighted ? "weighted out" : "out");
    ExpectNear(grad_rows, naive_grad, 1e-6, weighted ? "weighted grad" : "grad");
    for (int d = 0; d < dim; ++d) EXPECT_EQ(out[1 * dim + d], 0.0f);  // empty bag
  }
}

TEST(CtrEmbeddingTest, BackwardsMatchFiniteDifferences) {
  std::mt19937 rng(63);
  const int64_t num_rows = 3, batch = 4;
  const int fields = 2, dim = 3;
  std::vector<float> rows = Random(&rng, num_rows * dim);
  const std::vector<int32_t> indices = RandomIndices(&rng, batch * fields, num_rows);
  const std::vector<float> r = Random(&rng, batch * fields * dim);
  std::vector<float> out(r.size());
  const auto gather_loss = [&]() {
    EXPECT_TRUE(
        EmbeddingGatherCpu(rows.data(), num_rows, indices.data(), out.data(), batch, fields, dim)
            .ok());
    return Dot(r, out);
  };
  std::vector<float> grad_rows(rows.size(), 0.0f);
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(indices.data(), r.data(), grad_rows.data(), num_rows,
                                         batch, fields, dim)
                  .ok());
  ExpectMatchesFiniteDifferences(gather_loss, &rows, grad_rows, "gather grad_rows");

  // Pool the same positions as batch * fields bags of 1..3 keys, weighted.
  const std::vector<int64_t> offsets = {0, 2, 3, 6, 7, 8, 8, 10, 11};
  const std::vector<int32_t> pool_indices = RandomIndices(&rng, 11, num_rows);
  const std::vector<float> weights = Random(&rng, 11);
  const auto pool_loss = [&]() {
    EXPECT_TRUE(EmbeddingPoolCpu(rows.data(), num_rows, offsets.data(), pool_indices.data(),
                                 weights.data(), out.data(), batch * fields, dim)
                    .ok());
    return Dot(r, out);
  };
  std::fill(grad_rows.begin(), grad_rows.end(), 0.0f);
  ASSERT_TRUE(EmbeddingPoolBackwardCpu(offsets.data(), pool_indices.data(), weights.data(),
                                       r.data(), grad_rows.data(), num_rows, batch * fields, dim)
                  .ok());
  ExpectMatchesFiniteDifferences(pool_loss, &rows, grad_rows, "pool grad_rows");
}

TEST(CtrEmbeddingTest, SizesZeroAndOne) {
  ASSERT_TRUE(EmbeddingGatherCpu(nullptr, 0, nullptr, nullptr, 0, 2, 3).ok());
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(nullptr, nullptr, nullptr, 0, 0, 2, 3).ok());
  ASSERT_TRUE(EmbeddingPoolCpu(nullptr, 0, nullptr, nullptr, nullptr, nullptr, 0, 3).ok());
  ASSERT_TRUE(EmbeddingPoolBackwardCpu(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 0, 3).ok());
  const std::vector<float> row = {4.0f};
  const int32_t index = 0;
  float out = kNan, grad = 1.0f;
  const float grad_out = 2.0f;
  ASSERT_TRUE(EmbeddingGatherCpu(row.data(), 1, &index, &out, 1, 1, 1).ok());
  EXPECT_EQ(out, 4.0f);
  ASSERT_TRUE(EmbeddingGatherBackwardCpu(&index, &grad_out, &grad, 1, 1, 1, 1).ok());
  EXPECT_EQ(grad, 3.0f);
  // All bags empty: zeros, and nothing read from rows.
  const std::vector<int64_t> offsets = {0, 0, 0};
  std::vector<float> pooled(2, kNan);
  ASSERT_TRUE(
      EmbeddingPoolCpu(nullptr, 0, offsets.data(), &index, nullptr, pooled.data(), 2, 1).ok());
  EXPECT_EQ(pooled, (std::vector<float>{0, 0}));
}

TEST(CtrEmbeddingTest, RejectsBadIndicesAndOffsetsWithoutWriting) {
  const std::vector<float> rows(6, 1.0f);
  const std::vector<int32_t> indices = {0, 2, 3};  // 3 is out of range for 3 rows
  std::vector<float> out(6, kNan);
  EXPECT_EQ(EmbeddingGatherCpu(rows.data(), 3, indices.data(), out.data(), 3, 1, 2).code(),
            StatusCode::kInvalidArgument);
  for (float v : out) EXPECT_TRUE(std::isnan(v));  // nothing written
  std::vector<float> grad(6, 0.0f);
  EXPECT_EQ(EmbeddingGatherBackwardCpu(indices.data(), rows.data(), grad.data(), 3, 3, 1, 2).code(),
            StatusCode::kInvalidArgument);
  for (float v : grad) EXPECT_EQ(v, 0.0f);
  const std::vector<int32_t> negative = {-1};
  EXPECT_EQ(EmbeddingGatherCpu(rows.data(), 3, negative.data(), out.data(), 1, 1, 2).code(),
            StatusCode::kInvalidArgument);
  const std::vector<int64_t> decreasing = {0, 2, 1};
  EXPECT_EQ(
      EmbeddingPoolCpu(rows.data(), 3, decreasing.data(), indices.data(), nullptr, out.data(), 2, 2)
          .code(),
      StatusCode::kInvalidArgument);
  const std::vector<int64_t> past_valid = {0, 3};  // position 2 holds the bad index 3
  EXPECT_EQ(
      EmbeddingPoolCpu(rows.data(), 3, past_valid.data(), indices.data(), nullptr, out.data(), 1, 2)
          .code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingPoolBackwardCpu(past_valid.data(), indices.data(), nullptr, rows.data(),
                                     grad.data(), 3, 1, 2)
                .code(),
            StatusCode::kInvalidArgument);
  for (float v : out) EXPECT_TRUE(std::isnan(v));
  for (float v : grad) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(EmbeddingGatherCpu(rows.data(), 3, indices.data(), out.data(), 1, 0, 2).code(),
            StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------- Dispatch

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
