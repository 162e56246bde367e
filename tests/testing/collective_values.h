// Inputs and checks shared by the collective tests (in-process group, MPI, NCCL): inputs whose sum
// depends on the order of summation, the rank-order sum to compare with, special float values
// whose bits a broadcast must keep, and a bitwise comparison. Header-only, test-only.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace tessera::testing {

// Floats of widely different magnitudes, so that float addition order matters.
inline std::vector<float> WideRangeValues(size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<float> values(count);
  for (float& v : values) v = std::ldexp(mantissa(rng), exponent(rng));
  return values;
}

// WideRangeValues(count, seed + r) summed over r in [0, size) in rank order.
inline std::vector<float> RankOrderSum(size_t count, int size, unsigned seed) {
  std::vector<float> sum = WideRangeValues(count, seed);
  for (int r = 1; r < size; ++r) {
    const std::vector<float> x = WideRangeValues(count, seed + r);
    for (size_t i = 0; i < count; ++i) sum[i] += x[i];
  }
  return sum;
}

inline bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  // Empty vectors may hold null data(), which memcmp must not get (UBSan: nonnull).
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Values whose bits a broadcast must carry unchanged: a NaN with a payload, -0, a denormal, the
// infinities, and a few ordinary numbers tagged with `tag`.
inline std::vector<float> SpecialValues(float tag) {
  const uint32_t nan_bits = 0x7fa5a5a5u;  // a signalling NaN with a payload
  float nan;
  std::memcpy(&nan, &nan_bits, sizeof(nan));
  return {nan,
          -0.0f,
          std::numeric_limits<float>::denorm_min(),
          std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity(),
          tag,
          -tag * 3.25f,
          std::numeric_limits<float>::max()};
}

}  // namespace tessera::testing
