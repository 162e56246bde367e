// TS_WIDE_SIMD marks a CPU kernel that is also compiled for AVX-512 and AVX2 (GCC function
// multiversioning: the loader picks the widest clone the CPU runs); the rest of the build targets
// baseline x86-64 (SSE2), so one binary runs everywhere.
//
// The bits do not depend on the clone: the kernels' float arithmetic is IEEE add, multiply,
// divide and sqrt, each exactly rounded at any vector width; -ffp-contract=off (kernels/
// CMakeLists.txt) keeps multiply-adds unfused, and without -ffast-math no sum is reassociated.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define TS_WIDE_SIMD gnu::target_clones("avx512f", "avx2", "default")
#else
#define TS_WIDE_SIMD
#endif
