#include "kernels/segments.h"

#include <algorithm>
#include <limits>
#include <string>

namespace tessera::kernels {

Status BuildSegments(const int32_t* indices, int64_t num_positions, int64_t num_rows,
                     int32_t* offsets, int32_t* order) {
  if (num_positions < 0 || num_rows < 0) {
    return Status::InvalidArgument(
        "BuildSegments: sizes must be >= 0, got num_positions=" + std::to_string(num_positions) +
        " num_rows=" + std::to_string(num_rows));
  }
  if (num_positions > std::numeric_limits<int32_t>::max()) {
    return Status::InvalidArgument("BuildSegments: " + std::to_string(num_positions) +
                                   " positions do not fit the plan's int32 positions");
  }
  if (offsets == nullptr || (num_positions > 0 && (indices == nullptr || order == nullptr))) {
    return Status::InvalidArgument("BuildSegments: null indices, offsets or order");
  }
  for (int64_t p = 0; p < num_positions; ++p) {
    if (indices[p] < 0 || indices[p] >= num_rows) {
      return Status::InvalidArgument("BuildSegments: position " + std::to_string(p) +
                                     " has index " + std::to_string(indices[p]) + " (num_rows " +
                                     std::to_string(num_rows) + ")");
    }
  }
  // Counting sort with offsets as the only extra array: count row r into offsets[r + 1], prefix
  // sums turn offsets[r] into the start of row r, placing each position advances offsets[r] to the
  // start of row r + 1, and one shift restores the starts. Positions are placed in increasing
  // order, so each row's list ascends (stable).
  std::fill_n(offsets, num_rows + 1, 0);
  for (int64_t p = 0; p < num_positions; ++p) ++offsets[indices[p] + 1];
  for (int64_t r = 0; r < num_rows; ++r) offsets[r + 1] += offsets[r];
  for (int64_t p = 0; p < num_positions; ++p) {
    order[offsets[indices[p]]++] = static_cast<int32_t>(p);
  }
  for (int64_t r = num_rows; r > 0; --r) offsets[r] = offsets[r - 1];
  offsets[0] = 0;
  return OkStatus();
}

Status SegmentPlan::Build(const int32_t* indices, int64_t num_positions, int64_t num_rows) {
  num_rows_ = 0;
  num_positions_ = 0;
  if (num_rows >= 0 && num_positions >= 0 && num_positions <= std::numeric_limits<int32_t>::max()) {
    // resize keeps the capacity of earlier, larger builds.
    if (offsets_.size() < static_cast<size_t>(num_rows) + 1) offsets_.resize(num_rows + 1);
    if (order_.size() < static_cast<size_t>(num_positions)) order_.resize(num_positions);
  }
  TS_RETURN_IF_ERROR(
      BuildSegments(indices, num_positions, num_rows, offsets_.data(), order_.data()));
  num_rows_ = num_rows;
  num_positions_ = num_positions;
  return OkStatus();
}

SegmentsView SegmentPlan::view() const {
  SegmentsView v;
  v.num_rows = num_rows_;
  v.num_positions = num_positions_;
  v.offsets = offsets_.data();
  v.order = order_.data();
  return v;
}

}  // namespace tessera::kernels
