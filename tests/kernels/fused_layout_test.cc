// The CTR step's fusions against the unfused passes they replace (issue 16, point 3): the pool
// writing the field embeddings straight into the MLP input x0 (BagLayout) and its backward
// reading them from x0's gradient, and the FM term read from x0 and added into the logits and
// into x0's gradient. Each must give the bits of the separate passes.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/dense_ops.h"
#include "kernels/device.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "tests/kernels/ctr_kernels_test_util.h"

namespace tessera::kernels {
namespace {

using test_util::Random;
using test_util::RandomIndices;
using test_util::SameBits;

// A multi-hot batch: `fields` bags per row, bag k holding k % 4 keys (empty bags included).
struct Bags {
  int64_t batch = 0;
  int fields = 0, dim = 0, extra = 0;  // extra: the dense columns after the embeddings in x0
  int64_t num_rows = 23;
  std::vector<float> rows;
  std::vector<int64_t> offsets;
  std::vector<int32_t> keys;
  std::vector<float> weights;
  int64_t num_bags() const { return batch * fields; }
  int emb_cols() const { return fields * dim; }
  int x0_cols() const { return fields * dim + extra; }
  BagLayout layout() const { return {fields, x0_cols()}; }
};

Bags MakeBags(unsigned seed, int64_t batch, int fields, int dim, int extra) {
  std::mt19937 rng(seed);
  Bags b;
  b.batch = batch;
  b.fields = fields;
  b.dim = dim;
  b.extra = extra;
  b.rows = Random(&rng, b.num_rows * dim);
  b.offsets = {0};
  for (int64_t k = 0; k < b.num_bags(); ++k) b.offsets.push_back(b.offsets.back() + k % 4);
  b.keys = RandomIndices(&rng, b.offsets.back(), static_cast<int32_t>(b.num_rows));
  b.weights = Random(&rng, b.offsets.back());
  return b;
}

const DeviceContext kCpu{};

TEST(FusedLayoutTest, PoolIntoX0IsThePoolThenTheCopyAndLeavesTheOtherColumns) {
  unsigned seed = 0;
  for (int64_t batch : {0, 1, 5, 3000}) {
    for (int dim : {1, 16, 33}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + " dim " + std::to_string(dim));
      const Bags b = MakeBags(++seed, batch, 3, dim, 5);
      // Unfused: pool into a dense buffer, then copy it into x0's first columns.
      std::vector<float> pooled(b.num_bags() * dim);
      std::vector<float> unfused(batch * b.x0_cols(), 7.0f);
      ASSERT_TRUE(EmbeddingPool(kCpu, b.rows.data(), b.num_rows, b.offsets.data(), b.keys.data(),
                                b.weights.data(), pooled.data(), b.num_bags(), dim)
                      .ok());
      ASSERT_TRUE(CopyColumns(kCpu, pooled.data(), b.emb_cols(), 0, unfused.data(), b.x0_cols(), 0,
                              batch, b.emb_cols(), false)
                      .ok());
      // Fused: the pool writes x0 in place; the dense columns keep their 7s.
      std::vector<float> fused(batch * b.x0_cols(), 7.0f);
      ASSERT_TRUE(EmbeddingPool(kCpu, b.rows.data(), b.num_rows, b.offsets.data(), b.keys.data(),
                                b.weights.data(), fused.data(), b.num_bags(), dim, b.layout())
                      .ok());
      EXPECT_TRUE(SameBits(fused, unfused));
    }
  }
}

TEST(FusedLayoutTest, PoolBackwardFromX0GradientIsTheCopyThenTheBackward) {
  unsigned seed = 100;
  for (int64_t batch : {0, 1, 5, 3000}) {
    for (int dim : {1, 16, 33}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + " dim " + std::to_string(dim));
      const Bags b = MakeBags(++seed, batch, 4, dim, 3);
      std::mt19937 rng(seed);
      const std::vector<float> dx0 = Random(&rng, batch * b.x0_cols());
      std::vector<float> demb(b.num_bags() * dim);
      ASSERT_TRUE(CopyColumns(kCpu, dx0.data(), b.x0_cols(), 0, demb.data(), b.emb_cols(), 0, batch,
                              b.emb_cols(), false)
                      .ok());
      const std::vector<float> start = Random(&rng, b.num_rows * dim);
      std::vector<float> unfused = start, fused = start;
      ASSERT_TRUE(EmbeddingPoolBackward(kCpu, b.offsets.data(), b.keys.data(), b.weights.data(),
                                        demb.data(), unfused.data(), b.num_rows, b.num_bags(), dim)
                      .ok());
      ASSERT_TRUE(EmbeddingPoolBackward(kCpu, b.offsets.data(), b.keys.data(), b.weights.data(),
                                        dx0.data(), fused.data(), b.num_rows, b.num_bags(), dim,
                                        nullptr, b.layout())
                      .ok());
      EXPECT_TRUE(SameBits(fused, unfused));
    }
  }
}

TEST(FusedLayoutTest, FmReadFromX0AndAddedIntoItsOutputsIsTheSeparateSteps) {
  unsigned seed = 200;
  for (int64_t batch : {0, 1, 7, 2000}) {
    for (int dim : {1, 16, 70}) {
      SCOPED_TRACE("batch " + std::to_string(batch) + " dim " + std::to_string(dim));
      std::mt19937 rng(++seed);
      const int fields = 5, extra = 4, x0_cols = fields * dim + extra;
      const std::vector<float> x0 = Random(&rng, batch * x0_cols);
      const std::vector<float> logits = Random(&rng, batch), dy = Random(&rng, batch);
      const std::vector<float> dx0 = Random(&rng, batch * x0_cols);
      // Unfused: the embeddings copied out of x0, FM into its own buffers, then the additions.
      std::vector<float> emb(batch * fields * dim);
      ASSERT_TRUE(CopyColumns(kCpu, x0.data(), x0_cols, 0, emb.data(), fields * dim, 0, batch,
                              fields * dim, false)
                      .ok());
      std::vector<float> fm(batch), demb(emb.size());
      ASSERT_TRUE(FmForward(kCpu, emb.data(), fm.data(), batch, fields, dim).ok());
      ASSERT_TRUE(FmBackward(kCpu, emb.data(), dy.data(), demb.data(), batch, fields, dim).ok());
      std::vector<float> unfused_logits = logits, unfused_dx0 = dx0;
      ASSERT_TRUE(
          CopyColumns(kCpu, fm.data(), 1, 0, unfused_logits.data(), 1, 0, batch, 1, true).ok());
      ASSERT_TRUE(CopyColumns(kCpu, demb.data(), fields * dim, 0, unfused_dx0.data(), x0_cols, 0,
                              batch, fields * dim, true)
                      .ok());
      // Fused: read in place, added into the logits and into dx0's embedding columns.
      std::vector<float> fused_logits = logits, fused_dx0 = dx0;
      ASSERT_TRUE(
          FmForward(kCpu, x0.data(), fused_logits.data(), batch, fields, dim, x0_cols, true).ok());
      ASSERT_TRUE(FmBackward(kCpu, x0.data(), dy.data(), fused_dx0.data(), batch, fields, dim,
                             x0_cols, x0_cols, true)
                      .ok());
      EXPECT_TRUE(SameBits(fused_logits, unfused_logits));
      EXPECT_TRUE(SameBits(fused_dx0, unfused_dx0));
      // Overwriting with strides: the dense results, the other columns left alone.
      std::vector<float> strided(batch * x0_cols, 3.0f);
      ASSERT_TRUE(FmBackward(kCpu, x0.data(), dy.data(), strided.data(), batch, fields, dim,
                             x0_cols, x0_cols, false)
                      .ok());
      for (int64_t r = 0; r < batch; ++r) {
        for (int c = 0; c < x0_cols; ++c) {
          const float expected = c < fields * dim ? demb[r * fields * dim + c] : 3.0f;
          ASSERT_EQ(strided[r * x0_cols + c], expected) << "row " << r << " column " << c;
        }
      }
    }
  }
}

TEST(FusedLayoutTest, LayoutsAndStridesShorterThanTheEmbeddingsAreRejected) {
  const float rows[4] = {1, 2, 3, 4};
  const int64_t offsets[3] = {0, 1, 2};
  const int32_t keys[2] = {0, 1};
  float out[16] = {};
  // Two bags of dim 2 per row need a row stride of at least 4.
  EXPECT_EQ(EmbeddingPoolCpu(rows, 2, offsets, keys, nullptr, out, 2, 2, BagLayout{2, 3}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingPoolCpu(rows, 2, offsets, keys, nullptr, out, 2, 2, BagLayout{0, 0}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(EmbeddingPoolBackwardCpu(offsets, keys, nullptr, out, out + 8, 2, 2, 2, BagLayout{2, 3})
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(EmbeddingPoolCpu(rows, 2, offsets, keys, nullptr, out, 2, 2, BagLayout{2, 4}).ok());
  float y[1] = {};
  EXPECT_EQ(FmForwardCpu(out, y, 1, 2, 2, 3).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FmBackwardCpu(out, y, out + 8, 1, 2, 2, 4, 3).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(FmForwardCpu(out, y, 1, 2, 2, 6).ok());
}

}  // namespace
}  // namespace tessera::kernels
