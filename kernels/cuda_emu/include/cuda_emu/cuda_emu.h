// What only the emulated CUDA device offers: the seed of its thread schedules, and the binding of
// an emulated NCCL communicator to the job's host collective. Include only under
// #if TESSERA_CUDA_EMULATION.
#pragma once

#include <cstddef>
#include <cstdint>

struct ncclComm;

namespace cuda_emu {

// Seeds every later launch's block order and fiber schedule, in every thread (the default seed
// is TESSERA_CUDA_EMU_SEED, else a fixed value). Two runs with different seeds take different
// schedules; a correct kernel gives the same result under both.
void SetScheduleSeed(uint64_t seed);

// Number of launches that found a shared-memory race (or another kernel fault) in this process.
int64_t KernelFaults();

// The host side of an emulated NCCL communicator with more than one rank: its collectives run on
// the host memory behind the emulated device pointers through this object, in the thread that
// drains the stream. Each returns 0 on success. Sums are in the host collective's order.
class NcclHostCollective {
 public:
  virtual ~NcclHostCollective() = default;
  virtual int AllReduceSum(float* data, size_t count) = 0;
  virtual int Broadcast(void* data, size_t bytes, int root) = 0;
  // `all` gets every rank's `bytes_per_rank` bytes in rank order.
  virtual int AllGather(const void* local, void* all, size_t bytes_per_rank) = 0;
};

// Binds `comm` (from ncclCommInitRank) to `host` (not owned; outlives the communicator). A
// communicator of more than one rank fails its collectives until it is bound.
void BindNcclHostCollective(struct ncclComm* comm, NcclHostCollective* host);

}  // namespace cuda_emu
