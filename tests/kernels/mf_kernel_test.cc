// Biased MF kernels on CPU, checked three independent ways: a sample worked by hand, central
// finite differences of the loss (in double), and a plain double-precision reference loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/finite.h"
#include "kernels/mf.h"
#include "kernels/mf_math.h"
#include "kernels/sparse_optimizer.h"
#include "tests/testing/mf_problem.h"

namespace tessera::kernels {
namespace {

using Problem = ::tessera::testing::MfProblem;

// A random batch (l2 0.05, l2_bias 0.02, global mean 3.5).
Problem RandomProblem(unsigned seed, int64_t num_samples, int dim, int64_t num_users,
                      int64_t num_items) {
  return ::tessera::testing::RandomMfProblem(seed, num_samples, dim, num_users, num_items);
}

// Loss of the whole batch in double, with parameters given in double.
double Loss(const Problem& pr, const std::vector<double>& user_rows,
            const std::vector<double>& item_rows) {
  const int dim = pr.dim;
  double loss = 0.0;
  for (size_t s = 0; s < pr.ratings.size(); ++s) {
    const double* p = &user_rows[pr.user_index[s] * (dim + 1)];
    const double* q = &item_rows[pr.item_index[s] * (dim + 1)];
    double prediction = pr.global_mean + p[dim] + q[dim];
    const double bias_norms = p[dim] * p[dim] + q[dim] * q[dim];
    double norms = 0.0;
    for (int j = 0; j < dim; ++j) {
      prediction += p[j] * q[j];
      norms += p[j] * p[j] + q[j] * q[j];
    }
    const double err = pr.ratings[s] - prediction;
    loss += 0.5 * err * err + 0.5 * pr.l2 * norms + 0.5 * pr.l2_bias * bias_norms;
  }
  return loss;
}

struct Grads {
  std::vector<double> user;
  std::vector<double> item;
  double sq_error = 0.0;
};

// Straightforward per-sample loop in double, written from the loss (no shared code).
Grads ReferenceGrads(const Problem& pr) {
  const int dim = pr.dim;
  Grads g;
  g.user.assign(pr.user_rows.size(), 0.0);
  g.item.assign(pr.item_rows.size(), 0.0);
  for (size_t s = 0; s < pr.ratings.size(); ++s) {
    const float* p = &pr.user_rows[pr.user_index[s] * (dim + 1)];
    const float* q = &pr.item_rows[pr.item_index[s] * (dim + 1)];
    double* gp = &g.user[pr.user_index[s] * (dim + 1)];
    double* gq = &g.item[pr.item_index[s] * (dim + 1)];
    double prediction = pr.global_mean + p[dim] + q[dim];
    for (int j = 0; j < dim; ++j) prediction += static_cast<double>(p[j]) * q[j];
    const double err = pr.ratings[s] - prediction;
    g.sq_error += err * err;
    for (int j = 0; j <= dim; ++j) {
      const double other_p = j < dim ? q[j] : 1.0;  // d r_hat / d b_u = 1
      const double other_q = j < dim ? p[j] : 1.0;
      const double l2 = j < dim ? pr.l2 : pr.l2_bias;
      gp[j] += -err * other_p + l2 * p[j];
      gq[j] += -err * other_q + l2 * q[j];
    }
  }
  return g;
}

void ExpectNear(const std::vector<float>& actual, const std::vector<double>& expected, double tol) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t k = 0; k < actual.size(); ++k) {
    EXPECT_NEAR(actual[k], expected[k], tol * (1.0 + std::fabs(expected[k]))) << "element " << k;
  }
}

TEST(MfGradientTest, MatchesHandComputedSample) {
  // dim 2, mu 3, p = [0.5 1 | 0.2], q = [2 -1 | -0.1], r = 4, l2 = 0.1, l2_bias = 0.5.
  // dot 0, r_hat 3.1, e 0.9; grad p = -e q + l2 p, grad q = -e p + l2 q,
  // grad b = -e + l2_bias b.
  Problem pr;
  pr.dim = 2;
  pr.num_users = 1;
  pr.num_items = 1;
  pr.user_index = {0};
  pr.item_index = {0};
  pr.ratings = {4.0f};
  pr.user_rows = {0.5f, 1.0f, 0.2f};
  pr.item_rows = {2.0f, -1.0f, -0.1f};
  pr.global_mean = 3.0f;
  pr.l2 = 0.1f;
  pr.l2_bias = 0.5f;
  std::vector<float> user_grads(3), item_grads(3);
  double sq_error = -1.0;
  ASSERT_TRUE(MfBatchGradientCpu(pr.Batch(), user_grads.data(), item_grads.data(), &sq_error).ok());
  EXPECT_NEAR(sq_error, 0.81, 1e-6);
  EXPECT_NEAR(user_grads[0], -1.75f, 1e-6);  // -0.9 * 2 + 0.1 * 0.5
  EXPECT_NEAR(user_grads[1], 1.0f, 1e-6);    // 0.9 + 0.1
  EXPECT_NEAR(user_grads[2], -0.8f, 1e-6);   // -0.9 + 0.5 * 0.2
  EXPECT_NEAR(item_grads[0], -0.25f, 1e-6);  // -0.9 * 0.5 + 0.1 * 2
  EXPECT_NEAR(item_grads[1], -1.0f, 1e-6);   // -0.9 * 1 - 0.1
  EXPECT_NEAR(item_grads[2], -0.95f, 1e-6);  // -0.9 + 0.5 * -0.1
  float prediction = 0.0f;
  ASSERT_TRUE(MfPredictCpu(pr.Batch(), &prediction).ok());
  EXPECT_NEAR(prediction, 3.1f, 1e-6);
}

TEST(MfGradientTest, MatchesFiniteDifferencesOfTheLoss) {
  const unsigned seed = 7;
  SCOPED_TRACE("seed=" + std::to_string(seed));
  const Problem pr = RandomProblem(seed, 12, 5, 3, 4);
  std::vector<float> user_grads(pr.user_rows.size()), item_grads(pr.item_rows.size());
  ASSERT_TRUE(MfBatchGradientCpu(pr.Batch(), user_grads.data(), item_grads.data(), nullptr).ok());
  std::vector<double> user_rows(pr.user_rows.begin(), pr.user_rows.end());
  std::vector<double> item_rows(pr.item_rows.begin(), pr.item_rows.end());
  const double h = 1e-4;
  auto central_difference = [&](double& param) {
    const double saved = param;
    param = saved + h;
    const double plus = Loss(pr, user_rows, item_rows);
    param = saved - h;
    const double minus = Loss(pr, user_rows, item_rows);
    param = saved;
    return (plus - minus) / (2 * h);
  };
  for (size_t k = 0; k < user_rows.size(); ++k) {
    EXPECT_NEAR(user_grads[k], central_difference(user_rows[k]), 1e-4) << "user element " << k;
  }
  for (size_t k = 0; k < item_rows.size(); ++k) {
    EXPECT_NEAR(item_grads[k], central_difference(item_rows[k]), 1e-4) << "item element " << k;
  }
}

// Dims around the 8-float unrolled block and its remainder, the sizes the trainer uses, and
// heavy row reuse.
TEST(MfGradientTest, MatchesReferenceLoopForManyShapes) {
  const int dims[] = {1, 3, 7, 8, 9, 16, 31, 32, 33, 128};
  unsigned seed = 100;
  for (int dim : dims) {
    for (int64_t num_samples : {1, 2, 57, 400}) {
      ++seed;
      SCOPED_TRACE("seed=" + std::to_string(seed) + " dim=" + std::to_string(dim) +
                   " samples=" + std::to_string(num_samples));
      const Problem pr = RandomProblem(seed, num_samples, dim, 5, 11);
      std::vector<float> user_grads(pr.user_rows.size()), item_grads(pr.item_rows.size());
      double sq_error = 0.0;
      ASSERT_TRUE(
          MfBatchGradientCpu(pr.Batch(), user_grads.data(), item_grads.data(), &sq_error).ok());
      const Grads expected = ReferenceGrads(pr);
      ExpectNear(user_grads, expected.user, 1e-4);
      ExpectNear(item_grads, expected.item, 1e-4);
      EXPECT_NEAR(sq_error, expected.sq_error, 1e-5 * (1.0 + expected.sq_error));
    }
  }
}

TEST(MfGradientTest, SqErrorSumIsSumOfSquaredResiduals) {
  // Zero factors and biases: r_hat = mu = 2, residuals 1, -1, 3.
  Problem pr;
  pr.dim = 4;
  pr.num_users = 2;
  pr.num_items = 2;
  pr.user_index = {0, 1, 1};
  pr.item_index = {1, 0, 1};
  pr.ratings = {3.0f, 1.0f, 5.0f};
  pr.user_rows.assign(2 * 5, 0.0f);
  pr.item_rows.assign(2 * 5, 0.0f);
  pr.global_mean = 2.0f;
  std::vector<float> user_grads(10), item_grads(10);
  double sq_error = -1.0;
  ASSERT_TRUE(MfBatchGradientCpu(pr.Batch(), user_grads.data(), item_grads.data(), &sq_error).ok());
  EXPECT_DOUBLE_EQ(sq_error, 11.0);
  EXPECT_FLOAT_EQ(user_grads[4], -1.0f);  // bias of user 0: -e = -1
  EXPECT_FLOAT_EQ(user_grads[9], -2.0f);  // bias of user 1: 1 - 3
}

TEST(MfGradientTest, OverwritesOutputsAndZeroesUntouchedRows) {
  const Problem pr = RandomProblem(3, 4, 6, 10, 10);
  std::vector<float> user_grads(pr.user_rows.size(), std::numeric_limits<float>::quiet_NaN());
  std::vector<float> item_grads(pr.item_rows.size(), 123.0f);
  ASSERT_TRUE(MfBatchGradientCpu(pr.Batch(), user_grads.data(), item_grads.data(), nullptr).ok());
  const Grads expected = ReferenceGrads(pr);
  ExpectNear(user_grads, expected.user, 1e-4);
  ExpectNear(item_grads, expected.item, 1e-4);
  for (int32_t u = 0; u < 10; ++u) {
    bool touched = false;
    for (int32_t used : pr.user_index) touched |= used == u;
    if (touched) continue;
    for (int j = 0; j <= pr.dim; ++j) EXPECT_EQ(user_grads[u * (pr.dim + 1) + j], 0.0f);
  }
}

TEST(MfGradientTest, IsBitwiseDeterministic) {
  const Problem pr = RandomProblem(11, 300, 32, 7, 9);
  std::vector<float> u1(pr.user_rows.size()), i1(pr.item_rows.size());
  std::vector<float> u2(pr.user_rows.size()), i2(pr.item_rows.size());
  double sq1 = 0.0, sq2 = 0.0;
  ASSERT_TRUE(MfBatchGradientCpu(pr.Batch(), u1.data(), i1.data(), &sq1).ok());
  ASSERT_TRUE(MfBatchGradient(DeviceContext{}, pr.Batch(), u2.data(), i2.data(), &sq2).ok());
  EXPECT_EQ(u1, u2);
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(sq1, sq2);
}

TEST(MfGradientTest, EmptyBatchZeroesGradientsAndErrorSum) {
  Problem pr = RandomProblem(5, 0, 4, 2, 3);
  std::vector<float> user_grads(pr.user_rows.size(), 1.0f), item_grads(pr.item_rows.size(), 1.0f);
  double sq_error = 1.0;
  ASSERT_TRUE(MfBatchGradientCpu(pr.Batch(), user_grads.data(), item_grads.data(), &sq_error).ok());
  for (float v : user_grads) EXPECT_EQ(v, 0.0f);
  for (float v : item_grads) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(sq_error, 0.0);
  MfBatch nothing;
  nothing.dim = 8;
  EXPECT_TRUE(MfBatchGradientCpu(nothing, nullptr, nullptr, nullptr).ok());
  EXPECT_TRUE(MfPredictCpu(nothing, nullptr).ok());
}

TEST(MfGradientTest, RejectsInvalidArgumentsWithoutWritingOutputs) {
  const Problem pr = RandomProblem(9, 6, 4, 3, 3);
  std::vector<float> user_grads(pr.user_rows.size(), 7.0f), item_grads(pr.item_rows.size(), 7.0f);
  double sq_error = 7.0;
  auto gradient_code = [&](const MfBatch& b) {
    return MfBatchGradientCpu(b, user_grads.data(), item_grads.data(), &sq_error).code();
  };
  MfBatch b = pr.Batch();
  b.num_samples = -1;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  b = pr.Batch();
  b.dim = 0;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  b = pr.Batch();
  b.num_users = -2;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  b = pr.Batch();
  b.ratings = nullptr;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  b = pr.Batch();
  b.item_index = nullptr;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  b = pr.Batch();
  b.user_rows = nullptr;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  EXPECT_EQ(MfBatchGradientCpu(pr.Batch(), nullptr, item_grads.data(), &sq_error).code(),
            StatusCode::kInvalidArgument);
  // An index out of range is caught before anything is written.
  std::vector<int32_t> bad_items = pr.item_index;
  bad_items.back() = 3;
  b = pr.Batch();
  b.item_index = bad_items.data();
  Status s = MfBatchGradientCpu(b, user_grads.data(), item_grads.data(), &sq_error);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sample 5"), std::string::npos) << s.message();
  bad_items.back() = -1;
  EXPECT_EQ(gradient_code(b), StatusCode::kInvalidArgument);
  for (float v : user_grads) EXPECT_EQ(v, 7.0f);
  for (float v : item_grads) EXPECT_EQ(v, 7.0f);
  EXPECT_EQ(sq_error, 7.0);
}

// The two-pass form gives the one-pass kernel's bits for any split of the samples, at dims with
// and without a scalar remainder, with rows used by many samples.
TEST(MfTwoPassGradientTest, MatchesOnePassBitForBit) {
  for (int dim : {1, 8, 13, 32, 128}) {
    const Problem pr = RandomProblem(17 + dim, 1000, dim, 37, 23);
    const MfBatch b = pr.Batch();
    std::vector<float> u1(pr.user_rows.size()), i1(pr.item_rows.size());
    double sq1 = 0.0;
    ASSERT_TRUE(MfBatchGradientCpu(b, u1.data(), i1.data(), &sq1).ok());
    for (int64_t split : {int64_t{0}, int64_t{1}, int64_t{499}, int64_t{1000}}) {
      std::vector<float> errors(1000, std::nanf(""));
      std::vector<float> u2(pr.user_rows.size(), 9.0f), i2(pr.item_rows.size(), 9.0f);
      ASSERT_TRUE(MfErrorsCpu(b, split, 1000, errors.data()).ok());
      ASSERT_TRUE(MfErrorsCpu(b, 0, split, errors.data()).ok());
      ASSERT_TRUE(MfSideGradsCpu(b, errors.data(), MfSide::kItem, i2.data()).ok());
      ASSERT_TRUE(MfSideGradsCpu(b, errors.data(), MfSide::kUser, u2.data()).ok());
      EXPECT_EQ(u1, u2) << "dim " << dim << " split " << split;
      EXPECT_EQ(i1, i2) << "dim " << dim << " split " << split;
      EXPECT_EQ(MfSquaredErrorSum(errors.data(), 1000), sq1) << "dim " << dim;
    }
  }
}

// Renumbers pr's users and items in the order of their first samples, as KeyDeduper numbers a
// batch's rows (rows without a sample are dropped): the one-pass kernel then writes each row at
// its first sample instead of adding to a zeroed row.
Problem InFirstSampleOrder(const Problem& pr) {
  Problem out = pr;
  auto renumber = [&](const std::vector<int32_t>& index, const std::vector<float>& rows,
                      std::vector<int32_t>* new_index, std::vector<float>* new_rows) {
    const size_t stride = static_cast<size_t>(pr.dim) + 1;
    std::vector<int32_t> number(rows.size() / stride, -1);
    new_rows->clear();
    for (size_t s = 0; s < index.size(); ++s) {
      int32_t& n = number[static_cast<size_t>(index[s])];
      if (n < 0) {
        n = static_cast<int32_t>(new_rows->size() / stride);
        new_rows->insert(new_rows->end(), rows.begin() + index[s] * stride,
                         rows.begin() + (index[s] + 1) * stride);
      }
      (*new_index)[s] = n;
    }
    return static_cast<int64_t>(new_rows->size() / stride);
  };
  out.num_users = renumber(pr.user_index, pr.user_rows, &out.user_index, &out.user_rows);
  out.num_items = renumber(pr.item_index, pr.item_rows, &out.item_index, &out.item_rows);
  return out;
}

// A batch in first-sample order gets the one-pass kernel's writes without zeroing; any other
// batch zeroes its outputs first. Both give the bits of the two-pass kernel, which zeroes and
// adds in sample order, and neither reads what the outputs held before (NaN here).
TEST(MfGradientTest, RowsInFirstSampleOrderGiveTheBitsOfZeroedRows) {
  for (int dim : {1, 8, 13, 32, 128, 1100}) {  // 1100: wider than the kernel's row of zeros
    const Problem ordered = InFirstSampleOrder(RandomProblem(5 + dim, 600, dim, 300, 40));
    Problem unordered = ordered;
    std::swap(unordered.user_index.front(), unordered.user_index.back());  // row n-1 comes first
    Problem spare_row = ordered;  // in order, but its last user has no sample
    spare_row.num_users += 1;
    spare_row.user_rows.resize(spare_row.user_rows.size() + dim + 1, 0.25f);
    const Problem* const cases[] = {&ordered, &unordered, &spare_row};
    for (const Problem* pr : cases) {
      const MfBatch b = pr->Batch();
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> u1(pr->user_rows.size(), nan), i1(pr->item_rows.size(), nan);
      double sq1 = 0.0;
      ASSERT_TRUE(MfBatchGradientCpu(b, u1.data(), i1.data(), &sq1).ok());
      std::vector<float> errors(pr->ratings.size());
      std::vector<float> u2(pr->user_rows.size(), nan), i2(pr->item_rows.size(), nan);
      ASSERT_TRUE(MfErrorsCpu(b, 0, b.num_samples, errors.data()).ok());
      ASSERT_TRUE(MfSideGradsCpu(b, errors.data(), MfSide::kUser, u2.data()).ok());
      ASSERT_TRUE(MfSideGradsCpu(b, errors.data(), MfSide::kItem, i2.data()).ok());
      const char* which = pr == &ordered ? "ordered" : pr == &unordered ? "unordered" : "spare";
      EXPECT_EQ(0, std::memcmp(u1.data(), u2.data(), u1.size() * sizeof(float)))
          << which << " dim " << dim;
      EXPECT_EQ(0, std::memcmp(i1.data(), i2.data(), i1.size() * sizeof(float)))
          << which << " dim " << dim;
      EXPECT_EQ(sq1, MfSquaredErrorSum(errors.data(), b.num_samples));
    }
    bool first_seen = false;
    ASSERT_TRUE(internal::CheckMfIndices(ordered.Batch(), 0, 600, &first_seen).ok());
    EXPECT_TRUE(first_seen);
    ASSERT_TRUE(internal::CheckMfIndices(unordered.Batch(), 0, 600, &first_seen).ok());
    EXPECT_FALSE(first_seen);
    ASSERT_TRUE(internal::CheckMfIndices(spare_row.Batch(), 0, 600, &first_seen).ok());
    EXPECT_FALSE(first_seen);
  }
}

// The kernels vouch for their gradients through the errors (kernels/mf.h): the double sum of the
// squared errors is not finite when an error is not, in the one-pass and the two-pass kernels; a
// gradient that overflows under finite errors leaves it finite, and the server's update of that
// row, which checks what it writes, finds it.
TEST(MfGradientFiniteTest, TheLossSeesANonFiniteErrorAndTheServersRowCheckAnOverflow) {
  for (int dim : {8, 13}) {
    const int stride = dim + 1;
    auto loss_finite = [&](const Problem& pr, std::vector<float>* u, std::vector<float>* i) {
      double one_pass = 0.0;
      EXPECT_TRUE(MfBatchGradientCpu(pr.Batch(), u->data(), i->data(), &one_pass).ok());
      std::vector<float> errors(pr.ratings.size());
      EXPECT_TRUE(MfErrorsCpu(pr.Batch(), 0, 200, errors.data()).ok());
      const double two_pass = MfSquaredErrorSum(errors.data(), 200);
      EXPECT_EQ(std::isfinite(two_pass), std::isfinite(one_pass)) << "dim " << dim;
      EXPECT_TRUE(MfSideGradsCpu(pr.Batch(), errors.data(), MfSide::kUser, u->data()).ok());
      EXPECT_TRUE(MfSideGradsCpu(pr.Batch(), errors.data(), MfSide::kItem, i->data()).ok());
      return std::isfinite(one_pass);
    };
    Problem pr = RandomProblem(40 + dim, 200, dim, 5, 7);
    pr.l2 = 0.0f;
    std::vector<float> u(pr.user_rows.size()), i(pr.item_rows.size());
    EXPECT_TRUE(loss_finite(pr, &u, &i)) << "dim " << dim;

    // User 0's last factor is 2e38 and every item's is 0: predictions and errors stay finite,
    // user gradients too (err * 0), but an item's gradient -err * 2e38 is -inf once |err| > 1.7.
    Problem overflow = pr;
    const int j = dim - 1;
    overflow.user_rows[j] = 2e38f;
    for (int64_t r = 0; r < overflow.num_items; ++r) overflow.item_rows[r * stride + j] = 0.0f;
    for (size_t k = 0; k < overflow.ratings.size(); ++k) {
      if (overflow.user_index[k] == 0) overflow.ratings[k] = 9.0f;
    }
    EXPECT_TRUE(loss_finite(overflow, &u, &i)) << "dim " << dim;
    const int64_t bad = FindNonFinite(i.data(), static_cast<int64_t>(i.size()));
    ASSERT_LT(bad, static_cast<int64_t>(i.size()));
    // The server's SGD update of that item row writes a non-finite weight and says which row.
    const int64_t row = bad / stride;
    std::vector<float> weights(overflow.item_rows.begin() + row * stride,
                               overflow.item_rows.begin() + (row + 1) * stride);
    float* rows[1] = {weights.data()};
    OptimizerParams sgd;
    sgd.kind = OptimizerKind::kSgd;
    int64_t first_bad = -1;
    ASSERT_TRUE(
        ApplySparseUpdateCpu(sgd, rows, i.data() + row * stride, 1, stride, &first_bad).ok());
    EXPECT_EQ(first_bad, 0) << "dim " << dim;

    // A factor of 1e20 on both sides makes the prediction, so the error, -inf.
    Problem infinite = pr;
    for (int k = 0; k < dim; ++k) infinite.user_rows[k] = 1e20f;
    for (int64_t r = 0; r < infinite.num_items; ++r) {
      for (int k = 0; k < dim; ++k) infinite.item_rows[r * stride + k] = 1e20f;
    }
    EXPECT_FALSE(loss_finite(infinite, &u, &i)) << "dim " << dim;
    // One NaN rating: that sample's error is NaN, the other 199 are finite.
    Problem nan_rating = pr;
    nan_rating.ratings[117] = NAN;
    EXPECT_FALSE(loss_finite(nan_rating, &u, &i)) << "dim " << dim;
  }
}

TEST(MfTwoPassGradientTest, RejectsBadRangesAndIndicesWithoutWriting) {
  const Problem pr = RandomProblem(3, 6, 4, 3, 3);
  std::vector<float> errors(6, 7.0f), grads(pr.user_rows.size(), 7.0f);
  const MfBatch b = pr.Batch();
  EXPECT_EQ(MfErrorsCpu(b, -1, 3, errors.data()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MfErrorsCpu(b, 4, 3, errors.data()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MfErrorsCpu(b, 0, 7, errors.data()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MfErrorsCpu(b, 0, 6, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MfSideGradsCpu(b, nullptr, MfSide::kUser, grads.data()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(MfSideGradsCpu(b, errors.data(), MfSide::kUser, nullptr).code(),
            StatusCode::kInvalidArgument);
  std::vector<int32_t> bad_users = pr.user_index;
  bad_users[4] = 3;
  MfBatch bad = b;
  bad.user_index = bad_users.data();
  Status s = MfErrorsCpu(bad, 0, 6, errors.data());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sample 4"), std::string::npos) << s.message();
  EXPECT_EQ(MfSideGradsCpu(bad, errors.data(), MfSide::kItem, grads.data()).code(),
            StatusCode::kInvalidArgument);
  for (float v : errors) EXPECT_EQ(v, 7.0f);
  for (float v : grads) EXPECT_EQ(v, 7.0f);
  // The samples before the bad one are in range: that part of the split still works.
  EXPECT_TRUE(MfErrorsCpu(bad, 0, 4, errors.data()).ok());
}

TEST(MfPredictTest, MatchesBiasedDotProduct) {
  const Problem pr = RandomProblem(21, 50, 13, 4, 6);
  std::vector<float> predictions(50);
  ASSERT_TRUE(MfPredict(DeviceContext{}, pr.Batch(), predictions.data()).ok());
  const int dim = pr.dim;
  for (int s = 0; s < 50; ++s) {
    const float* p = &pr.user_rows[pr.user_index[s] * (dim + 1)];
    const float* q = &pr.item_rows[pr.item_index[s] * (dim + 1)];
    double expected = pr.global_mean + p[dim] + q[dim];
    for (int j = 0; j < dim; ++j) expected += static_cast<double>(p[j]) * q[j];
    EXPECT_NEAR(predictions[s], expected, 1e-5) << "sample " << s;
  }
}

TEST(MfPredictTest, IsUnclippedAndIgnoresRatings) {
  Problem pr;
  pr.dim = 1;
  pr.num_users = 1;
  pr.num_items = 1;
  pr.user_index = {0};
  pr.item_index = {0};
  pr.user_rows = {3.0f, 1.0f};
  pr.item_rows = {2.0f, 0.5f};
  pr.global_mean = 4.0f;
  MfBatch b = pr.Batch();
  b.num_samples = 1;  // no ratings vector
  b.ratings = nullptr;
  float prediction = 0.0f;
  ASSERT_TRUE(MfPredictCpu(b, &prediction).ok());
  EXPECT_FLOAT_EQ(prediction, 11.5f);  // 4 + 1 + 0.5 + 6, above any rating scale
}

TEST(MfPredictTest, RejectsInvalidArguments) {
  const Problem pr = RandomProblem(4, 3, 4, 2, 2);
  std::vector<float> predictions(3, 9.0f);
  EXPECT_EQ(MfPredictCpu(pr.Batch(), nullptr).code(), StatusCode::kInvalidArgument);
  MfBatch b = pr.Batch();
  b.dim = -1;
  EXPECT_EQ(MfPredictCpu(b, predictions.data()).code(), StatusCode::kInvalidArgument);
  std::vector<int32_t> bad_users = {0, 2, 1};
  b = pr.Batch();
  b.user_index = bad_users.data();
  EXPECT_EQ(MfPredictCpu(b, predictions.data()).code(), StatusCode::kInvalidArgument);
  for (float v : predictions) EXPECT_EQ(v, 9.0f);
}

#if !TESSERA_WITH_CUDA
TEST(MfGradientTest, CudaDeviceFailsWithoutCudaBuild) {
  DeviceContext ctx;
  ctx.device = Device::kCuda;
  MfBatch b;
  b.dim = 4;
  EXPECT_EQ(MfBatchGradient(ctx, b, nullptr, nullptr, nullptr).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(MfPredict(ctx, b, nullptr).code(), StatusCode::kFailedPrecondition);
}
#endif

}  // namespace
}  // namespace tessera::kernels
