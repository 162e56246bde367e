// CPU kernels of the FM interaction and the DCN-v2 cross layer (kernels/fm.h, cross.h), checked
// against values worked by hand, double-precision reference loops written from the formulas,
// and central finite differences of L = sum_k r_k * y_k (see dense_kernels_test.cc).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cross.h"
#include "kernels/dense.h"
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

}  // namespace
}  // namespace tessera::kernels
