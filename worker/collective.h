// Collective: the dense synchronisation of the workers (DESIGN.md "Dense synchronisation"). Each
// worker holds one Collective; the workers' dense gradients are summed in one fused buffer per
// step, and the dense optimizer then runs identically on every replica.
//
// Implementations: InProcessCollectiveGroup (workers as threads of one process:
// worker/inproc_collective.h), MpiCollective (CPU workers under mpirun: worker/mpi_collective.h),
// NcclCollective (GPU workers: worker/nccl_collective.h, built with CUDA and NCCL, or emulated).
//
// Contract for every implementation:
// - All workers call the same operations in the same order with matching arguments (the same
//   count for AllReduceSum and Broadcast, the same root); a call returns once this worker's
//   part is done. Calls block; they are not thread-safe on one object (one thread per worker).
// - Memory space: host memory for the in-process and MPI collectives; AllReduceSum and Broadcast
//   take device memory for NCCL (AllGather always takes host vectors). The header of each
//   implementation says which.
// - Errors come back as Status (a peer that never arrives, an abort, an MPI/NCCL failure). After
//   an error the collective is unusable: the workers are no longer in step.
#pragma once

#include <cstddef>
#include <vector>

#include "core/status.h"

namespace tessera::worker {

class Collective {  // one per worker; all workers call the same operations in the same order
 public:
  virtual ~Collective() = default;
  // This worker's index in [0, size()).
  virtual int rank() const = 0;
  // Number of workers.
  virtual int size() const = 0;
  // Element-wise sum over all workers, in place; every worker ends with bit-identical values, and
  // the result does not depend on timing (sum in rank order), so runs are reproducible.
  // (NcclCollective: bit-identical on every worker and reproducible for a fixed topology, but
  // summed in NCCL's ring/tree order, not rank order: see nccl_collective.h.)
  virtual Status AllReduceSum(float* data, size_t count) = 0;
  // Concatenation of every worker's `local` (lengths may differ) in rank order, to every worker.
  // `all` is resized; it may be the same vector as `local`.
  virtual Status AllGather(const std::vector<float>& local, std::vector<float>* all) = 0;
  // root's data[0, count) to every worker. InvalidArgument for a root outside [0, size()).
  virtual Status Broadcast(float* data, size_t count, int root) = 0;
};

}  // namespace tessera::worker
