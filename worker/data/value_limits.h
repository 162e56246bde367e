// The values Tessera accepts from a data file, whatever its format: ratings, CTR dense features
// and libsvm/libffm feature values must be finite and within +-kMaxAbsDataValue. The bound keeps
// a model's arithmetic in float range: a rating of 3e38 is a finite float, but its squared error
// overflows to inf at the first step, and a feature value that large turns a pooled embedding
// into inf. A million is far beyond any rating scale or normalised feature; larger raw counts
// belong in a log or bucket transform before training (the Criteo integers get one: ctr_reader.h).
// Pure functions: thread-safe.
#pragma once

#include <cmath>

namespace tessera::worker {

inline constexpr float kMaxAbsDataValue = 1e6f;

// True when v is finite and |v| <= kMaxAbsDataValue (false for NaN and +-inf).
inline bool IsValidDataValue(float v) { return std::fabs(v) <= kMaxAbsDataValue; }

}  // namespace tessera::worker
