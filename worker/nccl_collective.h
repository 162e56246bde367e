// NcclCollective: the Collective of GPU workers (one GPU per worker), over NCCL. Built only with
// CUDA and the NCCL library (TESSERA_WITH_NCCL). The communicator is bootstrapped over MPI: rank 0
// of the workers' communicator makes the NCCL unique id and MPI_Bcast hands it to the others.
//
// Memory: AllReduceSum and Broadcast take device memory on `cuda_device` (d_data). AllGather takes
// host vectors (the interface's) and stages them through a device buffer owned by this object,
// grown on demand with cudaMalloc.
//
// Determinism: ncclAllReduce sums in the order of its ring or tree, not in rank order. For a
// fixed topology, rank count, element count, NCCL version and algorithm/protocol choice
// (NCCL_ALGO, NCCL_PROTO) that order is fixed, and every rank receives the same reduced bytes,
// so results are bit-identical across workers and reproducible across runs on the same
// machines; they can differ in the last bits from the in-process and MPI rank-order sums, and
// from a run on a different topology.
//
// Blocking: each call queues its NCCL operation on `stream` and then waits for it, polling
// cudaStreamQuery and ncclCommGetAsyncError, so a failed peer or NCCL error comes back as this
// call's Status (the communicator is aborted then, and every later call returns that Status)
// rather than as a hang in cudaStreamSynchronize. There is no timeout of our own: NCCL reports a
// lost peer through its async error.
//
// Threads: one thread per object at a time; that thread's current CUDA device is set to
// cuda_device by each call. MPI is used only by Create.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/status.h"
#include "worker/collective.h"

struct CUstream_st;
struct ncclComm;

namespace tessera::worker {

class NcclCollective final : public Collective {
 public:
  // Collective over `comm` (every worker calls Create together; rank and size are comm's).
  // `stream` (not owned; nullptr: the legacy default stream) is where the operations are queued,
  // normally the worker's compute stream so that an all-reduce is ordered after the backward
  // kernels that wrote the gradients. Internal with the CUDA, NCCL or MPI error string on
  // failure; InvalidArgument for MPI_COMM_NULL.
  static StatusOr<std::unique_ptr<NcclCollective>> Create(MPI_Comm comm, int cuda_device,
                                                          struct CUstream_st* stream);
  // Destroys the NCCL communicator and frees the staging buffer.
  ~NcclCollective() override;
  NcclCollective(const NcclCollective&) = delete;
  NcclCollective& operator=(const NcclCollective&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // d_data: device memory. Sum in NCCL's order (see the header comment).
  Status AllReduceSum(float* d_data, size_t count) override;
  // Host vectors, staged through device memory.
  Status AllGather(const std::vector<float>& local, std::vector<float>* all) override;
  // d_data: device memory.
  Status Broadcast(float* d_data, size_t count, int root) override;

 private:
  NcclCollective(ncclComm* comm, int rank, int size, int cuda_device, struct CUstream_st* stream);
  // Waits for the work queued on stream_; an error goes through Fail.
  Status Wait(const char* what);
  // Grows the staging buffer to at least `bytes` (a failure goes through Fail).
  Status ReserveStaging(size_t bytes);
  // Aborts the communicator (first failure only) and records `s` (non-OK) as the Status every
  // later call returns.
  Status Fail(Status s);

  ncclComm* comm_;  // owned
  const int rank_;
  const int size_;
  const int cuda_device_;
  struct CUstream_st* const stream_;  // not owned
  void* d_staging_ = nullptr;         // owned, device memory
  size_t staging_bytes_ = 0;
  Status failure_;
};

}  // namespace tessera::worker
