// NcclCollective under mpirun (ctest runs it with 2 ranks): bootstrapped over an MpiCollective on
// MPI_COMM_WORLD, as `mpirun tessera train --device cuda` builds it, each rank on the device of
// its local rank. Label gpu: every rank skips, alike, unless each rank of a host has a device of
// its own, so it runs on a multi-GPU machine and on the emulated device
// (TESSERA_CUDA_EMU_DEVICES=2), where NCCL's operations go through MPI. The binary exits 77 (ctest
// SKIP_RETURN_CODE) when every test skipped itself on every rank.
//
// Collective calls must stay in step across ranks: test bodies use EXPECT (not ASSERT) before a
// later collective call, so that a failure on one rank does not leave the others waiting.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <vector>

#include "tests/testing/collective_values.h"
#include "tests/testing/cuda_test_util.h"
#include "tests/testing/mpi_test_util.h"
#include "worker/mpi_collective.h"
#include "worker/nccl_collective.h"

namespace tessera::worker {
namespace {

using ::tessera::testing::BitIdentical;
using ::tessera::testing::DeviceVector;
using ::tessera::testing::RankOrderSum;
using ::tessera::testing::SpecialValues;
using ::tessera::testing::WideRangeValues;
using ::tessera::testing::WorldRank;
using ::tessera::testing::WorldSize;

// This rank's index among the ranks of its host (the device it takes), and their number.
void LocalRank(int* local_rank, int* local_size) {
  MPI_Comm host = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, WorldRank(), MPI_INFO_NULL, &host);
  MPI_Comm_rank(host, local_rank);
  MPI_Comm_size(host, local_size);
  MPI_Comm_free(&host);
}

class NcclMpiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int local_size = 1;
    LocalRank(&device_, &local_size);
    int devices = 0;
    if (!kernels::CheckCudaAvailable().ok() || cudaGetDeviceCount(&devices) != cudaSuccess) {
      devices = 0;
    }
    int enough = devices >= local_size ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &enough, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!enough) GTEST_SKIP() << "needs a CUDA device per rank of a host; this one has " << devices;
    auto host = MpiCollective::Create(MPI_COMM_WORLD);
    ASSERT_TRUE(host.ok()) << host.status().ToString();
    host_ = std::move(host).value();
    auto nccl = NcclCollective::Create(host_.get(), device_, nullptr);
    // Every rank reaches this point; none returns early before the others agree.
    ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
    nccl_ = std::move(nccl).value();
  }
  void TearDown() override {
    nccl_.reset();
    host_.reset();
  }

  int device_ = 0;
  std::unique_ptr<MpiCollective> host_;
  std::unique_ptr<NcclCollective> nccl_;
};

TEST_F(NcclMpiTest, RankAndSizeAreTheWorlds) {
  EXPECT_EQ(nccl_->rank(), WorldRank());
  EXPECT_EQ(nccl_->size(), WorldSize());
}

TEST_F(NcclMpiTest, AllReduceSumIsBitIdenticalAcrossRanksAndCloseToTheRankOrderSum) {
  const int rank = WorldRank();
  for (size_t count : {size_t{0}, size_t{1}, size_t{100003}}) {
    DeviceVector<float> data(WideRangeValues(count, 800 + rank));
    EXPECT_TRUE(nccl_->AllReduceSum(data.data(), count).ok());
    std::vector<float> host = data.ToHost();
    const std::vector<float> expected = RankOrderSum(count, WorldSize(), 800);
    EXPECT_EQ(host.size(), count);
    size_t far = 0;
    for (size_t i = 0; i < count && i < host.size(); ++i) {
      far += std::fabs(host[i] - expected[i]) > 1e-5f * (std::fabs(expected[i]) + 1e-3f);
    }
    EXPECT_EQ(far, 0u) << count;
    // Bit-identical across ranks: every rank's bytes against rank 0's.
    std::vector<float> rank0 = host;
    MPI_Bcast(rank0.data(), static_cast<int>(count), MPI_FLOAT, 0, MPI_COMM_WORLD);
    EXPECT_TRUE(BitIdentical(host, rank0)) << count;
  }
}

TEST_F(NcclMpiTest, BroadcastCarriesTheRootsBitsExactly) {
  for (int root = 0; root < WorldSize(); ++root) {
    DeviceVector<float> data(SpecialValues(static_cast<float>(WorldRank() + 1)));
    EXPECT_TRUE(nccl_->Broadcast(data.data(), 8, root).ok());
    EXPECT_TRUE(BitIdentical(data.ToHost(), SpecialValues(static_cast<float>(root + 1)))) << root;
  }
}

TEST_F(NcclMpiTest, AllGatherConcatenatesHostVectorsOfDifferentLengthsInRankOrder) {
  const int rank = WorldRank();
  std::vector<float> all;
  EXPECT_TRUE(nccl_->AllGather(std::vector<float>(rank, static_cast<float>(rank)), &all).ok());
  std::vector<float> expected;
  for (int r = 0; r < WorldSize(); ++r) expected.insert(expected.end(), r, static_cast<float>(r));
  EXPECT_EQ(all, expected);
  EXPECT_TRUE(nccl_->AllGather(SpecialValues(rank + 1.0f), &all).ok());
  expected.clear();
  for (int r = 0; r < WorldSize(); ++r) {
    const std::vector<float> mine = SpecialValues(r + 1.0f);
    expected.insert(expected.end(), mine.begin(), mine.end());
  }
  EXPECT_TRUE(BitIdentical(all, expected));
}

}  // namespace
}  // namespace tessera::worker
