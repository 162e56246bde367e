// Segment plans: the grouping that turns a float-atomic scatter-add into a deterministic
// segmented reduction. Given, per position p, the row indices[p] it adds into, the plan lists for
// every row r the positions that touch it, in increasing position order:
//   positions of row r = order[offsets[r]] .. order[offsets[r + 1] - 1]
// (CSR: offsets has num_rows + 1 entries, order num_positions). A reduction that walks each row's
// positions in that order adds in the order a sequential CPU loop over the positions does, with
// no atomics, so its result does not depend on how threads are scheduled.
//
// The positions are the samples of an MF batch (indices = user_index or item_index) or the
// lookups of an embedding backward (indices = a gather's or a pool's indices). Both are built on
// the host, so the plan is built there (a stable counting sort, O(num_positions + num_rows)) and
// uploaded; the deterministic CUDA kernels (MfBatchGradientDeterministicCuda,
// EmbeddingGatherBackwardDeterministicCuda, EmbeddingPoolBackwardDeterministicCuda) take a
// SegmentsView of the device copy. DeviceSegments does that upload into grow-only device buffers.
//
// Thread-compatible: one plan serves one thread at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"

struct CUstream_st;

namespace tessera::kernels {

// A plan's arrays wherever they live (host or device memory, as the taker says). Positions and
// offsets are int32: a plan covers fewer than 2^31 positions (BuildSegments checks it).
struct SegmentsView {
  int64_t num_rows = 0;
  int64_t num_positions = 0;
  const int32_t* offsets = nullptr;  // num_rows + 1 non-decreasing values, 0 .. num_positions
  const int32_t* order = nullptr;    // num_positions positions, grouped by row, ascending per row
};

// Writes the plan of indices[0, num_positions) into caller-owned offsets (num_rows + 1 entries)
// and order (num_positions entries); allocates nothing. Stable: within a row, positions ascend.
// InvalidArgument, before anything is written, for negative sizes, num_positions >= 2^31, a
// null pointer the call needs (indices and order with positions; offsets always), or an index
// outside [0, num_rows) (the message names the first such position).
Status BuildSegments(const int32_t* indices, int64_t num_positions, int64_t num_rows,
                     int32_t* offsets, int32_t* order);

// A host plan with its own grow-only storage: Build reuses the capacity of earlier builds, so
// steady-state builds allocate nothing.
class SegmentPlan {
 public:
  // BuildSegments into this plan's storage. On error the plan is empty (num_rows 0).
  Status Build(const int32_t* indices, int64_t num_positions, int64_t num_rows);

  // Host pointers, valid until the next Build.
  SegmentsView view() const;
  int64_t num_rows() const { return num_rows_; }
  int64_t num_positions() const { return num_positions_; }
  const int32_t* offsets() const { return offsets_.data(); }
  const int32_t* order() const { return order_.data(); }

 private:
  int64_t num_rows_ = 0;
  int64_t num_positions_ = 0;
  std::vector<int32_t> offsets_{0};  // num_rows_ + 1 used
  std::vector<int32_t> order_;       // num_positions_ used
};

#if TESSERA_WITH_CUDA
// A device copy of a SegmentPlan in grow-only device buffers (allocated on the device current at
// Upload, over-allocated by half when they grow; freed by the destructor, through cudaFree,
// which waits for the device's queued work).
class DeviceSegments {
 public:
  DeviceSegments() = default;
  ~DeviceSegments();
  DeviceSegments(const DeviceSegments&) = delete;
  DeviceSegments& operator=(const DeviceSegments&) = delete;

  // Queues the copy of `plan` host -> device on `stream` and returns; the device arrays are
  // ready for work queued after it on the same stream. REQUIRES: `plan` is neither rebuilt nor
  // destroyed until the stream has passed the copy (synchronise first: an asynchronous copy may
  // read its host source after returning). Internal with the CUDA error string when an
  // allocation or copy fails (the view is then empty).
  Status Upload(const SegmentPlan& plan, struct CUstream_st* stream);

  // Device pointers of the last successful Upload.
  SegmentsView view() const;

 private:
  Status Reserve(void** buffer, size_t* capacity, size_t bytes, const char* what);

  SegmentsView view_;
  void* offsets_ = nullptr;
  size_t offsets_capacity_ = 0;  // bytes
  void* order_ = nullptr;
  size_t order_capacity_ = 0;  // bytes
};
#endif

}  // namespace tessera::kernels
