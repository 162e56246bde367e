// The emulated CUDA device itself (kernels/cuda_emu): that it catches the kernel bugs it exists to
// catch (a missing __syncthreads, a barrier in divergent code, a kernel that relies on an order),
// that its warp exchanges are lane-synchronous, and that its streams, copies, memory, cuBLAS and
// NCCL behave as the real ones do where Tessera depends on them. Built only in an emulated build
// (label cuda_emu).
#include "cuda_emu/cuda_emu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cuda_util.cuh"
#include "nccl.h"
#include "tests/testing/cuda_test_util.h"

namespace {

using ::tessera::testing::DeviceVector;

constexpr int kBlock = 64;

// Block sum through shared memory: thread 0 adds up what every thread wrote. With the barrier it
// is correct; without it thread 0 reads words the others may not have written yet.
__global__ void BlockSumKernel(const float* in, float* out, bool with_barrier) {
  TS_SHARED(float, partial, kBlock);
  partial[threadIdx.x] = in[blockIdx.x * kBlock + threadIdx.x];
  if (with_barrier) __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int t = 0; t < kBlock; ++t) sum += partial[t];
    out[blockIdx.x] = sum;
  }
}

// True when the launch succeeded; *sums gets the three block sums.
bool RunBlockSum(bool with_barrier, std::vector<float>* sums) {
  std::vector<float> in(3 * kBlock);
  std::iota(in.begin(), in.end(), 1.0f);
  DeviceVector<float> d_in(in), d_out(3);
  TS_LAUNCH_COOPERATIVE(BlockSumKernel, 3, kBlock, nullptr, d_in.data(), d_out.data(),
                        with_barrier);
  const cudaError_t error = cudaDeviceSynchronize();
  *sums = d_out.ToHost();
  return error == cudaSuccess;
}

TEST(CudaEmuTest, BlockSumWithBarrierIsRightUnderEverySchedule) {
  for (uint64_t seed : {1, 2, 3, 99}) {
    cuda_emu::SetScheduleSeed(seed);
    std::vector<float> sums;
    ASSERT_TRUE(RunBlockSum(/*with_barrier=*/true, &sums)) << "seed " << seed;
    for (int b = 0; b < 3; ++b) {
      const float first = b * kBlock + 1.0f, last = (b + 1) * kBlock;
      EXPECT_EQ(sums[b], (first + last) * kBlock / 2) << "block " << b << " seed " << seed;
    }
  }
}

TEST(CudaEmuTest, MissingSyncthreadsIsReportedAsARace) {
  const int64_t faults_before = cuda_emu::KernelFaults();
  std::vector<float> sums;
  EXPECT_FALSE(RunBlockSum(/*with_barrier=*/false, &sums))
      << "the launch must fail: thread 0 reads shared words other threads wrote without a "
         "barrier between";
  EXPECT_EQ(cuda_emu::KernelFaults(), faults_before + 1);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchFailure);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the error is not sticky";
}

// Half of every warp waits at __syncthreads while the other half waits in a full-warp shuffle
// for it: a hang on a GPU, a reported deadlock here.
__global__ void DivergentBarrierKernel(float* out) {
  if (threadIdx.x % 32 < 16) {
    out[threadIdx.x] = 1.0f;
    __syncthreads();
  } else {
    out[threadIdx.x] = 2.0f + __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  }
}

TEST(CudaEmuTest, BarrierInDivergentCodeIsReportedAsADeadlock) {
  DeviceVector<float> d_out(kBlock);
  TS_LAUNCH_COOPERATIVE(DivergentBarrierKernel, 1, kBlock, nullptr, d_out.data());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
}

// Each thread takes a ticket after the barrier: the order of the tickets is the schedule's.
__global__ void TicketKernel(int* counter, int* ticket_of_thread) {
  __syncthreads();
  ticket_of_thread[threadIdx.x] = atomicAdd(counter, 1);
}

std::vector<int> Tickets(uint64_t seed) {
  cuda_emu::SetScheduleSeed(seed);
  DeviceVector<int> d_counter(std::vector<int>{0}), d_tickets(kBlock);
  TS_LAUNCH_COOPERATIVE(TicketKernel, 1, kBlock, nullptr, d_counter.data(), d_tickets.data());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return d_tickets.ToHost();
}

TEST(CudaEmuTest, ThreadOrderAfterABarrierDependsOnTheSeedAndOnlyOnIt) {
  const std::vector<int> a = Tickets(7), b = Tickets(8), again = Tickets(7);
  EXPECT_EQ(a, again) << "the same seed gives the same schedule";
  EXPECT_NE(a, b) << "another seed gives another order, so order-dependent kernels show it";
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int t = 0; t < kBlock; ++t) ASSERT_EQ(sorted[t], t);
}

// Warp exchanges: each lane gets the partner's value of the same round, whatever order the
// lanes run in.
__global__ void ShuffleKernel(int* xor_out, int* down_out, int* sync_out, unsigned* ballot_out,
                              float* sum_out) {
  const int lane = threadIdx.x % 32;
  xor_out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 5);
  down_out[threadIdx.x] = __shfl_down_sync(0xffffffffu, static_cast<int>(threadIdx.x), 3);
  sync_out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 31 - lane);
  ballot_out[threadIdx.x] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  sum_out[threadIdx.x] = tessera::kernels::cuda::WarpSum(static_cast<float>(threadIdx.x));
}

TEST(CudaEmuTest, WarpShufflesAndVotesAreLaneSynchronous) {
  constexpr int kThreads = 48;  // a full warp and a partial one
  DeviceVector<int> d_xor(kThreads), d_down(kThreads), d_sync(kThreads);
  DeviceVector<unsigned> d_ballot(kThreads);
  DeviceVector<float> d_sum(kThreads);
  TS_LAUNCH_COOPERATIVE(ShuffleKernel, 1, kThreads, nullptr, d_xor.data(), d_down.data(),
                        d_sync.data(), d_ballot.data(), d_sum.data());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto xor_out = d_xor.ToHost(), down_out = d_down.ToHost(), sync_out = d_sync.ToHost();
  const auto ballot = d_ballot.ToHost();
  const auto sum = d_sum.ToHost();
  unsigned expected_ballot = 0;
  for (int lane = 0; lane < 32; lane += 3) expected_ballot |= 1u << lane;
  for (int t = 0; t < 32; ++t) {
    EXPECT_EQ(xor_out[t], t ^ 5) << t;
    EXPECT_EQ(down_out[t], t + 3 < 32 ? t + 3 : t) << t;
    EXPECT_EQ(sync_out[t], 31 - t) << t;
    EXPECT_EQ(ballot[t], expected_ballot) << t;
    EXPECT_EQ(sum[t], 31.0f * 32 / 2) << t;
  }
}

__global__ void BarrierInPlainLaunchKernel(float* out) {
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

TEST(CudaEmuDeathTest, BarrierInAnIndependentLaunchStopsWithItsName) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        DeviceVector<float> d_out(32);
        TS_LAUNCH(BarrierInPlainLaunchKernel, 1, 32, nullptr, d_out.data());
        (void)cudaDeviceSynchronize();
      },
      "BarrierInPlainLaunchKernel, launched with TS_LAUNCH, uses __syncthreads");
}

__global__ void OutOfBoundsSharedKernel(float* out) {
  TS_SHARED(float, tile, 16);
  tile[threadIdx.x] = 1.0f;
  out[threadIdx.x] = tile[threadIdx.x];
}

TEST(CudaEmuDeathTest, SharedMemoryOutOfBoundsStops) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        DeviceVector<float> d_out(32);
        TS_LAUNCH_COOPERATIVE(OutOfBoundsSharedKernel, 1, 32, nullptr, d_out.data());
        (void)cudaDeviceSynchronize();
      },
      "tile\\[[0-9]+\\] out of bounds \\(16 elements\\)");
}

__global__ void FillKernel(float* out, int64_t n, float value) {
  for (int64_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    out[i] = value;
  }
}

TEST(CudaEmuTest, StreamsRunLazilyAndInTheOrderEventsImpose) {
  cudaStream_t a = nullptr, b = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 4 * sizeof(float)), cudaSuccess);
  std::fill_n(pinned, 4, -1.0f);
  DeviceVector<float> d(4);
  TS_LAUNCH(FillKernel, 1, 32, a, d.data(), 4, 3.0f);
  cudaEvent_t filled = nullptr;
  ASSERT_EQ(cudaEventCreate(&filled), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(filled, a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, filled), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, d.data(), 4 * sizeof(float), cudaMemcpyDeviceToHost, b),
            cudaSuccess);
  EXPECT_EQ(pinned[0], -1.0f) << "a host that reads before waiting must not see the result";
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(pinned[0], 3.0f) << "waiting on b ran a's kernel first (the event)";
  EXPECT_EQ(pinned[3], 3.0f);
  // A pageable destination makes the copy synchronous, as in CUDA.
  TS_LAUNCH(FillKernel, 1, 32, a, d.data(), 4, 5.0f);
  std::vector<float> pageable(4, -1.0f);
  ASSERT_EQ(
      cudaMemcpyAsync(pageable.data(), d.data(), 4 * sizeof(float), cudaMemcpyDeviceToHost, a),
      cudaSuccess);
  EXPECT_EQ(pageable[2], 5.0f);
  EXPECT_EQ(cudaEventDestroy(filled), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
}

TEST(CudaEmuTest, DeviceMemoryIsCheckedAndLimited) {
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 8), cudaSuccess);
  uint32_t word = 0;
  std::memcpy(&word, p, 4);
  EXPECT_EQ(word, 0xffffffffu) << "fresh device memory is garbage (NaN), not zero";
  std::vector<float> host(4);
  EXPECT_EQ(cudaMemcpy(host.data(), p, 16, cudaMemcpyDeviceToHost), cudaErrorInvalidValue)
      << "16 bytes read from an 8-byte allocation";
  EXPECT_EQ(cudaMemcpy(p, host.data(), 8, cudaMemcpyDeviceToHost), cudaErrorInvalidValue)
      << "source and destination swapped";
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidValue);
  size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, total + 1), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_NE(std::string(prop.name).find("emulated"), std::string::npos);
  EXPECT_EQ(prop.totalGlobalMem, total);
}

// Column-major reference: C = alpha op(A) op(B) + beta C.
std::vector<float> ReferenceGemm(bool ta, bool tb, int m, int n, int k, float alpha,
                                 const std::vector<float>& a, const std::vector<float>& b,
                                 float beta, std::vector<float> c) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      double sum = 0;
      for (int p = 0; p < k; ++p) {
        const float av = ta ? a[i * k + p] : a[p * m + i];
        const float bv = tb ? b[p * n + j] : b[j * k + p];
        sum += static_cast<double>(av) * bv;
      }
      c[j * m + i] = static_cast<float>(alpha * sum + beta * c[j * m + i]);
    }
  }
  return c;
}

TEST(CudaEmuTest, CublasSgemmIsColumnMajorAndTf32RoundsOnlyWhenAsked) {
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const int m = 5, n = 3, k = 7;
  std::vector<float> a(m * k), b(k * n), c(m * n, 0.5f);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 1.0f + 1e-4f * static_cast<float>(i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.25f * static_cast<float>(i) - 1.0f;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      DeviceVector<float> d_a(a), d_b(b), d_c(c);
      const float alpha = 1.5f, beta = 2.0f;
      ASSERT_EQ(cublasSgemm(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            m, n, k, &alpha, d_a.data(), ta ? k : m, d_b.data(), tb ? n : k, &beta,
                            d_c.data(), m),
                CUBLAS_STATUS_SUCCESS);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      ::tessera::testing::ExpectClose(
          d_c.ToHost(), ReferenceGemm(ta, tb, m, n, k, alpha, a, b, beta, c), 1e-5f, "sgemm");
    }
  }
  // TF32 keeps 10 mantissa bits: 1 + 1e-4 * i rounds to 1 for small i, so the products change.
  std::vector<float> fp32, tf32;
  for (cublasMath_t mode : {CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH}) {
    ASSERT_EQ(cublasSetMathMode(handle, mode), CUBLAS_STATUS_SUCCESS);
    DeviceVector<float> d_a(a), d_b(b), d_c(m * n);
    const float one = 1.0f, zero = 0.0f;
    ASSERT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, d_a.data(), m,
                          d_b.data(), k, &zero, d_c.data(), m),
              CUBLAS_STATUS_SUCCESS);
    (mode == CUBLAS_DEFAULT_MATH ? fp32 : tf32) = d_c.ToHost();
  }
  EXPECT_NE(fp32, tf32);
  ::tessera::testing::ExpectClose(tf32, fp32, 1e-2f, "tf32 vs fp32");
  std::vector<float> host(m * k);
  const float one = 1.0f, zero = 0.0f;
  DeviceVector<float> d_c(m * n);
  EXPECT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, host.data(), m,
                        host.data(), k, &zero, d_c.data(), m),
            CUBLAS_STATUS_INVALID_VALUE)
      << "host pointers are rejected";
  EXPECT_EQ(cublasDestroy(handle), CUBLAS_STATUS_SUCCESS);
}

// Two ranks in one process, joined by a host collective of two threads.
class TwoThreadHost final : public cuda_emu::NcclHostCollective {
 public:
  explicit TwoThreadHost(int rank) : rank_(rank) {}
  static void Reset() { arrived_ = 0; }
  int AllReduceSum(float* data, size_t count) override {
    Exchange(data, count * sizeof(float));
    for (size_t i = 0; i < count; ++i) data[i] = Peer(0)[i] + Peer(1)[i];
    Exchange(nullptr, 0);  // nobody leaves before both read
    return 0;
  }
  int Broadcast(void*, size_t, int) override { return 1; }
  int AllGather(const void*, void*, size_t) override { return 1; }

 private:
  void Exchange(const void* data, size_t bytes) {
    if (data != nullptr)
      buffers_[rank_].assign(static_cast<const float*>(data),
                             static_cast<const float*>(data) + bytes / 4);
    const int target = (arrived_.fetch_add(1) / 2 + 1) * 2;
    while (arrived_.load() < target) std::this_thread::yield();
  }
  const float* Peer(int r) { return buffers_[r].data(); }
  int rank_;
  static std::atomic<int> arrived_;
  static std::vector<float> buffers_[2];
};
std::atomic<int> TwoThreadHost::arrived_{0};
std::vector<float> TwoThreadHost::buffers_[2];

TEST(CudaEmuTest, NcclAllReduceRunsThroughTheBoundHostCollective) {
  ncclUniqueId id;
  ASSERT_EQ(ncclGetUniqueId(&id), ncclSuccess);
  ncclComm_t unbound = nullptr;
  ASSERT_EQ(ncclCommInitRank(&unbound, 2, id, 0), ncclSuccess);
  DeviceVector<float> d_x(std::vector<float>{1, 2});
  EXPECT_EQ(ncclAllReduce(d_x.data(), d_x.data(), 2, ncclFloat, ncclSum, unbound, nullptr),
            ncclInvalidUsage);
  ASSERT_EQ(ncclCommDestroy(unbound), ncclSuccess);

  TwoThreadHost::Reset();
  std::vector<float> results[2];
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([r, &id, &results] {
      ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
      ncclComm_t comm = nullptr;
      ASSERT_EQ(ncclCommInitRank(&comm, 2, id, r), ncclSuccess);
      TwoThreadHost host(r);
      cuda_emu::BindNcclHostCollective(comm, &host);
      cudaStream_t stream = nullptr;
      ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
      DeviceVector<float> d(std::vector<float>{1.0f + r, 10.0f * (r + 1)});
      ASSERT_EQ(ncclAllReduce(d.data(), d.data(), 2, ncclFloat, ncclSum, comm, stream),
                ncclSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      ncclResult_t async = ncclInternalError;
      ASSERT_EQ(ncclCommGetAsyncError(comm, &async), ncclSuccess);
      EXPECT_EQ(async, ncclSuccess);
      results[r] = d.ToHost();
      EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
      EXPECT_EQ(ncclCommDestroy(comm), ncclSuccess);
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(results[0], (std::vector<float>{3.0f, 30.0f}));
  EXPECT_EQ(results[1], results[0]);
}

}  // namespace
