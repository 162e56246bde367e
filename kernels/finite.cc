#include "kernels/finite.h"

#include <cmath>

namespace tessera::kernels {

int64_t FindNonFinite(const float* values, int64_t n) {
  // Blocks of 16 KiB: one look at the lanes per block, the search only in a bad one.
  constexpr int64_t kBlock = 4096;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t count = n - begin < kBlock ? n - begin : kBlock;
    uint32_t flags = 0;
    for (int64_t i = begin; i < begin + count; ++i) flags |= NonFiniteFlag(values[i]);
    if (FlagsFinite(flags)) continue;
    for (int64_t i = begin; i < begin + count; ++i) {
      if (!std::isfinite(values[i])) return i;
    }
  }
  return n;
}

}  // namespace tessera::kernels
