#include "bench/fpsgd.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "tests/testing/test_util.h"

namespace tessera::bench {
namespace {

constexpr double kNoiseStd = 0.3;

// 2000 users x 500 items, rank 4, ratings 3 + p.q + N(0, kNoiseStd^2); ~150k ratings of which
// every tenth is a test rating. Written in LIBMF text ("user item rating") with sparse raw ids
// (x 7 + 3) so that the trainer's id remapping is exercised.
void WritePlanted(const std::string& train_path, const std::string& test_path) {
  constexpr int kUsers = 2000, kItems = 500, kRank = 4, kRatings = 150000;
  std::mt19937_64 rng(42);
  std::normal_distribution<double> factor(0.0, 0.7), noise(0.0, kNoiseStd);
  std::vector<double> p(kUsers * kRank), q(kItems * kRank);
  for (double& v : p) v = factor(rng);
  for (double& v : q) v = factor(rng);
  std::uniform_int_distribution<int> user(0, kUsers - 1), item(0, kItems - 1);
  std::ofstream train(train_path), test(test_path);
  for (int k = 0; k < kRatings; ++k) {
    const int u = user(rng), i = item(rng);
    double r = 3.0 + noise(rng);
    for (int f = 0; f < kRank; ++f) r += p[u * kRank + f] * q[i * kRank + f];
    (k % 10 == 0 ? test : train) << (u * 7 + 3) << ' ' << (i * 7 + 3) << ' ' << r << '\n';
  }
}

TEST(FpsgdTest, ReachesTheNoiseLevelOnAPlantedSet) {
  testing::TempDir dir;
  WritePlanted(dir.Join("train.txt"), dir.Join("test.txt"));
  FpsgdOptions o;
  o.dim = 8;
  o.threads = 2;
  o.blocks = 5;
  o.lr = 0.1f;
  o.l2 = 0.01f;
  o.l2_bias = 0.01f;
  auto trainer = FpsgdTrainer::Create(o);
  TS_ASSERT_OK(trainer.status());
  TS_ASSERT_OK((*trainer)->Load(dir.Join("train.txt"), dir.Join("test.txt")));
  EXPECT_EQ((*trainer)->num_users(), 2000);
  EXPECT_EQ((*trainer)->num_items(), 500);
  EXPECT_EQ((*trainer)->num_train() + (*trainer)->num_test(), 150000);
  std::vector<double> rmse;
  for (int epoch = 0; epoch < 30; ++epoch) {
    const FpsgdEpochStats s = (*trainer)->RunEpoch();
    EXPECT_EQ(s.updates, (*trainer)->num_train());
    rmse.push_back((*trainer)->TestRmse());
  }
  for (int epoch = 1; epoch < 5; ++epoch) {
    EXPECT_LT(rmse[epoch], rmse[epoch - 1]) << "epoch " << epoch;
  }
  EXPECT_LT(rmse.back(), 1.3 * kNoiseStd) << "first " << rmse.front();
  // Every block ran once per epoch.
  const BlockScheduler& scheduler = (*trainer)->scheduler();
  for (int b = 0; b < 25; ++b) EXPECT_EQ(scheduler.Count(b), 30) << "block " << b;
}

TEST(FpsgdTest, ResetRestartsFromTheInitialModel) {
  testing::TempDir dir;
  WritePlanted(dir.Join("train.txt"), dir.Join("test.txt"));
  FpsgdOptions o;
  o.dim = 16;  // a width without its own clone: the generic kernel
  o.threads = 1;
  auto trainer = FpsgdTrainer::Create(o);
  TS_ASSERT_OK(trainer.status());
  TS_ASSERT_OK((*trainer)->Load(dir.Join("train.txt"), dir.Join("test.txt")));
  const double initial = (*trainer)->TestRmse();
  (*trainer)->RunEpoch();
  const double trained = (*trainer)->TestRmse();
  EXPECT_NE(trained, initial);
  TS_ASSERT_OK((*trainer)->Reset(o));
  EXPECT_DOUBLE_EQ((*trainer)->TestRmse(), initial);
  (*trainer)->RunEpoch();  // one thread: the same steps in the same order
  EXPECT_DOUBLE_EQ((*trainer)->TestRmse(), trained);
}

TEST(BlockSchedulerTest, ConcurrentHoldersNeverShareABandAndEachBlockRunsOncePerEpoch) {
  constexpr int kBlocks = 7, kThreads = 3, kEpochs = 20;
  BlockScheduler scheduler(kBlocks, 7);
  std::vector<std::atomic<int>> row_holders(kBlocks), col_holders(kBlocks);
  std::atomic<int> conflicts{0}, handed{0};
  for (int epoch = 0; epoch < kEpochs; ++epoch) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int block; (block = scheduler.Acquire()) >= 0;) {
          const int r = block / kBlocks, c = block % kBlocks;
          if (row_holders[r].fetch_add(1) != 0) ++conflicts;
          if (col_holders[c].fetch_add(1) != 0) ++conflicts;
          for (int k = 0; k < 100; ++k) std::this_thread::yield();  // hold it a while
          row_holders[r].fetch_sub(1);
          col_holders[c].fetch_sub(1);
          ++handed;
          scheduler.Release(block);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(handed.load(), (epoch + 1) * kBlocks * kBlocks);
    scheduler.StartEpoch();
  }
  EXPECT_EQ(conflicts.load(), 0);
  for (int b = 0; b < kBlocks * kBlocks; ++b) EXPECT_EQ(scheduler.Count(b), kEpochs);
}

TEST(BlockSchedulerTest, HeldBlocksFormAPartialPermutation) {
  // Holding B blocks at once without releasing: they must use every row and column band once.
  constexpr int kBlocks = 5;
  BlockScheduler scheduler(kBlocks, 3);
  std::vector<int> rows(kBlocks), cols(kBlocks);
  std::vector<int> held;
  for (int k = 0; k < kBlocks; ++k) {
    const int block = scheduler.Acquire();
    ASSERT_GE(block, 0);
    ++rows[block / kBlocks];
    ++cols[block % kBlocks];
    held.push_back(block);
  }
  for (int k = 0; k < kBlocks; ++k) {
    EXPECT_EQ(rows[k], 1);
    EXPECT_EQ(cols[k], 1);
  }
  for (int block : held) scheduler.Release(block);
}

TEST(FpsgdTest, BadOptionsAndEmptyFilesAreInvalidArgument) {
  auto bad = [](void (*edit)(FpsgdOptions*)) {
    FpsgdOptions o;
    edit(&o);
    return FpsgdTrainer::Create(o).status().code();
  };
  EXPECT_EQ(bad([](FpsgdOptions* o) { o->dim = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](FpsgdOptions* o) { o->dim = -3; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](FpsgdOptions* o) { o->threads = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](FpsgdOptions* o) { o->blocks = -1; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](FpsgdOptions* o) { o->lr = 0; }), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad([](FpsgdOptions* o) { o->l2 = NAN; }), StatusCode::kInvalidArgument);
  testing::TempDir dir;
  { std::ofstream empty(dir.Join("empty.txt")); }
  auto trainer = FpsgdTrainer::Create(FpsgdOptions{});
  TS_ASSERT_OK(trainer.status());
  EXPECT_EQ((*trainer)->Load(dir.Join("empty.txt"), "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*trainer)->Load(dir.Join("missing.txt"), "").code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera::bench
