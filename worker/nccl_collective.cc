#include "worker/nccl_collective.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#if TESSERA_CUDA_EMULATION
#include "cuda_emu/cuda_emu.h"
#endif

namespace tessera::worker {
namespace {

Status CudaError(cudaError_t e, const std::string& what) {
  return Status::Internal("NCCL collective: " + what + ": " + cudaGetErrorString(e));
}

Status NcclError(ncclResult_t r, const std::string& what) {
  return Status::Internal("NCCL collective: " + what + ": " + ncclGetErrorString(r));
}

}  // namespace

#if TESSERA_CUDA_EMULATION
// The emulated NCCL's transport: its operations on the emulated device memory (host memory) go
// through the host collective. Bytes of broadcasts and all-gathers travel as 16-bit values in
// floats, exact whatever the bytes are (a float transport may change the bits of a NaN); sums go
// as they are. The last failure is kept for NcclFailure.
class NcclCollective::EmulatedHost final : public cuda_emu::NcclHostCollective {
 public:
  explicit EmulatedHost(Collective* host) : host_(host) {}

  int AllReduceSum(float* data, size_t count) override {
    return Check(host_->AllReduceSum(data, count));
  }
  int Broadcast(void* data, size_t bytes, int root) override {
    std::vector<float> words = Encode(data, bytes);
    if (Check(host_->Broadcast(words.data(), words.size(), root)) != 0) return 1;
    Decode(words.data(), bytes, data);
    return 0;
  }
  int AllGather(const void* local, void* all, size_t bytes_per_rank) override {
    std::vector<float> gathered;
    if (Check(host_->AllGather(Encode(local, bytes_per_rank), &gathered)) != 0) return 1;
    const size_t words_per_rank = (bytes_per_rank + 1) / 2;
    if (gathered.size() != words_per_rank * static_cast<size_t>(host_->size())) {
      return Check(Status::Internal("emulated NCCL all-gather: " + std::to_string(gathered.size()) +
                                    " words, expected " + std::to_string(words_per_rank) +
                                    " per rank"));
    }
    for (int r = 0; r < host_->size(); ++r) {
      Decode(gathered.data() + r * words_per_rank, bytes_per_rank,
             static_cast<char*>(all) + r * bytes_per_rank);
    }
    return 0;
  }

  const Status& last_error() const { return last_error_; }

 private:
  int Check(Status s) {
    if (s.ok()) return 0;
    last_error_ = std::move(s);
    return 1;
  }
  static std::vector<float> Encode(const void* data, size_t bytes) {
    const auto* in = static_cast<const unsigned char*>(data);
    std::vector<float> words((bytes + 1) / 2);
    for (size_t i = 0; i < bytes; ++i) {
      words[i / 2] += static_cast<float>(in[i] << (8 * (i % 2)));
    }
    return words;
  }
  static void Decode(const float* words, size_t bytes, void* data) {
    auto* out = static_cast<unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) {
      out[i] = static_cast<unsigned char>(static_cast<uint32_t>(words[i / 2]) >> (8 * (i % 2)));
    }
  }

  Collective* const host_;
  Status last_error_;
};
#else
class NcclCollective::EmulatedHost {};
#endif

StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Create(Collective* host, int cuda_device,
                                                                 struct CUstream_st* stream) {
  if (host == nullptr) return Status::InvalidArgument("NCCL collective: no host collective");
  const int rank = host->rank();
  const int size = host->size();
  Status local = OkStatus();
  if (cudaError_t e = cudaSetDevice(cuda_device); e != cudaSuccess) {
    cudaGetLastError();
    local = CudaError(e, "cudaSetDevice(" + std::to_string(cuda_device) + ")");
  }
  // Rank 0 makes the id and sends it with an ok flag, so that its failure reaches the others
  // (which would otherwise wait in ncclCommInitRank for it forever). Each byte goes as a float
  // of value 0..255, which every float transport carries exactly.
  constexpr size_t kIdBytes = sizeof(ncclUniqueId);
  std::vector<float> message(kIdBytes + 1, 0.0f);
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) {
      local = NcclError(r, "ncclGetUniqueId");
    } else {
      for (size_t i = 0; i < kIdBytes; ++i) {
        message[i] = static_cast<float>(static_cast<unsigned char>(id.internal[i]));
      }
      message[kIdBytes] = 1.0f;
    }
  }
  TS_RETURN_IF_ERROR(host->Broadcast(message.data(), message.size(), /*root=*/0)
                         .WithContext("NCCL collective: broadcasting the unique id"));
  for (size_t i = 0; i < kIdBytes; ++i) {
    id.internal[i] = static_cast<char>(static_cast<unsigned char>(message[i]));
  }
  // Every rank goes into ncclCommInitRank, or none does.
  float failed = local.ok() && message[kIdBytes] == 1.0f ? 0.0f : 1.0f;
  TS_RETURN_IF_ERROR(host->AllReduceSum(&failed, 1));
  if (failed > 0) {
    if (!local.ok()) return local;
    return Status::Internal("NCCL collective: " + std::to_string(static_cast<int>(failed)) +
                            " of " + std::to_string(size) + " workers could not start NCCL");
  }
  ncclComm_t nccl_comm = nullptr;
  if (ncclResult_t r = ncclCommInitRank(&nccl_comm, size, id, rank); r != ncclSuccess) {
    nccl_comm = nullptr;
    local = NcclError(
        r, "ncclCommInitRank(rank " + std::to_string(rank) + " of " + std::to_string(size) + ")");
  }
  std::unique_ptr<EmulatedHost> emulated_host;
#if TESSERA_CUDA_EMULATION
  emulated_host = std::make_unique<EmulatedHost>(host);
  if (nccl_comm != nullptr) cuda_emu::BindNcclHostCollective(nccl_comm, emulated_host.get());
#endif
  // A rank whose init failed must not leave the others to find out in their first operation.
  failed = local.ok() ? 0.0f : 1.0f;
  Status agreed = host->AllReduceSum(&failed, 1);
  if (agreed.ok() && failed > 0 && local.ok()) {
    agreed = Status::Internal("NCCL collective: ncclCommInitRank failed on " +
                              std::to_string(static_cast<int>(failed)) + " of " +
                              std::to_string(size) + " workers");
  }
  if (!local.ok() || !agreed.ok()) {
    if (nccl_comm != nullptr) ncclCommAbort(nccl_comm);
    return local.ok() ? agreed : local;
  }
  return std::unique_ptr<NcclCollective>(
      new NcclCollective(nccl_comm, rank, size, cuda_device, stream, std::move(emulated_host)));
}

NcclCollective::NcclCollective(ncclComm* comm, int rank, int size, int cuda_device,
                               struct CUstream_st* stream,
                               std::unique_ptr<EmulatedHost> emulated_host)
    : emulated_host_(std::move(emulated_host)),
      comm_(comm),
      rank_(rank),
      size_(size),
      cuda_device_(cuda_device),
      stream_(stream) {}

Status NcclCollective::NcclFailure(int result, const std::string& what) const {
#if TESSERA_CUDA_EMULATION
  if (emulated_host_ != nullptr && !emulated_host_->last_error().ok()) {
    return emulated_host_->last_error().WithContext("NCCL collective: " + what);
  }
#endif
  if (result == ncclSuccess) return OkStatus();
  return NcclError(static_cast<ncclResult_t>(result), what);
}

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
    ncclResult_t async = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
    if (r != ncclSuccess || async != ncclSuccess) {
      return Fail(NcclFailure(r != ncclSuccess ? r : async, std::string(what) + " (async)"));
    }
    if (q == cudaSuccess) return OkStatus();
    if (q != cudaErrorNotReady) {
      cudaGetLastError();
      const Status cuda = CudaError(q, std::string("waiting for ") + what);
      // The emulated NCCL's operations run while the stream drains: a failure of the host
      // collective there surfaces as the stream's error.
      const Status nccl = NcclFailure(ncclSuccess, what);
      return Fail(nccl.ok() ? cuda : nccl);
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
    return Fail(NcclFailure(r, "ncclAllReduce"));
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
    return Fail(NcclFailure(r, "ncclBroadcast"));
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
    return Fail(NcclFailure(r, "ncclAllGather of lengths"));
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
      return Fail(NcclFailure(r, "ncclAllGather"));
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
