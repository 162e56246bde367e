// CpuParallelRanges (kernels/cpu_parallel.h): its pieces cut [0, n) once each, aligned; and every
// CPU kernel cut over the OpenMP team gives the bits it gives on one thread.
#include "kernels/cpu_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <random>
#include <utility>
#include <vector>

#include "kernels/cross.h"
#include "kernels/dense.h"
#include "kernels/dense_ops.h"
#include "kernels/dense_optimizer.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "kernels/gemm_cpu.h"
#include "tests/kernels/ctr_kernels_test_util.h"

namespace tessera::kernels {
namespace {

// n floats uniform in [-1, 1) from `seed`.
std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  return test_util::Random(&rng, n);
}

// kernels/cpu_parallel.cc runs every loop serially under TSan (Clang names it so; g++ defines
// __SANITIZE_THREAD__).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TS_TEST_UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(TS_TEST_UNDER_TSAN)
constexpr bool kUnderThreadSanitizer = true;
#else
constexpr bool kUnderThreadSanitizer = false;
#endif

// Restores the calling thread's team size when a test ends.
class TeamSize {
 public:
  TeamSize() : saved_(GemmThreads()) {}
  ~TeamSize() { SetGemmThreads(saved_); }

 private:
  const int saved_;
};

std::vector<std::pair<int64_t, int64_t>> Pieces(int64_t n, int64_t grain, int64_t align) {
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> pieces;
  CpuParallelFor(n, grain, align, [&](int64_t begin, int64_t end) {
    std::lock_guard<std::mutex> lock(mu);
    pieces.emplace_back(begin, end);
  });
  std::sort(pieces.begin(), pieces.end());
  return pieces;
}

TEST(CpuParallelTest, PiecesCutTheWorkOnceAndAligned) {
  TeamSize restore;
  SetGemmThreads(2);
  for (int64_t n : {1, 15, 16, 17, 100, 1000, 4097}) {
    for (int64_t align : {1, 16}) {
      const auto pieces = Pieces(n, 1, align);
      ASSERT_FALSE(pieces.empty());
      int64_t next = 0;
      for (size_t r = 0; r < pieces.size(); ++r) {
        EXPECT_EQ(pieces[r].first, next) << "n " << n;
        EXPECT_LT(pieces[r].first, pieces[r].second) << "n " << n;
        if (r + 1 < pieces.size()) {
          EXPECT_EQ((pieces[r].second - pieces[r].first) % align, 0);
        }
        next = pieces[r].second;
      }
      EXPECT_EQ(next, n);
    }
  }
  // Enough work for two threads: more than one piece (one under TSan, which keeps it serial).
  EXPECT_EQ(Pieces(1000, 100, 1).size() > 1, !kUnderThreadSanitizer);
}

TEST(CpuParallelTest, SmallWorkAndOneThreadRunOnTheCaller) {
  TeamSize restore;
  SetGemmThreads(2);
  EXPECT_EQ(Pieces(100, 100, 1), (std::vector<std::pair<int64_t, int64_t>>{{0, 100}}));
  EXPECT_TRUE(Pieces(0, 1, 1).empty());
  SetGemmThreads(1);
  EXPECT_EQ(Pieces(100000, 1, 16), (std::vector<std::pair<int64_t, int64_t>>{{0, 100000}}));
}

// Runs `kernel` (which fills its outputs from scratch each call) on 1 and on 2 threads and
// returns both outputs.
template <typename Kernel>
std::pair<std::vector<float>, std::vector<float>> OnOneAndTwoThreads(const Kernel& kernel) {
  TeamSize restore;
  SetGemmThreads(1);
  std::vector<float> one = kernel();
  SetGemmThreads(2);
  std::vector<float> two = kernel();
  return {std::move(one), std::move(two)};
}

void ExpectSameBits(const std::pair<std::vector<float>, std::vector<float>>& runs,
                    const char* what) {
  ASSERT_EQ(runs.first.size(), runs.second.size()) << what;
  EXPECT_TRUE(test_util::SameBits(runs.first, runs.second))
      << what << ": the bits differ between 1 and 2 threads";
}

// Shapes of a CTR batch large enough that every kernel below takes two ranges.
constexpr int64_t kBatch = 3000;
constexpr int kFields = 7, kDim = 16, kCols = 400;
constexpr int64_t kRows = 500;  // unique embedding rows

TEST(CpuParallelTest, EmbeddingAndFmKernelsGiveTheSameBitsOnOneAndTwoThreads) {
  const std::vector<float> rows = Random(kRows * kDim, 1);
  std::mt19937 rng(2);
  // One-hot bags for kBatch rows, and one more row for the odd batch below.
  std::vector<int32_t> indices((kBatch + 1) * kFields);
  for (int32_t& i : indices) i = static_cast<int32_t>(rng() % kRows);
  std::vector<int64_t> offsets((kBatch + 1) * kFields + 1);
  for (size_t k = 0; k < offsets.size(); ++k) offsets[k] = static_cast<int64_t>(k);
  const std::vector<float> weights = Random(indices.size(), 3);
  const int64_t bags = kBatch * kFields;

  ExpectSameBits(OnOneAndTwoThreads([&] {
                   std::vector<float> out(bags * kDim);
                   EXPECT_TRUE(EmbeddingGatherCpu(rows.data(), kRows, indices.data(), out.data(),
                                                  kBatch, kFields, kDim)
                                   .ok());
                   return out;
                 }),
                 "EmbeddingGather");
  ExpectSameBits(OnOneAndTwoThreads([&] {
                   std::vector<float> out(bags * kDim);
                   EXPECT_TRUE(EmbeddingPoolCpu(rows.data(), kRows, offsets.data(), indices.data(),
                                                weights.data(), out.data(), bags, kDim)
                                   .ok());
                   return out;
                 }),
                 "EmbeddingPool");
  // Into the first columns of a wider matrix, with 3001 rows of 7 bags: the threads' pieces then
  // start in the middle of a row.
  const int64_t odd_batch = kBatch + 1, odd_bags = odd_batch * kFields;
  const BagLayout layout{kFields, kFields * kDim + 5};
  ExpectSameBits(OnOneAndTwoThreads([&] {
                   std::vector<float> out(odd_batch * layout.row_stride, 7.0f);
                   EXPECT_TRUE(EmbeddingPoolCpu(rows.data(), kRows, offsets.data(), indices.data(),
                                                weights.data(), out.data(), odd_bags, kDim, layout)
                                   .ok());
                   return out;
                 }),
                 "EmbeddingPool into a wider matrix");
  const std::vector<float> v = Random(bags * kDim, 4), dy = Random(kBatch, 5);
  ExpectSameBits(OnOneAndTwoThreads([&] {
                   std::vector<float> y(kBatch);
                   EXPECT_TRUE(FmForwardCpu(v.data(), y.data(), kBatch, kFields, kDim).ok());
                   return y;
                 }),
                 "FmForward");
  ExpectSameBits(
      OnOneAndTwoThreads([&] {
        std::vector<float> dv(bags * kDim);
        EXPECT_TRUE(FmBackwardCpu(v.data(), dy.data(), dv.data(), kBatch, kFields, kDim).ok());
        return dv;
      }),
      "FmBackward");
}

TEST(CpuParallelTest, DenseKernelsGiveTheSameBitsOnOneAndTwoThreads) {
  const std::vector<float> y = Random(kBatch * kCols, 6), dy = Random(kBatch * kCols, 7);
  ExpectSameBits(OnOneAndTwoThreads([&] {
                   std::vector<float> out(kBatch * kCols + kCols);
                   EXPECT_TRUE(ReluBackwardColumnSumCpu(y.data(), dy.data(), out.data(),
                                                        out.data() + kBatch * kCols, kBatch, kCols)
                                   .ok());
                   return out;
                 }),
                 "ReluBackwardColumnSum");
  ExpectSameBits(OnOneAndTwoThreads([&] {
                   std::vector<float> sum(kCols);
                   internal::ColumnSumCpu(dy.data(), kBatch, kCols, sum.data());
                   return sum;
                 }),
                 "ColumnSum");
  for (bool accumulate : {false, true}) {
    ExpectSameBits(OnOneAndTwoThreads([&] {
                     std::vector<float> dst = Random(kBatch * (kCols + 9), 8);
                     EXPECT_TRUE(CopyColumnsCpu(y.data(), kCols, 3, dst.data(), kCols + 9, 5,
                                                kBatch, kCols - 3, accumulate)
                                     .ok());
                     return dst;
                   }),
                   "CopyColumns");
  }
  // A DCN-v2 cross layer, forward and backward (products and element-wise parts).
  const int dim = 96;
  const int64_t batch = 1000;
  const std::vector<float> x0 = Random(batch * dim, 9), xl = Random(batch * dim, 10);
  const std::vector<float> w = Random(dim * dim, 11), b = Random(dim, 12);
  const std::vector<float> dout = Random(batch * dim, 13);
  ExpectSameBits(
      OnOneAndTwoThreads([&] {
        std::vector<float> zy(2 * batch * dim);
        EXPECT_TRUE(CrossForwardCpu(x0.data(), xl.data(), w.data(), b.data(), zy.data(),
                                    zy.data() + batch * dim, batch, dim)
                        .ok());
        std::vector<float> grads(3 * batch * dim + dim * dim + dim);
        std::vector<float> workspace(CrossBackwardWorkspaceFloats(batch, dim));
        float* dx0 = grads.data();
        float* dxl = dx0 + batch * dim;
        float* dw = dxl + batch * dim;
        EXPECT_TRUE(CrossBackwardCpu(x0.data(), xl.data(), w.data(), zy.data(), dout.data(), dx0,
                                     dxl, dw, dw + dim * dim, workspace.data(), batch, dim)
                        .ok());
        grads.insert(grads.end(), zy.begin(), zy.end());
        return grads;
      }),
      "CrossForward + CrossBackward");
}

TEST(CpuParallelTest, DenseOptimizersGiveTheSameBitsOnOneAndTwoThreads) {
  const int64_t count = 200003;  // not a multiple of the 16-float blocks
  const std::vector<float> w0 = Random(count, 14), g = Random(count, 15);
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam}) {
    OptimizerParams p;
    p.kind = kind;
    p.lr = 0.01f;
    ExpectSameBits(OnOneAndTwoThreads([&] {
                     std::vector<float> w = w0;
                     DenseOptimizerState state;
                     EXPECT_TRUE(InitDenseOptimizerState(p, count, &state).ok());
                     for (int step = 0; step < 3; ++step) {
                       EXPECT_TRUE(ApplyDenseUpdateCpu(p, w.data(), g.data(), count, &state).ok());
                     }
                     w.insert(w.end(), state.slots.begin(), state.slots.end());
                     return w;
                   }),
                   OptimizerName(kind));
  }
}

// The blocked column sum: the plain row-order sum up to one block of rows, and within float
// rounding of a double sum above it.
TEST(CpuParallelTest, BlockedColumnSumsAreThePlainSumWithinOneBlockAndCloseAbove) {
  TeamSize restore;
  SetGemmThreads(2);
  for (int64_t rows : {1, 255, 256, 257, 4096}) {
    const int cols = 37;
    const std::vector<float> m = Random(rows * cols, 16);
    std::vector<float> sum(cols);
    internal::ColumnSumCpu(m.data(), rows, cols, sum.data());
    for (int j = 0; j < cols; ++j) {
      float plain = 0.0f;
      double exact = 0.0, magnitude = 0.0;
      for (int64_t i = 0; i < rows; ++i) {
        plain += m[i * cols + j];
        exact += m[i * cols + j];
        magnitude += std::abs(m[i * cols + j]);
      }
      if (rows <= 256) {
        EXPECT_EQ(sum[j], plain) << "rows " << rows << " column " << j;
      } else {
        EXPECT_NEAR(sum[j], exact, 1e-6 * magnitude * 4) << "rows " << rows << " column " << j;
      }
    }
  }
}

}  // namespace
}  // namespace tessera::kernels
