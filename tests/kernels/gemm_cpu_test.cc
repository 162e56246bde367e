// CpuSgemm (oneDNN) against a double-precision reference for every transpose and for beta 0 and
// 1; its bits on a repeat; the per-thread product thread count; the CPUs of the affinity mask.
#include "kernels/gemm_cpu.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

namespace tessera::kernels {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// op(X)[r][c] of a row-major X whose rows are ld floats apart.
float At(const std::vector<float>& x, bool trans, int64_t ld, int64_t r, int64_t c) {
  return trans ? x[c * ld + r] : x[r * ld + c];
}

TEST(CpuSgemmTest, MatchesTheDefinitionForEveryTransposeAndBeta) {
  const int64_t m = 37, n = 29, k = 53;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (float beta : {0.0f, 1.0f}) {
        const int64_t lda = ta ? m : k, ldb = tb ? k : n;
        const std::vector<float> a = Random(m * k, 1), b = Random(k * n, 2);
        const std::vector<float> c0 = Random(m * n, 3);
        std::vector<float> c = c0;
        ASSERT_TRUE(
            CpuSgemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, beta, c.data(), n).ok());
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t col = 0; col < n; ++col) {
            double want = beta * static_cast<double>(c0[r * n + col]);
            for (int64_t j = 0; j < k; ++j) {
              want += 0.5 * At(a, ta, lda, r, j) * static_cast<double>(At(b, tb, ldb, j, col));
            }
            EXPECT_NEAR(c[r * n + col], want, 1e-4 * (1.0 + std::abs(want)))
                << "ta " << ta << " tb " << tb << " beta " << beta << " at " << r << "," << col;
          }
        }
      }
    }
  }
}

TEST(CpuSgemmTest, BetaZeroNeverReadsTheOutputAndARepeatGivesTheSameBits) {
  const int64_t m = 300, n = 200, k = 400;
  const std::vector<float> a = Random(m * k, 4), b = Random(k * n, 5);
  std::vector<float> first(m * n, NAN), second(m * n, 1e30f);
  ASSERT_TRUE(
      CpuSgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, first.data(), n).ok());
  ASSERT_TRUE(
      CpuSgemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, second.data(), n).ok());
  for (float v : first) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(first, second);
}

TEST(GemmThreadsTest, AreSetForTheCallingThreadOnly) {
  SetGemmThreads(1);
  EXPECT_EQ(GemmThreads(), 1);
  int other = 0;
  std::thread t([&] {
    SetGemmThreads(3);
    other = GemmThreads();
  });
  t.join();
  EXPECT_EQ(other, 3);
  EXPECT_EQ(GemmThreads(), 1);
  SetGemmThreads(0);  // at least one
  EXPECT_EQ(GemmThreads(), 1);
}

TEST(AvailableCpusTest, FollowsTheAffinityMaskNotTheMachine) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(AvailableCpus(), CPU_COUNT(&set));
  int first = 0;
  while (!CPU_ISSET(first, &set)) ++first;
  int restricted = 0;
  std::thread t([&] {  // a thread of its own, so the test's own mask stays as it was
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    restricted = AvailableCpus();
  });
  t.join();
  EXPECT_EQ(restricted, 1);
}

TEST(GemmIsaTest, NamesAnInstructionSet) {
  const std::string isa = GemmIsa();
  EXPECT_FALSE(isa.empty());
#if defined(__x86_64__)
  EXPECT_NE(isa, "generic");  // every x86-64 processor has at least SSE4.1 today
#endif
}

}  // namespace
}  // namespace tessera::kernels
