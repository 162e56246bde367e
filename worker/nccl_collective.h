// NcclCollective: the Collective of GPU workers (one GPU per worker), over NCCL. Built with CUDA
// and the NCCL library (TESSERA_WITH_NCCL), and on the emulated device (TESSERA_CUDA_EMULATION),
// whose NCCL runs its operations through the host collective (below).
//
// Bootstrap: over the job's host Collective (an InProcessCollectiveGroup member when the workers
// are threads of one process, an MpiCollective under mpirun/srun), so both kinds of job build it
// the same way. Rank 0 makes the NCCL unique id and broadcasts it through the host collective, as
// 128 floats of value 0..255 (exact in any float transport) and an ok flag; every rank then tells
// the others whether it can go on (a host-collective sum of failures, so that one rank's failure,
// a bad device say, fails every rank's Create instead of leaving them waiting in
// ncclCommInitRank), calls ncclCommInitRank, and the ranks agree once more that every init
// succeeded. Workers that are threads of one process must call Create concurrently (one thread
// per rank): ncclCommInitRank returns once every rank has joined.
//
// Emulated build: Create binds the new communicator to an adapter over the host collective
// (cuda_emu::BindNcclHostCollective); the emulated device memory is host memory, so NCCL's
// all-reduce, broadcast and all-gather become the host collective's, run by the thread that
// waits for the stream (this object's caller).
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
// cuda_device by each call. The host collective is used only by Create, and in the emulated build
// by every operation: it must outlive this object and not be used by anyone else meanwhile.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "worker/collective.h"

struct CUstream_st;
struct ncclComm;

namespace tessera::worker {

class NcclCollective final : public Collective {
 public:
  // Collective of the workers of `host` (borrowed; rank and size are host's): every worker calls
  // Create together, see the header comment. `cuda_device` becomes the calling thread's current
  // device. `stream` (not owned; nullptr: the legacy default stream) is where the operations are
  // queued, normally the worker's compute stream so that an all-reduce is ordered after the
  // backward kernels that wrote the gradients. InvalidArgument for a null host; the host
  // collective's Status when it fails; Internal with the CUDA or NCCL error string otherwise.
  static StatusOr<std::unique_ptr<NcclCollective>> Create(Collective* host, int cuda_device,
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
  class EmulatedHost;  // the emulated NCCL's transport (nccl_collective.cc)

  NcclCollective(ncclComm* comm, int rank, int size, int cuda_device, struct CUstream_st* stream,
                 std::unique_ptr<EmulatedHost> emulated_host);
  // An NCCL call's failure as a Status; in the emulated build the host collective's own Status
  // when that is what failed (an abort of the in-process group, a lost MPI peer).
  Status NcclFailure(int result, const std::string& what) const;
  // Waits for the work queued on stream_; an error goes through Fail.
  Status Wait(const char* what);
  // Grows the staging buffer to at least `bytes` (a failure goes through Fail).
  Status ReserveStaging(size_t bytes);
  // Aborts the communicator (first failure only) and records `s` (non-OK) as the Status every
  // later call returns.
  Status Fail(Status s);

  std::unique_ptr<EmulatedHost> emulated_host_;  // emulated build only; outlives comm_
  ncclComm* comm_;                               // owned
  const int rank_;
  const int size_;
  const int cuda_device_;
  struct CUstream_st* const stream_;  // not owned
  void* d_staging_ = nullptr;         // owned, device memory
  size_t staging_bytes_ = 0;
  Status failure_;
};

}  // namespace tessera::worker
