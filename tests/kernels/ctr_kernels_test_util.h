// Helpers of the CTR kernel tests (CPU and CUDA): random inputs, the scalar loss of the finite
// difference checks and tolerance comparisons. Test-only code: mismatches fail the calling test.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace tessera::kernels::test_util {

inline constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// `size` floats uniform in [lo, hi).
inline std::vector<float> Random(std::mt19937* rng, size_t size, float lo = -1.0f,
                                 float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(size);
  for (float& x : v) x = dist(*rng);
  return v;
}

// `size` row indices uniform in [0, num_rows).
inline std::vector<int32_t> RandomIndices(std::mt19937* rng, size_t size, int32_t num_rows) {
  std::uniform_int_distribution<int32_t> dist(0, num_rows - 1);
  std::vector<int32_t> v(size);
  for (int32_t& x : v) x = dist(*rng);
  return v;
}

// Whether a and b hold the same values bit for bit (empty vectors may hold a null data(), which
// memcmp must not get).
template <typename T>
bool SameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// sum_k r[k] * y[k] in double: the scalar loss whose gradient with respect to y is r.
inline double Dot(const std::vector<float>& r, const std::vector<float>& y) {
  double sum = 0.0;
  for (size_t k = 0; k < y.size(); ++k) sum += static_cast<double>(r[k]) * y[k];
  return sum;
}

// Expects actual[k] within tol * (1 + |expected[k]|) of expected[k] for every k.
inline void ExpectNear(const std::vector<float>& actual, const std::vector<double>& expected,
                       double tol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t k = 0; k < actual.size(); ++k) {
    EXPECT_NEAR(actual[k], expected[k], tol * (1.0 + std::fabs(expected[k])))
        << what << " element " << k;
  }
}

// Compares grad with central differences (loss(p + eps) - loss(p - eps)) / (2 eps) of `loss`
// for every element of *param. loss() must read *param. The step is taken in float, and the
// difference divided by the step that float actually took.
inline void ExpectMatchesFiniteDifferences(const std::function<double()>& loss,
                                           std::vector<float>* param,
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

}  // namespace tessera::kernels::test_util
