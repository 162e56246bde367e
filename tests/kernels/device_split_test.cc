// The splitting entry points against the one-thread path, bit for bit: MfBatchGradient and
// ApplySparseUpdate on a DeviceContext with a helper thread (DeviceResources, cpu_threads 2) give
// exactly what MfBatchGradientCpu / ApplySparseUpdateCpu give, on sizes that do split (up to the
// 2^20-float threshold and past it, odd counts and dims, a single sample or row) and on sizes
// that do not (0, 1, odd). Also DeviceResources itself: what each option yields, and kCuda
// following CheckCudaAvailable (its clear message where no GPU can be used).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/device_resources.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "kernels/sparse_optimizer.h"
#include "tests/testing/mf_problem.h"

namespace tessera::kernels {
namespace {

using ::tessera::testing::MfProblem;
using ::tessera::testing::RandomMfProblem;

std::unique_ptr<DeviceResources> CpuResources(int threads) {
  DeviceOptions options;
  options.cpu_threads = threads;
  auto resources = DeviceResources::Create(options);
  EXPECT_TRUE(resources.ok()) << resources.status().ToString();
  return resources.ok() ? std::move(*resources) : nullptr;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  // Empty vectors may hold null data(), which memcmp must not get (UBSan: nonnull).
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST(DeviceResourcesTest, CpuThreadsGiveAHelperOnlyForTwo) {
  auto one = CpuResources(1);
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->context().device, Device::kCpu);
  EXPECT_EQ(one->context().helper, nullptr);
  EXPECT_EQ(one->helper(), nullptr);
  EXPECT_NE(one->context().scratch, nullptr);
  auto two = CpuResources(2);
  ASSERT_NE(two, nullptr);
  EXPECT_EQ(two->context().device, Device::kCpu);
  EXPECT_NE(two->context().helper, nullptr);
  EXPECT_EQ(two->helper(), two->context().helper);
  EXPECT_NE(two->context().scratch, nullptr);
  for (int threads : {0, 3, -1}) {
    DeviceOptions options;
    options.cpu_threads = threads;
    auto bad = DeviceResources::Create(options);
    ASSERT_FALSE(bad.ok()) << threads;
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("cpu_threads"), std::string::npos);
  }
}

// Without a usable GPU (or without CUDA in the build) kCuda fails with CheckCudaAvailable's
// reason, unchanged; with one it yields a kCuda context with its own stream and no CPU threads.
TEST(DeviceResourcesTest, CudaFollowsCheckCudaAvailable) {
  DeviceOptions options;
  options.device = Device::kCuda;
  options.cpu_threads = 2;  // not used by kCuda
  auto resources = DeviceResources::Create(options);
  const Status available = CheckCudaAvailable();
  if (available.ok()) {
    ASSERT_TRUE(resources.ok()) << resources.status().ToString();
    EXPECT_EQ((*resources)->context().device, Device::kCuda);
    EXPECT_EQ((*resources)->helper(), nullptr);
    EXPECT_NE((*resources)->context().stream, nullptr);
  } else {
    ASSERT_FALSE(resources.ok());
    EXPECT_EQ(resources.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(resources.status().message(), available.message());
  }
}

TEST(HostScratchTest, GrowsAndKeepsItsLargestSize) {
  HostScratch scratch;
  float* small = scratch.Floats(3);
  ASSERT_NE(small, nullptr);
  small[2] = 1.5f;
  float* large = scratch.Floats(1000);
  large[999] = 2.5f;
  EXPECT_EQ(scratch.Floats(10), large);  // no reallocation for a smaller request
}

// ---- MF gradient ----

struct MfCase {
  int64_t num_samples;
  int dim;
  int64_t num_users, num_items;
  bool splits;  // num_samples * dim >= 2^20
};

// Sizes around the threshold: 0, 1 and odd counts below it; exactly at it; odd counts and dims
// past it (so the halves differ by one sample); one sample of a very wide row (one half empty).
const MfCase kMfCases[] = {
    {0, 8, 0, 0, false},
    {0, 8, 3, 5, false},
    {1, 1, 1, 1, false},
    {7, 13, 3, 5, false},
    {32767, 32, 5001, 777, false},
    {32768, 32, 4099, 1023, true},
    {32769, 33, 9001, 3, true},
    {20001, 53, 1, 4097, true},
    {1, (1 << 20) + 1, 1, 1, true},
    {3, (1 << 19) + 1, 2, 1, true},
};

TEST(MfSplitGradientTest, WithAndWithoutHelperMatchOneThreadBitForBit) {
  auto one = CpuResources(1);
  auto two = CpuResources(2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  unsigned seed = 5;
  for (const MfCase& c : kMfCases) {
    const MfProblem pr = RandomMfProblem(++seed, c.num_samples, c.dim, c.num_users, c.num_items);
    const MfBatch b = pr.Batch();
    const std::string where =
        "samples " + std::to_string(c.num_samples) + " dim " + std::to_string(c.dim);
    EXPECT_FALSE(internal::MfGradientSplits(one->context(), b)) << where;
    EXPECT_EQ(internal::MfGradientSplits(two->context(), b), c.splits) << where;
    const size_t user_floats = pr.user_rows.size(), item_floats = pr.item_rows.size();
    std::vector<float> u_ref(user_floats, 9.0f), i_ref(item_floats, 9.0f);
    double sq_ref = -1.0;
    ASSERT_TRUE(MfBatchGradientCpu(b, u_ref.data(), i_ref.data(), &sq_ref).ok()) << where;
    for (const DeviceResources* r : {one.get(), two.get()}) {
      std::vector<float> u(user_floats, 7.0f), i(item_floats, 7.0f);
      double sq = -2.0;
      ASSERT_TRUE(MfBatchGradient(r->context(), b, u.data(), i.data(), &sq).ok()) << where;
      EXPECT_TRUE(SameBits(u, u_ref)) << where;
      EXPECT_TRUE(SameBits(i, i_ref)) << where;
      EXPECT_EQ(std::memcmp(&sq, &sq_ref, sizeof(double)), 0) << where << ": " << sq;
      // A null error sum is allowed on either path.
      ASSERT_TRUE(MfBatchGradient(r->context(), b, u.data(), i.data(), nullptr).ok()) << where;
      EXPECT_TRUE(SameBits(u, u_ref)) << where;
    }
  }
}

// The production path of the MF worker: the kCpu workspace on a two-thread context.
TEST(MfSplitGradientTest, CpuWorkspaceOnTwoThreadsMatchesOneThreadBitForBit) {
  auto two = CpuResources(2);
  ASSERT_NE(two, nullptr);
  auto ws = MfDeviceWorkspace::Create(two->context());
  ASSERT_TRUE(ws.ok()) << ws.status().ToString();
  // Successive batches of changing sizes through one workspace (the scratch grows and shrinks).
  unsigned seed = 40;
  for (int64_t n : {int64_t{40001}, int64_t{5}, int64_t{65537}, int64_t{0}, int64_t{32768}}) {
    const MfProblem pr = RandomMfProblem(++seed, n, 32, 2001, 501);
    const MfBatch b = pr.Batch();
    std::vector<float> u_ref(pr.user_rows.size()), i_ref(pr.item_rows.size());
    std::vector<float> u(pr.user_rows.size(), 3.0f), i(pr.item_rows.size(), 3.0f);
    double sq_ref = 0.0, sq = 1.0;
    ASSERT_TRUE(MfBatchGradientCpu(b, u_ref.data(), i_ref.data(), &sq_ref).ok());
    ASSERT_TRUE((*ws)->BatchGradient(b, u.data(), i.data(), &sq, nullptr).ok()) << n;
    EXPECT_TRUE(SameBits(u, u_ref)) << n;
    EXPECT_TRUE(SameBits(i, i_ref)) << n;
    EXPECT_EQ(sq, sq_ref) << n;
  }
}

// A bad index in the second half of a split batch: the same InvalidArgument as the one-thread
// kernel, and no gradient written.
TEST(MfSplitGradientTest, BadIndexIsRefusedWithoutWritingOnBothPaths) {
  auto two = CpuResources(2);
  ASSERT_NE(two, nullptr);
  MfProblem pr = RandomMfProblem(11, 40001, 32, 101, 57);
  pr.item_index[30000] = 57;  // num_items
  const MfBatch b = pr.Batch();
  ASSERT_TRUE(internal::MfGradientSplits(two->context(), b));
  std::vector<float> u(pr.user_rows.size(), 7.0f), i(pr.item_rows.size(), 7.0f);
  double sq = 7.0;
  const Status one_thread = MfBatchGradientCpu(b, u.data(), i.data(), &sq);
  const Status split = MfBatchGradient(two->context(), b, u.data(), i.data(), &sq);
  EXPECT_EQ(one_thread.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(split.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(split.message(), one_thread.message());
  EXPECT_NE(split.message().find("sample 30000"), std::string::npos) << split.message();
  for (float v : u) ASSERT_EQ(v, 7.0f);
  for (float v : i) ASSERT_EQ(v, 7.0f);
  EXPECT_EQ(sq, 7.0);
}

// ---- Sparse optimizer ----

OptimizerParams Params(OptimizerKind kind) {
  OptimizerParams p;
  p.kind = kind;
  p.lr = 0.1f;
  p.initial_accumulator = 0.1f;
  p.l1 = 0.01f;
  p.l2 = 0.1f;
  return p;
}

struct SparseCase {
  int64_t num_pushed;  // gradient rows in the update (rows repeat)
  int64_t num_table_rows;
  int dim;
  bool splits;  // num_pushed * dim >= 2^20
};

const SparseCase kSparseCases[] = {
    {0, 3, 8, false},
    {1, 1, 1, false},
    {7, 3, 13, false},
    {4095, 901, 256, false},
    {4096, 1501, 256, true},
    {4099, 1009, 257, true},
    {1, 1, (1 << 20) + 1, true},
    {3, 2, (1 << 19) + 3, true},
};

TEST(SparseSplitUpdateTest, WithAndWithoutHelperMatchOneThreadBitForBit) {
  auto one = CpuResources(1);
  auto two = CpuResources(2);
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  unsigned seed = 70;
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdagrad, OptimizerKind::kAdam,
                             OptimizerKind::kFtrl, OptimizerKind::kRowwiseAdagrad}) {
    const OptimizerParams p = Params(kind);
    for (const SparseCase& c : kSparseCases) {
      const std::string where = std::string(OptimizerName(kind)) + " rows " +
                                std::to_string(c.num_pushed) + " dim " + std::to_string(c.dim);
      EXPECT_FALSE(internal::SparseUpdateSplits(one->context(), c.num_pushed, c.dim)) << where;
      EXPECT_EQ(internal::SparseUpdateSplits(two->context(), c.num_pushed, c.dim), c.splits)
          << where;
      std::mt19937 rng(++seed);
      std::uniform_real_distribution<float> value(-1.0f, 1.0f);
      const int64_t row_floats = c.dim + OptimizerStateFloats(kind, c.dim);
      std::vector<float> table(c.num_table_rows * row_floats);
      for (int64_t r = 0; r < c.num_table_rows; ++r) {
        for (int j = 0; j < c.dim; ++j) table[r * row_floats + j] = value(rng);
        InitOptimizerStateForRow(p, &table[r * row_floats], c.dim);
      }
      // Rows in random order, repeated, so a row gets several gradients in one update.
      std::vector<int64_t> which(c.num_pushed);
      for (int64_t& r : which) r = static_cast<int64_t>(rng() % c.num_table_rows);
      std::vector<float> grads(c.num_pushed * c.dim);
      for (float& g : grads) g = value(rng);
      std::vector<float> ref = table;
      std::vector<float*> ref_rows;
      for (int64_t r : which) ref_rows.push_back(&ref[r * row_floats]);
      ASSERT_TRUE(ApplySparseUpdateCpu(p, ref_rows.data(), grads.data(), c.num_pushed, c.dim).ok())
          << where;
      for (const DeviceResources* res : {one.get(), two.get()}) {
        std::vector<float> got = table;
        std::vector<float*> rows;
        for (int64_t r : which) rows.push_back(&got[r * row_floats]);
        ASSERT_TRUE(
            ApplySparseUpdate(res->context(), p, rows.data(), grads.data(), c.num_pushed, c.dim)
                .ok())
            << where;
        EXPECT_TRUE(SameBits(got, ref)) << where;
      }
    }
  }
}

TEST(SparseSplitUpdateTest, BadArgumentsAreRefusedWithoutWritingOnBothPaths) {
  auto two = CpuResources(2);
  ASSERT_NE(two, nullptr);
  constexpr int kDim = 1 << 20;
  std::vector<float> row(kDim, 1.0f), grad(kDim, 1.0f);
  float* rows[] = {row.data()};
  OptimizerParams bad = Params(OptimizerKind::kSgd);
  bad.lr = NAN;
  ASSERT_TRUE(internal::SparseUpdateSplits(two->context(), 1, kDim));
  const Status split = ApplySparseUpdate(two->context(), bad, rows, grad.data(), 1, kDim);
  EXPECT_EQ(split.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(split.message(), ApplySparseUpdateCpu(bad, rows, grad.data(), 1, kDim).message());
  for (float v : row) ASSERT_EQ(v, 1.0f);
  EXPECT_EQ(
      ApplySparseUpdate(two->context(), Params(OptimizerKind::kSgd), rows, grad.data(), -1, kDim)
          .code(),
      StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::kernels
