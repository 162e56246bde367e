// The emulated NCCL (include/nccl.h): collectives queued on the stream, run through the bound
// host collective when the stream is drained.
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

#include "cuda_emu/cuda_emu.h"
#include "runtime_internal.h"

namespace {
// A communicator's state; queued collectives hold it, so destroying the communicator with work
// still queued is safe.
struct CommState {
  int rank = 0;
  int nranks = 1;
  cuda_emu::NcclHostCollective* host = nullptr;
  std::atomic<int> async_error{ncclSuccess};
  std::atomic<bool> aborted{false};
};
}  // namespace

struct ncclComm {
  std::shared_ptr<CommState> state = std::make_shared<CommState>();
};

namespace {

size_t TypeBytes(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
      return 1;
    case ncclFloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
  }
  return 0;
}

// Checks the communicator and that a multi-rank one is bound to a host collective.
ncclResult_t CheckComm(ncclComm_t comm, const char* op) {
  if (comm == nullptr) return ncclInvalidArgument;
  const CommState& c = *comm->state;
  if (c.aborted.load()) return ncclInvalidUsage;
  if (c.nranks > 1 && c.host == nullptr) {
    std::fprintf(stderr,
                 "cuda_emu: %s on a communicator of %d ranks that no host collective was bound "
                 "to (cuda_emu::BindNcclHostCollective)\n",
                 op, c.nranks);
    return ncclInvalidUsage;
  }
  return ncclSuccess;
}

// Queues `run` (returns 0 on success) on `stream`; a failure becomes the communicator's async
// error, as a failed peer does in NCCL.
ncclResult_t Queue(ncclComm_t comm, cudaStream_t stream, std::function<int(const CommState&)> run) {
  std::shared_ptr<CommState> state = comm->state;
  const cudaError_t queued = cuda_emu::internal::Enqueue(stream, [state, run]() {
    if (state->aborted.load()) return cudaSuccess;
    if (run(*state) != 0) state->async_error.store(ncclRemoteError);
    return cudaSuccess;
  });
  return queued == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

}  // namespace

namespace cuda_emu {

void BindNcclHostCollective(struct ncclComm* comm, NcclHostCollective* host) {
  if (comm != nullptr) comm->state->host = host;
}

}  // namespace cuda_emu

ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* unique_id) {
  if (unique_id == nullptr) return ncclInvalidArgument;
  std::mt19937_64 rng(
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (size_t i = 0; i < NCCL_UNIQUE_ID_BYTES; ++i) {
    unique_id->internal[i] = static_cast<char>(rng() & 0xff);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId /*comm_id*/, int rank) {
  if (comm == nullptr || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  if (!cuda_emu::internal::HaveDevice()) return ncclUnhandledCudaError;
  *comm = new ncclComm;
  (*comm)->state->rank = rank;
  (*comm)->state->nranks = nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;
  comm->state->aborted.store(true);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* async_error) {
  if (comm == nullptr || async_error == nullptr) return ncclInvalidArgument;
  *async_error = static_cast<ncclResult_t>(comm->state->async_error.load());
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  if (comm == nullptr || count == nullptr) return ncclInvalidArgument;
  *count = comm->state->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (comm == nullptr || rank == nullptr) return ncclInvalidArgument;
  *rank = comm->state->rank;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage (see the cuda_emu line on stderr)";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "NCCL operation in progress";
  }
  return "unknown result code";
}

ncclResult_t ncclGroupStart() { return ncclSuccess; }
ncclResult_t ncclGroupEnd() { return ncclSuccess; }

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  if (ncclResult_t r = CheckComm(comm, "ncclAllReduce"); r != ncclSuccess) return r;
  if (datatype != ncclFloat32 || op != ncclSum) {
    std::fprintf(stderr, "cuda_emu: ncclAllReduce supports float sums only\n");
    return ncclInvalidArgument;
  }
  const size_t bytes = count * sizeof(float);
  if (count > 0 && (!cuda_emu::internal::IsDeviceRange(sendbuff, bytes) ||
                    !cuda_emu::internal::IsDeviceRange(recvbuff, bytes))) {
    std::fprintf(stderr, "cuda_emu: ncclAllReduce: buffers are not device memory\n");
    return ncclInvalidArgument;
  }
  return Queue(comm, stream, [sendbuff, recvbuff, count, bytes](const CommState& c) {
    if (sendbuff != recvbuff && bytes > 0) std::memmove(recvbuff, sendbuff, bytes);
    if (c.nranks == 1 || count == 0) return 0;
    return c.host->AllReduceSum(static_cast<float*>(recvbuff), count);
  });
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  if (ncclResult_t r = CheckComm(comm, "ncclBroadcast"); r != ncclSuccess) return r;
  if (root < 0 || root >= comm->state->nranks || TypeBytes(datatype) == 0) {
    return ncclInvalidArgument;
  }
  const size_t bytes = count * TypeBytes(datatype);
  if (bytes > 0 && !cuda_emu::internal::IsDeviceRange(recvbuff, bytes)) {
    std::fprintf(stderr, "cuda_emu: ncclBroadcast: the buffer is not device memory\n");
    return ncclInvalidArgument;
  }
  return Queue(comm, stream, [sendbuff, recvbuff, bytes, root](const CommState& c) {
    if (c.rank == root && sendbuff != recvbuff && bytes > 0) {
      std::memmove(recvbuff, sendbuff, bytes);
    }
    if (c.nranks == 1 || bytes == 0) return 0;
    return c.host->Broadcast(recvbuff, bytes, root);
  });
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
  if (ncclResult_t r = CheckComm(comm, "ncclAllGather"); r != ncclSuccess) return r;
  if (TypeBytes(datatype) == 0) return ncclInvalidArgument;
  const size_t bytes = sendcount * TypeBytes(datatype);
  if (bytes > 0 && (!cuda_emu::internal::IsDeviceRange(sendbuff, bytes) ||
                    !cuda_emu::internal::IsDeviceRange(recvbuff, bytes * comm->state->nranks))) {
    std::fprintf(stderr, "cuda_emu: ncclAllGather: buffers are not device memory\n");
    return ncclInvalidArgument;
  }
  return Queue(comm, stream, [sendbuff, recvbuff, bytes](const CommState& c) {
    if (bytes == 0) return 0;
    if (c.nranks == 1) {
      std::memmove(recvbuff, sendbuff, bytes);
      return 0;
    }
    return c.host->AllGather(sendbuff, recvbuff, bytes);
  });
}
