// Counter-based random numbers for deterministic row initialisation: the value of element j of
// the row of (seed, table, key) is a pure function of those four numbers, so it does not depend
// on which server creates the row, when, or on which device. TS_HD: shared by CPU and CUDA.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/splitmix64.h"
#include "kernels/hd.h"

namespace tessera::kernels {

// The one SplitMix64 finaliser (core/splitmix64.h), also callable as kernels::SplitMix64.
using ::tessera::SplitMix64;

// Stream id of one row: mixes seed, table and key so that nearby keys get unrelated streams.
TS_HD uint64_t RowStream(uint64_t seed, uint32_t table, uint64_t key) {
  return SplitMix64(SplitMix64(seed ^ (static_cast<uint64_t>(table) << 32)) ^ key);
}

// Uniform in [0, 1) from the top 24 bits, exact in float.
TS_HD float CounterUniform(uint64_t stream, uint32_t counter) {
  uint64_t bits = SplitMix64(stream + 0xD1B54A32D192ED03ull * (counter + 1ull));
  return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller on two counters (2j, 2j+1), with the cosine branch.
TS_HD float CounterNormal(uint64_t stream, uint32_t counter) {
  float u1 = CounterUniform(stream, 2u * counter);
  float u2 = CounterUniform(stream, 2u * counter + 1u);
  u1 = u1 < 1e-7f ? 1e-7f : u1;
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795865f * u2);
}

}  // namespace tessera::kernels
