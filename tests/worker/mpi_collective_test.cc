// MpiCollective over MPI_COMM_WORLD (NcclCollective's: nccl_collective_mpi_test.cc). Run by ctest
// under `mpirun -np 3` (label mpi); any rank count works. Every rank builds every rank's input
// from a seed, so each can compute the expected rank-order sum itself and compare bit for bit;
// the in-process group on the same inputs must give the same bits.
//
// Collective calls must stay in step across ranks: test bodies use EXPECT (not ASSERT) before a
// later collective call, so that a failure on one rank does not leave the others waiting.
#include "worker/mpi_collective.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <thread>
#include <vector>

#include "tests/testing/collective_values.h"
#include "tests/testing/mpi_test_util.h"
#include "worker/inproc_collective.h"

namespace tessera::worker {
namespace {

using ::tessera::testing::BitIdentical;
using ::tessera::testing::RankOrderSum;
using ::tessera::testing::WideRangeValues;
using ::tessera::testing::WorldRank;
using ::tessera::testing::WorldSize;

std::unique_ptr<MpiCollective> MustCreate(MPI_Comm comm, const MpiCollectiveOptions& options = {}) {
  auto c = MpiCollective::Create(comm, options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

TEST(MpiCollectiveTest, RankAndSizeAreTheCommunicators) {
  auto c = MustCreate(MPI_COMM_WORLD);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->rank(), WorldRank());
  EXPECT_EQ(c->size(), WorldSize());
}

TEST(MpiCollectiveTest, CreateRejectsANullCommunicatorAndAZeroSegment) {
  EXPECT_EQ(MpiCollective::Create(MPI_COMM_NULL).status().code(), StatusCode::kInvalidArgument);
  MpiCollectiveOptions options;
  options.segment_floats = 0;
  EXPECT_EQ(MpiCollective::Create(MPI_COMM_WORLD, options).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(MpiCollectiveTest, AllReduceSumIsTheRankOrderSumOnEveryRank) {
  auto c = MustCreate(MPI_COMM_WORLD);
  ASSERT_NE(c, nullptr);
  for (size_t count :
       {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{1000}, size_t{4099}, size_t{1} << 19}) {
    const unsigned seed = 7000 + static_cast<unsigned>(count);
    SCOPED_TRACE("count=" + std::to_string(count) + " seed=" + std::to_string(seed));
    std::vector<float> data = WideRangeValues(count, seed + c->rank());
    EXPECT_TRUE(c->AllReduceSum(data.data(), count).ok());
    EXPECT_TRUE(BitIdentical(data, RankOrderSum(count, c->size(), seed)));
  }
}

// Segments smaller than the rank count leave some ranks with empty chunks.
TEST(MpiCollectiveTest, SegmentedAllReduceSumGivesTheSameBits) {
  const size_t count = 1001;
  const unsigned seed = 99;
  const std::vector<float> expected = RankOrderSum(count, WorldSize(), seed);
  for (int64_t segment : {1, 2, 7, 1000, 1001, 5000}) {
    SCOPED_TRACE("segment_floats=" + std::to_string(segment));
    MpiCollectiveOptions options;
    options.segment_floats = segment;
    auto c = MustCreate(MPI_COMM_WORLD, options);
    ASSERT_NE(c, nullptr);
    std::vector<float> data = WideRangeValues(count, seed + c->rank());
    EXPECT_TRUE(c->AllReduceSum(data.data(), count).ok());
    EXPECT_TRUE(BitIdentical(data, expected));
  }
}

TEST(MpiCollectiveTest, AllReduceSumEqualsTheInProcessGroupBitForBit) {
  auto c = MustCreate(MPI_COMM_WORLD);
  ASSERT_NE(c, nullptr);
  const size_t count = 12345;
  const unsigned seed = 31;
  std::vector<float> data = WideRangeValues(count, seed + c->rank());
  EXPECT_TRUE(c->AllReduceSum(data.data(), count).ok());
  // The same inputs through W threads of this process.
  InProcessCollectiveGroup group(c->size(), std::chrono::milliseconds(30000));
  std::vector<std::vector<float>> buffers(c->size());
  std::vector<std::thread> threads;
  for (int r = 0; r < c->size(); ++r) {
    buffers[r] = WideRangeValues(count, seed + r);
    threads.emplace_back(
        [&, r] { EXPECT_TRUE(group.Member(r).AllReduceSum(buffers[r].data(), count).ok()); });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(BitIdentical(data, buffers[0]));
}

TEST(MpiCollectiveTest, RepeatedAllReduceSumIsReproducible) {
  auto c = MustCreate(MPI_COMM_WORLD);
  ASSERT_NE(c, nullptr);
  const size_t count = 50000;
  std::vector<float> first = WideRangeValues(count, 5 + c->rank());
  std::vector<float> second = first;
  EXPECT_TRUE(c->AllReduceSum(first.data(), count).ok());
  EXPECT_TRUE(c->AllReduceSum(second.data(), count).ok());
  EXPECT_TRUE(BitIdentical(first, second));
}

TEST(MpiCollectiveTest, AllGatherConcatenatesUnequalLengthsInRankOrder) {
  auto c = MustCreate(MPI_COMM_WORLD);
  ASSERT_NE(c, nullptr);
  // Rank r contributes 3r floats r*1000, r*1000+1, ... (rank 0 none).
  std::vector<float> expected, local;
  for (int r = 0; r < c->size(); ++r) {
    for (int i = 0; i < 3 * r; ++i) {
      expected.push_back(static_cast<float>(r * 1000 + i));
      if (r == c->rank()) local.push_back(static_cast<float>(r * 1000 + i));
    }
  }
  std::vector<float> all(5, -1.0f);
  EXPECT_TRUE(c->AllGather(local, &all).ok());
  EXPECT_EQ(all, expected);
  EXPECT_TRUE(c->AllGather(local, &local).ok());  // output may be the input
  EXPECT_EQ(local, expected);
  std::vector<float> none = {1.0f};
  EXPECT_TRUE(c->AllGather({}, &none).ok());
  EXPECT_TRUE(none.empty());
}

TEST(MpiCollectiveTest, BroadcastCopiesTheRootsBufferToEveryRank) {
  for (int64_t segment : {int64_t{1} << 24, int64_t{5}}) {
    MpiCollectiveOptions options;
    options.segment_floats = segment;
    auto c = MustCreate(MPI_COMM_WORLD, options);
    ASSERT_NE(c, nullptr);
    for (int root = 0; root < c->size(); ++root) {
      SCOPED_TRACE("root=" + std::to_string(root) + " segment=" + std::to_string(segment));
      std::vector<float> data = WideRangeValues(333, 400 + c->rank());
      EXPECT_TRUE(c->Broadcast(data.data(), data.size(), root).ok());
      EXPECT_TRUE(BitIdentical(data, WideRangeValues(333, 400 + root)));
    }
  }
}

TEST(MpiCollectiveTest, BadArgumentsAreRejectedOnEveryRankWithoutCommunicating) {
  auto c = MustCreate(MPI_COMM_WORLD);
  ASSERT_NE(c, nullptr);
  float x = 1.0f;
  EXPECT_EQ(c->Broadcast(&x, 1, c->size()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->Broadcast(&x, 1, -1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->AllReduceSum(nullptr, 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c->AllGather({}, nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(x, 1.0f);
}

// As launch/ will do it: world rank 0 is not a worker; the others split off a workers' comm.
TEST(MpiCollectiveTest, WorksOnASplitWorkersCommunicator) {
  const int world_rank = WorldRank();
  MPI_Comm workers = MPI_COMM_NULL;
  ASSERT_EQ(
      MPI_Comm_split(MPI_COMM_WORLD, world_rank == 0 ? MPI_UNDEFINED : 1, world_rank, &workers),
      MPI_SUCCESS);
  if (world_rank == 0) {
    EXPECT_EQ(workers, MPI_COMM_NULL);
    EXPECT_EQ(MpiCollective::Create(workers).status().code(), StatusCode::kInvalidArgument);
    return;
  }
  {
    auto c = MustCreate(workers);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->rank(), world_rank - 1);
    EXPECT_EQ(c->size(), WorldSize() - 1);
    std::vector<float> data = WideRangeValues(777, 60 + c->rank());
    EXPECT_TRUE(c->AllReduceSum(data.data(), data.size()).ok());
    EXPECT_TRUE(BitIdentical(data, RankOrderSum(777, c->size(), 60)));
  }
  MPI_Comm_free(&workers);
}

}  // namespace
}  // namespace tessera::worker
