#include "worker/nccl_collective.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>

namespace tessera::worker {
namespace {

Status CudaError(cudaError_t e, const std::string& what) {
  return Status::Internal("NCCL collective: " + what + ": " + cudaGetErrorString(e));
}

Status NcclError(ncclResult_t r, const std::string& what) {
  return Status::Internal("NCCL collective: " + what + ": " + ncclGetErrorString(r));
}

}  // namespace

StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Create(MPI_Comm comm, int cuda_device,
                                                                 struct CUstream_st* stream) {
  if (comm == MPI_COMM_NULL) return Status::InvalidArgument("NCCL collective: MPI_COMM_NULL");
  int rank = 0, size = 0;
  if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS || MPI_Comm_size(comm, &size) != MPI_SUCCESS) {
    return Status::Internal("NCCL collective: MPI_Comm_rank/size failed");
  }
  if (cudaError_t e = cudaSetDevice(cuda_device); e != cudaSuccess) {
    return CudaError(e, "cudaSetDevice(" + std::to_string(cuda_device) + ")");
  }
  // Rank 0 makes the id; a failure there must still reach the others, which would otherwise
  // wait in ncclCommInitRank forever, so the broadcast carries an ok flag with the id.
  struct {
    ncclUniqueId id;
    int ok;
  } bootstrap;
  std::memset(&bootstrap, 0, sizeof(bootstrap));
  ncclResult_t id_result = ncclSuccess;
  if (rank == 0) {
    id_result = ncclGetUniqueId(&bootstrap.id);
    bootstrap.ok = id_result == ncclSuccess ? 1 : 0;
  }
  if (MPI_Bcast(&bootstrap, sizeof(bootstrap), MPI_BYTE, 0, comm) != MPI_SUCCESS) {
    return Status::Internal("NCCL collective: MPI_Bcast of the NCCL unique id failed");
  }
  if (!bootstrap.ok) {
    return rank == 0 ? NcclError(id_result, "ncclGetUniqueId")
                     : Status::Internal("NCCL collective: rank 0 could not make the unique id");
  }
  ncclComm_t nccl_comm = nullptr;
  if (ncclResult_t r = ncclCommInitRank(&nccl_comm, size, bootstrap.id, rank); r != ncclSuccess) {
    return NcclError(
        r, "ncclCommInitRank(rank " + std::to_string(rank) + " of " + std::to_string(size) + ")");
  }
  return std::unique_ptr<NcclCollective>(
      new NcclCollective(nccl_comm, rank, size, cuda_device, stream));
}

NcclCollective::NcclCollective(ncclComm* comm, int rank, int size, int cuda_device,
                               struct CUstream_st* stream)
    : comm_(comm), rank_(rank), size_(size), cuda_device_(cuda_device), stream_(stream) {}

NcclCollective::~NcclCollective() {
  cudaSetDevice(cuda_device_);
  // After a failure the communicator was aborted already (Fail).
  if (failure_.ok()) ncclCommDestroy(comm_);
  if (d_staging_ != nullptr) cudaFree(d_staging_);
}

Status NcclCollective::Fail(Status s) {
  // Aborting (rather than leaving the communicator as it is) stops NCCL's kernels and proxy
  // threads that may still wait for a peer, so the process can report and exit.
  if (failure_.ok()) ncclCommAbort(comm_);
  failure_ = std::move(s);
  return failure_;
}

Status NcclCollective::Wait(const char* what) {
  // cudaStreamSynchronize would block forever if a peer died mid-collective; polling the stream
  // and NCCL's async error is the NCCL-documented way to notice.
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q == cudaSuccess) return OkStatus();
    if (q != cudaErrorNotReady) return Fail(CudaError(q, std::string("waiting for ") + what));
    ncclResult_t async = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
    if (r != ncclSuccess || async != ncclSuccess) {
      return Fail(NcclError(r != ncclSuccess ? r : async, std::string(what) + " (async)"));
    }
    std::this_thread::yield();
  }
}

Status NcclCollective::ReserveStaging(size_t bytes) {
  if (bytes <= staging_bytes_) return OkStatus();
  if (d_staging_ != nullptr) cudaFree(d_staging_);
  d_staging_ = nullptr;
  staging_bytes_ = 0;
  if (cudaError_t e = cudaMalloc(&d_staging_, bytes); e != cudaSuccess) {
    d_staging_ = nullptr;
    // The other ranks go on into the collective: fail (and abort) rather than leave them waiting.
    return Fail(CudaError(e, "cudaMalloc of " + std::to_string(bytes) + " staging bytes"));
  }
  staging_bytes_ = bytes;
  return OkStatus();
}

Status NcclCollective::AllReduceSum(float* d_data, size_t count) {
  if (!failure_.ok()) return failure_;
  if (count > 0 && d_data == nullptr) {
    return Status::InvalidArgument("NCCL collective AllReduceSum: null data");
  }
  if (cudaError_t e = cudaSetDevice(cuda_device_); e != cudaSuccess) {
    return Fail(CudaError(e, "cudaSetDevice"));
  }
  if (ncclResult_t r = ncclAllReduce(d_data, d_data, count, ncclFloat, ncclSum, comm_, stream_);
      r != ncclSuccess) {
    return Fail(NcclError(r, "ncclAllReduce"));
  }
  return Wait("ncclAllReduce");
}

Status NcclCollective::Broadcast(float* d_data, size_t count, int root) {
  if (!failure_.ok()) return failure_;
  if (root < 0 || root >= size_) {
    return Status::InvalidArgument("NCCL collective Broadcast: root " + std::to_string(root) +
                                   " not in [0, " + std::to_string(size_) + ")");
  }
  if (count > 0 && d_data == nullptr) {
    return Status::InvalidArgument("NCCL collective Broadcast: null data");
  }
  if (cudaError_t e = cudaSetDevice(cuda_device_); e != cudaSuccess) {
    return Fail(CudaError(e, "cudaSetDevice"));
  }
  if (ncclResult_t r = ncclBroadcast(d_data, d_data, count, ncclFloat, root, comm_, stream_);
      r != ncclSuccess) {
    return Fail(NcclError(r, "ncclBroadcast"));
  }
  return Wait("ncclBroadcast");
}

Status NcclCollective::AllGather(const std::vector<float>& local, std::vector<float>* all) {
  if (!failure_.ok()) return failure_;
  if (all == nullptr) return Status::InvalidArgument("NCCL collective AllGather: null output");
  if (cudaError_t e = cudaSetDevice(cuda_device_); e != cudaSuccess) {
    return Fail(CudaError(e, "cudaSetDevice"));
  }
  cudaStream_t stream = stream_;
  // Step 1: every rank's length. Layout of the staging buffer: [W int64 lengths | own length].
  const size_t W = static_cast<size_t>(size_);
  TS_RETURN_IF_ERROR(ReserveStaging((W + 1) * sizeof(int64_t)));
  const int64_t mine = static_cast<int64_t>(local.size());
  int64_t* d_lengths = static_cast<int64_t*>(d_staging_);
  std::vector<int64_t> lengths(W);
  if (cudaError_t e =
          cudaMemcpyAsync(d_lengths + W, &mine, sizeof(mine), cudaMemcpyHostToDevice, stream);
      e != cudaSuccess) {
    return Fail(CudaError(e, "copying the AllGather length"));
  }
  if (ncclResult_t r = ncclAllGather(d_lengths + W, d_lengths, 1, ncclInt64, comm_, stream);
      r != ncclSuccess) {
    return Fail(NcclError(r, "ncclAllGather of lengths"));
  }
  if (cudaError_t e = cudaMemcpyAsync(lengths.data(), d_lengths, W * sizeof(int64_t),
                                      cudaMemcpyDeviceToHost, stream);
      e != cudaSuccess) {
    return Fail(CudaError(e, "copying the AllGather lengths"));
  }
  TS_RETURN_IF_ERROR(Wait("ncclAllGather of lengths"));
  // Step 2: every rank's floats, padded to the longest (ncclAllGather needs equal counts).
  // Layout: [W * longest gathered | longest own].
  const size_t longest = static_cast<size_t>(*std::max_element(lengths.begin(), lengths.end()));
  std::vector<float> gathered;
  if (longest > 0) {
    TS_RETURN_IF_ERROR(ReserveStaging((W + 1) * longest * sizeof(float)));
    float* d_all = static_cast<float*>(d_staging_);
    float* d_mine = d_all + W * longest;
    if (!local.empty()) {
      if (cudaError_t e = cudaMemcpyAsync(d_mine, local.data(), local.size() * sizeof(float),
                                          cudaMemcpyHostToDevice, stream);
          e != cudaSuccess) {
        return Fail(CudaError(e, "copying the AllGather input"));
      }
    }
    if (ncclResult_t r = ncclAllGather(d_mine, d_all, longest, ncclFloat, comm_, stream);
        r != ncclSuccess) {
      return Fail(NcclError(r, "ncclAllGather"));
    }
    std::vector<float> padded(W * longest);
    if (cudaError_t e = cudaMemcpyAsync(padded.data(), d_all, padded.size() * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream);
        e != cudaSuccess) {
      return Fail(CudaError(e, "copying the AllGather output"));
    }
    TS_RETURN_IF_ERROR(Wait("ncclAllGather"));
    for (size_t r = 0; r < W; ++r) {
      const float* begin = padded.data() + r * longest;
      gathered.insert(gathered.end(), begin, begin + lengths[r]);
    }
  }
  *all = std::move(gathered);
  return OkStatus();
}

}  // namespace tessera::worker
