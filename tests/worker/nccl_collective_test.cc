// NcclCollective in one process: 2 worker threads, one device each, bootstrapped over an
// InProcessCollectiveGroup (as `tessera train --device cuda --workers 2` builds it). Label gpu;
// skipped without 2 usable CUDA devices, so it runs on a 2-GPU machine and on the emulated device
// (TESSERA_CUDA_EMU_DEVICES=2), where NCCL's operations go through the in-process group.
#include "worker/nccl_collective.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/collective_values.h"
#include "tests/testing/cuda_test_util.h"
#include "worker/inproc_collective.h"

namespace tessera::worker {
namespace {

using ::tessera::testing::BitIdentical;
using ::tessera::testing::DeviceVector;
using ::tessera::testing::SpecialValues;

constexpr int kWorkers = 2;

// What one worker thread holds: its NCCL collective and its stream (on its device).
struct Worker {
  cudaStream_t stream = nullptr;
  std::unique_ptr<NcclCollective> nccl;
  Status created;
};

class NcclInProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TS_SKIP_WITHOUT_CUDA_DEVICE();
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < kWorkers) {
      GTEST_SKIP() << "needs " << kWorkers << " CUDA devices; have " << devices;
    }
  }
  void TearDown() override {
    for (int r = 0; r < kWorkers; ++r) {
      workers_[r].nccl.reset();
      if (workers_[r].stream != nullptr) {
        cudaSetDevice(r);
        cudaStreamDestroy(workers_[r].stream);
      }
    }
  }

  // Creates every worker's collective concurrently (ncclCommInitRank waits for all ranks);
  // worker r on device devices[r].
  void Create(const std::vector<int>& devices = {0, 1}) {
    Run([&](int r) {
      EXPECT_EQ(cudaStreamCreateWithFlags(&workers_[r].stream, cudaStreamNonBlocking), cudaSuccess);
      auto created = NcclCollective::Create(&group_.Member(r), devices[r], workers_[r].stream);
      workers_[r].created = created.status();
      if (created.ok()) workers_[r].nccl = std::move(created).value();
    });
  }
  void CreateOrFail() {
    Create();
    for (int r = 0; r < kWorkers; ++r) {
      ASSERT_TRUE(workers_[r].created.ok()) << r << ": " << workers_[r].created.ToString();
    }
  }
  // Runs fn(rank) on one thread per worker with device `rank` current, as the job does.
  void Run(const std::function<void(int)>& fn) {
    std::vector<std::thread> threads;
    for (int r = 0; r < kWorkers; ++r) {
      threads.emplace_back([&fn, r] {
        EXPECT_EQ(cudaSetDevice(r), cudaSuccess);
        fn(r);
      });
    }
    for (std::thread& t : threads) t.join();
  }

  InProcessCollectiveGroup group_{kWorkers, std::chrono::milliseconds(30000)};
  Worker workers_[kWorkers];
};

TEST(NcclCollectiveTest, CreateWithoutAHostCollectiveIsInvalidArgument) {
  EXPECT_EQ(NcclCollective::Create(nullptr, 0, nullptr).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(NcclInProcessTest, RankAndSizeAreTheHostCollectives) {
  CreateOrFail();
  for (int r = 0; r < kWorkers; ++r) {
    EXPECT_EQ(workers_[r].nccl->rank(), r);
    EXPECT_EQ(workers_[r].nccl->size(), kWorkers);
  }
}

TEST_F(NcclInProcessTest, AllReduceSumOfDeviceMemoryIsBitIdenticalOnEveryWorker) {
  CreateOrFail();
  // 0 and 1 elements, and more than one NCCL chunk.
  for (size_t count : {size_t{0}, size_t{1}, size_t{100003}}) {
    std::vector<std::vector<float>> results(kWorkers);
    Run([&](int r) {
      DeviceVector<float> data(testing::WideRangeValues(count, 800 + r));
      EXPECT_TRUE(workers_[r].nccl->AllReduceSum(data.data(), count).ok());
      results[r] = data.ToHost();
    });
    const std::vector<float> expected = testing::RankOrderSum(count, kWorkers, 800);
    ASSERT_EQ(results[0].size(), count);
    for (size_t i = 0; i < count; ++i) {
      ASSERT_NEAR(results[0][i], expected[i], 1e-5f * (std::fabs(expected[i]) + 1e-3f)) << i;
    }
    EXPECT_TRUE(BitIdentical(results[0], results[1])) << count;
  }
}

TEST_F(NcclInProcessTest, BroadcastCarriesTheRootsBitsExactly) {
  CreateOrFail();
  for (int root = 0; root < kWorkers; ++root) {
    std::vector<std::vector<float>> results(kWorkers);
    Run([&](int r) {
      DeviceVector<float> data(SpecialValues(static_cast<float>(r + 1)));
      EXPECT_TRUE(workers_[r].nccl->Broadcast(data.data(), 8, root).ok());
      results[r] = data.ToHost();
    });
    const std::vector<float> expected = SpecialValues(static_cast<float>(root + 1));
    for (int r = 0; r < kWorkers; ++r) EXPECT_TRUE(BitIdentical(results[r], expected)) << r;
  }
}

TEST_F(NcclInProcessTest, BroadcastFromARootOutsideTheWorkersIsInvalidArgument) {
  CreateOrFail();
  DeviceVector<float> data(std::vector<float>(4, 1.0f));
  EXPECT_EQ(workers_[0].nccl->Broadcast(data.data(), 4, kWorkers).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(NcclInProcessTest, AllGatherConcatenatesHostVectorsOfDifferentLengthsInRankOrder) {
  CreateOrFail();
  std::vector<std::vector<float>> results(kWorkers);
  // Worker 0 gives nothing, worker 1 three values; then both the special values.
  Run([&](int r) {
    std::vector<float> local(static_cast<size_t>(3 * r), 10.0f * r);
    if (!local.empty()) local[0] = -1.5f;
    EXPECT_TRUE(workers_[r].nccl->AllGather(local, &results[r]).ok());
  });
  const std::vector<float> expected = {-1.5f, 10.0f, 10.0f};
  for (int r = 0; r < kWorkers; ++r) EXPECT_EQ(results[r], expected) << r;
  Run([&](int r) {
    EXPECT_TRUE(workers_[r].nccl->AllGather(SpecialValues(r + 1.0f), &results[r]).ok());
  });
  std::vector<float> both = SpecialValues(1.0f);
  const std::vector<float> second = SpecialValues(2.0f);
  both.insert(both.end(), second.begin(), second.end());
  for (int r = 0; r < kWorkers; ++r) EXPECT_TRUE(BitIdentical(results[r], both)) << r;
}

// One worker cannot start (a device it does not have): every worker's Create fails, none waits.
TEST_F(NcclInProcessTest, OneWorkersFailureFailsEveryWorkersCreate) {
  Create({0, 99});
  EXPECT_FALSE(workers_[0].created.ok());
  EXPECT_NE(workers_[0].created.message().find("1 of 2 workers could not start NCCL"),
            std::string::npos)
      << workers_[0].created.ToString();
  EXPECT_FALSE(workers_[1].created.ok());
  EXPECT_NE(workers_[1].created.message().find("cudaSetDevice(99)"), std::string::npos)
      << workers_[1].created.ToString();
}

#if TESSERA_CUDA_EMULATION
// On the emulated device NCCL runs through the host collective: its failure (here the group's
// abort, as the job does when another worker fails) comes back with the group's Status, and the
// collective stays failed.
TEST_F(NcclInProcessTest, EmulatedHostCollectivesFailureComesBackAsItsStatus) {
  CreateOrFail();
  group_.Abort("worker 1 failed");
  DeviceVector<float> data(std::vector<float>(16, 1.0f));
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  const Status s = workers_[0].nccl->AllReduceSum(data.data(), 16);
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s.ToString();
  EXPECT_NE(s.message().find("worker 1 failed"), std::string::npos) << s.ToString();
  EXPECT_EQ(workers_[0].nccl->AllReduceSum(data.data(), 16).code(), StatusCode::kAborted);
}
#endif

}  // namespace
}  // namespace tessera::worker
