// SplitMix64's finaliser (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number
// generators"): a bijection on uint64 with good avalanche, the one mixer behind Tessera's
// counter-based random numbers (kernels/random_math.h), the worker's seeds and the data
// library's feature hashing and generators (worker/data/). Every generated file, every hashed
// key and every initial row depends on these exact bits: never change them.
//
// Callable from CUDA device code as well (kernels/ includes this header from .cu files); core/
// cannot use kernels/hd.h, so the header spells the qualifiers itself.
//
// Not the shard map's Mix64 (core/shard_map.h), which is MurmurHash3's finaliser and decides
// every key's slot.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TS_SPLITMIX64_QUALIFIERS __host__ __device__ __forceinline__
#else
#define TS_SPLITMIX64_QUALIFIERS inline
#endif

namespace tessera {

TS_SPLITMIX64_QUALIFIERS uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace tessera

#undef TS_SPLITMIX64_QUALIFIERS
