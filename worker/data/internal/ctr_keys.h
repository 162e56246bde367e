// How a CTR row's categorical values become keys, the pieces that HashFeature and CriteoBucket
// (worker/data/ctr_schema.h) and the text parsers (ctr_text_parse.h) share: FNV-1a over the
// value's bytes, a per-field salt and the SplitMix64 finaliser (core/splitmix64.h). Every key of
// every data set depends on these bits. Internal to worker/data/. Thread-safe.
#pragma once

#include <array>
#include <cstdint>

#include "core/splitmix64.h"

namespace tessera::worker::internal {

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

inline uint64_t FieldSalt(uint64_t seed, uint32_t field) {
  return SplitMix64(seed ^ SplitMix64(field));
}

// HashFeature(seed, field, "") for the field with this salt.
inline uint64_t EmptyValueKey(uint64_t salt) { return SplitMix64(salt ^ kFnvOffset); }

// CriteoBucket's thresholds: BucketThresholds()[b - 1] = ceil(e^sqrt(b)), the smallest integer
// x with ln(x)^2 >= b, for b = 1..491 (the last below 2^32). Computed in double: every e^sqrt(b)
// here is at least 7.7e-12 (relative) away from an integer, thousands of ulps, so any libm
// within a few ulps gives this exact table (its sum is pinned in a test).
inline constexpr int kNumBuckets = 491;
const std::array<int64_t, kNumBuckets>& BucketThresholds();

}  // namespace tessera::worker::internal
