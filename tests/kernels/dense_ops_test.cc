// The CTR glue kernels of kernels/dense_ops.h and the memory helpers of kernels/device_memory.h
// on the CPU, against hand-computed values.
#include "kernels/dense_ops.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/device.h"
#include "kernels/device_memory.h"

namespace tessera::kernels {
namespace {

const DeviceContext kCpu{};

TEST(DenseOpsTest, ColumnSumsAddTheRowsOfEachColumn) {
  const std::vector<float> m = {1, 2, 3,  //
                                4, 5, 6};
  std::vector<float> out(3, 42.0f);
  ASSERT_TRUE(ColumnSum(kCpu, m.data(), 2, 3, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{5, 7, 9}));
  const std::vector<float> scale = {2, -1};
  ASSERT_TRUE(WeightedColumnSum(kCpu, scale.data(), m.data(), 2, 3, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{-2, -1, 0}));
  // No rows: zeros.
  ASSERT_TRUE(WeightedColumnSum(kCpu, nullptr, nullptr, 0, 3, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>(3, 0.0f)));
  EXPECT_FALSE(ColumnSum(kCpu, m.data(), -1, 3, out.data()).ok());
  EXPECT_FALSE(WeightedColumnSum(kCpu, nullptr, m.data(), 2, 3, out.data()).ok());
}

TEST(DenseOpsTest, CopyColumnsMovesOrAddsABlockOfColumns) {
  const std::vector<float> src = {1, 2, 3,  //
                                  4, 5, 6};
  std::vector<float> dst(2 * 4, 0.0f);
  // Columns 1..2 of src into columns 2..3 of dst.
  ASSERT_TRUE(CopyColumns(kCpu, src.data(), 3, 1, dst.data(), 4, 2, 2, 2, false).ok());
  EXPECT_EQ(dst, (std::vector<float>{0, 0, 2, 3, 0, 0, 5, 6}));
  ASSERT_TRUE(CopyColumns(kCpu, src.data(), 3, 0, dst.data(), 4, 2, 2, 2, true).ok());
  EXPECT_EQ(dst, (std::vector<float>{0, 0, 3, 5, 0, 0, 9, 11}));
  // A block that does not fit its matrix.
  EXPECT_FALSE(CopyColumns(kCpu, src.data(), 3, 2, dst.data(), 4, 0, 2, 2, false).ok());
  EXPECT_FALSE(CopyColumns(kCpu, src.data(), 3, 0, dst.data(), 4, 3, 2, 2, false).ok());
}

TEST(DenseOpsTest, RepeatElementsAndFirstOrderLogits) {
  const std::vector<float> x = {1, -2};
  std::vector<float> out(6);
  ASSERT_TRUE(RepeatElements(kCpu, x.data(), 2, 3, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{1, 1, 1, -2, -2, -2}));
  EXPECT_FALSE(RepeatElements(kCpu, x.data(), 2, 0, out.data()).ok());

  const float bias = 0.5f;
  const std::vector<float> terms = {1, 2, 3, 4};  // 2 samples x 2 bags
  const std::vector<float> w = {10, -1};
  const std::vector<float> dense = {1, 2, 3, 4};  // 2 samples x 2 features
  std::vector<float> logits(2);
  ASSERT_TRUE(
      FirstOrderLogits(kCpu, &bias, terms.data(), 2, w.data(), dense.data(), 2, logits.data(), 2)
          .ok());
  EXPECT_EQ(logits, (std::vector<float>{0.5f + 3 + 8, 0.5f + 7 + 26}));
  ASSERT_TRUE(
      FirstOrderLogits(kCpu, &bias, nullptr, 0, nullptr, nullptr, 0, logits.data(), 2).ok());
  EXPECT_EQ(logits, (std::vector<float>{0.5f, 0.5f}));
  EXPECT_FALSE(
      FirstOrderLogits(kCpu, &bias, nullptr, 2, nullptr, nullptr, 0, logits.data(), 2).ok());
}

TEST(DeviceMemoryTest, CpuBuffersGrowAndCopiesAreImmediate) {
  DeviceBuffer buffer(Device::kCpu, "test buffer");
  ASSERT_TRUE(buffer.Reserve(10).ok());
  EXPECT_GE(buffer.capacity(), 10u);
  const size_t first = buffer.capacity();
  ASSERT_TRUE(buffer.Reserve(first + 1).ok());
  EXPECT_GE(buffer.capacity(), first + first / 2);  // grows geometrically
  const std::vector<float> host = {1, 2, 3};
  auto d = buffer.Get<float>(3);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(CopyToDevice(kCpu, *d, host.data(), sizeof(float) * 3).ok());
  std::vector<float> back(3);
  ASSERT_TRUE(CopyToHost(kCpu, back.data(), *d, sizeof(float) * 3).ok());
  EXPECT_EQ(back, host);
  ASSERT_TRUE(FillZeros(kCpu, *d, sizeof(float) * 2).ok());
  ASSERT_TRUE(CopyToHost(kCpu, back.data(), *d, sizeof(float) * 3).ok());
  EXPECT_EQ(back, (std::vector<float>{0, 0, 3}));
  EXPECT_TRUE(SyncDevice(kCpu).ok());
}

}  // namespace
}  // namespace tessera::kernels
