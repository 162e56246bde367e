#include "worker/mpi_collective.h"

#include <algorithm>
#include <climits>
#include <string>

namespace tessera::worker {
namespace {

Status MpiError(int rc, const std::string& what) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) length = 0;
  return Status::Internal("MPI collective: " + what + " failed: " +
                          (length > 0 ? std::string(text, length) : "error " + std::to_string(rc)));
}

#define TS_MPI_RETURN_IF_ERROR(call, what) \
  do {                                     \
    const int ts_mpi_rc_ = (call);         \
    if (ts_mpi_rc_ != MPI_SUCCESS) {       \
      return MpiError(ts_mpi_rc_, (what)); \
    }                                      \
  } while (0)

}  // namespace

StatusOr<std::unique_ptr<MpiCollective>> MpiCollective::Create(
    MPI_Comm comm, const MpiCollectiveOptions& options) {
  if (comm == MPI_COMM_NULL) return Status::InvalidArgument("MPI collective: MPI_COMM_NULL");
  if (options.segment_floats < 1) {
    return Status::InvalidArgument("MPI collective: segment_floats must be >= 1, got " +
                                   std::to_string(options.segment_floats));
  }
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized) {
    return Status::Internal("MPI collective: MPI is not initialised (or already finalised)");
  }
  MPI_Comm dup = MPI_COMM_NULL;
  TS_MPI_RETURN_IF_ERROR(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup");
  int rank = 0, size = 0;
  int rc = MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(dup, &rank);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(dup, &size);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(&dup);
    return MpiError(rc, "setting up the communicator");
  }
  return std::unique_ptr<MpiCollective>(new MpiCollective(dup, rank, size, options));
}

MpiCollective::MpiCollective(MPI_Comm comm, int rank, int size, const MpiCollectiveOptions& options)
    : comm_(comm),
      rank_(rank),
      size_(size),
      options_(options),
      counts_(size),
      displs_(size),
      recv_counts_(size),
      recv_displs_(size) {}

MpiCollective::~MpiCollective() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&comm_);
}

Status MpiCollective::AllReduceSum(float* data, size_t count) {
  if (count > 0 && data == nullptr) {
    return Status::InvalidArgument("MPI collective AllReduceSum: null data");
  }
  if (size_ == 1) return OkStatus();
  // Every rank computes the same segment and chunk boundaries from (count, size), so the counts
  // agree without being exchanged. Chunks stay below INT_MAX: a segment is at most
  // segment_floats, clamped so that W copies of one chunk also fit an int.
  const int64_t total = static_cast<int64_t>(count);
  const int64_t segment = std::min<int64_t>(options_.segment_floats, INT_MAX);
  const int64_t W = size_;
  for (int64_t base = 0; base < total; base += segment) {
    const int64_t n = std::min(segment, total - base);
    for (int64_t c = 0; c < W; ++c) {
      displs_[c] = static_cast<int>(n * c / W);
      counts_[c] = static_cast<int>(n * (c + 1) / W - n * c / W);
    }
    const int mine = counts_[rank_];
    scratch_.resize(static_cast<size_t>(W) * mine);
    for (int64_t r = 0; r < W; ++r) {
      recv_counts_[r] = mine;
      recv_displs_[r] = static_cast<int>(r * mine);
    }
    float* segment_data = data + base;
    // Reduce-scatter: copy r of this rank's chunk arrives at scratch_[r * mine].
    TS_MPI_RETURN_IF_ERROR(
        MPI_Alltoallv(segment_data, counts_.data(), displs_.data(), MPI_FLOAT, scratch_.data(),
                      recv_counts_.data(), recv_displs_.data(), MPI_FLOAT, comm_),
        "MPI_Alltoallv of AllReduceSum");
    // Rank-order sum of the chunk, written back into place.
    float* out = segment_data + displs_[rank_];
    std::copy(scratch_.begin(), scratch_.begin() + mine, out);
    for (int64_t r = 1; r < W; ++r) {
      const float* x = scratch_.data() + r * mine;
      for (int i = 0; i < mine; ++i) out[i] += x[i];
    }
    TS_MPI_RETURN_IF_ERROR(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, segment_data,
                                          counts_.data(), displs_.data(), MPI_FLOAT, comm_),
                           "MPI_Allgatherv of AllReduceSum");
  }
  return OkStatus();
}

Status MpiCollective::AllGather(const std::vector<float>& local, std::vector<float>* all) {
  if (all == nullptr) return Status::InvalidArgument("MPI collective AllGather: null output");
  if (local.size() > static_cast<size_t>(INT_MAX)) {
    return Status::InvalidArgument("MPI collective AllGather: " + std::to_string(local.size()) +
                                   " floats exceed MPI's int count");
  }
  const int64_t mine = static_cast<int64_t>(local.size());
  std::vector<int64_t> lengths(size_);
  TS_MPI_RETURN_IF_ERROR(
      MPI_Allgather(&mine, 1, MPI_INT64_T, lengths.data(), 1, MPI_INT64_T, comm_),
      "MPI_Allgather of AllGather lengths");
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    displs_[r] = static_cast<int>(std::min<int64_t>(total, INT_MAX));
    counts_[r] = static_cast<int>(std::min<int64_t>(lengths[r], INT_MAX));
    total += lengths[r];
  }
  // Every rank sees the same lengths, so every rank takes this branch together.
  if (total > INT_MAX) {
    return Status::InvalidArgument("MPI collective AllGather: " + std::to_string(total) +
                                   " floats in all exceed MPI's int displacements");
  }
  // Gather into a fresh vector: `all` may be `local`.
  std::vector<float> gathered(static_cast<size_t>(total));
  TS_MPI_RETURN_IF_ERROR(MPI_Allgatherv(local.data(), counts_[rank_], MPI_FLOAT, gathered.data(),
                                        counts_.data(), displs_.data(), MPI_FLOAT, comm_),
                         "MPI_Allgatherv of AllGather");
  *all = std::move(gathered);
  return OkStatus();
}

Status MpiCollective::Broadcast(float* data, size_t count, int root) {
  if (root < 0 || root >= size_) {
    return Status::InvalidArgument("MPI collective Broadcast: root " + std::to_string(root) +
                                   " not in [0, " + std::to_string(size_) + ")");
  }
  if (count > 0 && data == nullptr) {
    return Status::InvalidArgument("MPI collective Broadcast: null data");
  }
  const int64_t total = static_cast<int64_t>(count);
  const int64_t segment = std::min<int64_t>(options_.segment_floats, INT_MAX);
  for (int64_t base = 0; base < total; base += segment) {
    const int n = static_cast<int>(std::min(segment, total - base));
    TS_MPI_RETURN_IF_ERROR(MPI_Bcast(data + base, n, MPI_FLOAT, root, comm_), "MPI_Bcast");
  }
  return OkStatus();
}

}  // namespace tessera::worker
