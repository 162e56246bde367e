// CPU embedding gather / pool and their scatter-add backwards. Index values and offsets are
// host-readable here, so they are checked before any output is written. Every loop runs in
// lookup (or bag, then position) order, so the sums are deterministic; the per-row inner loops
// over dim vectorise. The forwards cut their lookups or bags over the calling thread's OpenMP team
// (kernels/cpu_parallel.h). The backwards stay on one thread: cut by destination row, every thread
// walked all the lookups to find its own, and at 16 floats a row that walk cost more than the adds
// it shared (measured, docs/PERFORMANCE.md).
#include <algorithm>
#include <string>

#include "kernels/cpu_parallel.h"
#include "kernels/embedding.h"

namespace tessera::kernels {
namespace {

// Every indices[p] for p in [begin, end) must be a row of a num_rows-row matrix.
Status CheckIndices(const char* op, const int32_t* indices, int64_t begin, int64_t end,
                    int64_t num_rows) {
  for (int64_t p = begin; p < end; ++p) {
    if (indices[p] < 0 || indices[p] >= num_rows) {
      return Status::InvalidArgument(std::string(op) + ": position " + std::to_string(p) +
                                     " has index " + std::to_string(indices[p]) + " (num_rows " +
                                     std::to_string(num_rows) + ")");
    }
  }
  return OkStatus();
}

// offsets[0] >= 0 and offsets non-decreasing, so every bag is a valid (maybe empty) range.
Status CheckOffsets(const char* op, const int64_t* offsets, int64_t num_bags) {
  if (num_bags == 0) return OkStatus();
  if (offsets[0] < 0) {
    return Status::InvalidArgument(std::string(op) + ": offsets[0] is " +
                                   std::to_string(offsets[0]) + ", must be >= 0");
  }
  for (int64_t k = 0; k < num_bags; ++k) {
    if (offsets[k + 1] < offsets[k]) {
      return Status::InvalidArgument(std::string(op) + ": offsets decrease at bag " +
                                     std::to_string(k) + " (" + std::to_string(offsets[k]) +
                                     " -> " + std::to_string(offsets[k + 1]) + ")");
    }
  }
  return OkStatus();
}

// dst[d] += scale * src[d].
void AddScaledRow(const float* __restrict__ src, float scale, float* __restrict__ dst, int dim) {
  for (int d = 0; d < dim; ++d) dst[d] += scale * src[d];
}

// Calls fn(k, the first float of bag k) for the bags [begin, end) in order, stepping through the
// layout (one division for the first bag, none per bag after it).
template <typename Fn>
void ForEachBag(const BagLayout& layout, int dim, int64_t begin, int64_t end, const Fn& fn) {
  if (begin >= end) return;
  const int per_row = layout.bags_per_row;
  const int64_t row_stride =
      layout.row_stride != 0 ? layout.row_stride : static_cast<int64_t>(per_row) * dim;
  const int64_t next_row = row_stride - static_cast<int64_t>(per_row - 1) * dim;
  int64_t start = BagStart(layout, begin, dim);
  int field = static_cast<int>(begin % per_row);
  for (int64_t k = begin; k < end; ++k) {
    fn(k, start);
    if (++field == per_row) {
      field = 0;
      start += next_row;
    } else {
      start += dim;
    }
  }
}

}  // namespace

Status EmbeddingGatherCpu(const float* rows, int64_t num_rows, const int32_t* indices, float* out,
                          int64_t batch_size, int num_fields, int dim) {
  constexpr const char* kOp = "EmbeddingGather";
  TS_RETURN_IF_ERROR(
      internal::ValidateGatherArgs(kOp, rows, num_rows, indices, out, batch_size, num_fields, dim));
  const int64_t num_lookups = batch_size * num_fields;
  TS_RETURN_IF_ERROR(CheckIndices(kOp, indices, 0, num_lookups, num_rows));
  CpuParallelFor(num_lookups, kParallelGrainFloats / dim + 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      std::copy_n(rows + static_cast<int64_t>(indices[i]) * dim, dim, out + i * dim);
    }
  });
  return OkStatus();
}

Status EmbeddingGatherBackwardCpu(const int32_t* indices, const float* grad_out, float* grad_rows,
                                  int64_t num_rows, int64_t batch_size, int num_fields, int dim) {
  constexpr const char* kOp = "EmbeddingGatherBackward";
  TS_RETURN_IF_ERROR(internal::ValidateGatherArgs(kOp, grad_rows, num_rows, indices, grad_out,
                                                  batch_size, num_fields, dim));
  const int64_t num_lookups = batch_size * num_fields;
  TS_RETURN_IF_ERROR(CheckIndices(kOp, indices, 0, num_lookups, num_rows));
  for (int64_t i = 0; i < num_lookups; ++i) {
    AddScaledRow(grad_out + i * dim, 1.0f, grad_rows + static_cast<int64_t>(indices[i]) * dim, dim);
  }
  return OkStatus();
}

Status EmbeddingPoolCpu(const float* rows, int64_t num_rows, const int64_t* offsets,
                        const int32_t* indices, const float* weights, float* out, int64_t num_bags,
                        int dim, const BagLayout& layout) {
  constexpr const char* kOp = "EmbeddingPool";
  TS_RETURN_IF_ERROR(internal::ValidatePoolArgs(kOp, rows, num_rows, offsets, indices, out,
                                                num_bags, dim, layout));
  TS_RETURN_IF_ERROR(CheckOffsets(kOp, offsets, num_bags));
  if (num_bags == 0) return OkStatus();
  TS_RETURN_IF_ERROR(CheckIndices(kOp, indices, offsets[0], offsets[num_bags], num_rows));
  CpuParallelFor(num_bags, kParallelGrainFloats / dim + 1, 1, [&](int64_t begin, int64_t end) {
    ForEachBag(layout, dim, begin, end, [&](int64_t k, int64_t start) {
      float* bag = out + start;
      std::fill_n(bag, dim, 0.0f);
      for (int64_t p = offsets[k]; p < offsets[k + 1]; ++p) {
        const float weight = weights != nullptr ? weights[p] : 1.0f;
        AddScaledRow(rows + static_cast<int64_t>(indices[p]) * dim, weight, bag, dim);
      }
    });
  });
  return OkStatus();
}

Status EmbeddingPoolBackwardCpu(const int64_t* offsets, const int32_t* indices,
                                const float* weights, const float* grad_out, float* grad_rows,
                                int64_t num_rows, int64_t num_bags, int dim,
                                const BagLayout& layout) {
  constexpr const char* kOp = "EmbeddingPoolBackward";
  TS_RETURN_IF_ERROR(internal::ValidatePoolArgs(kOp, grad_rows, num_rows, offsets, indices,
                                                grad_out, num_bags, dim, layout));
  TS_RETURN_IF_ERROR(CheckOffsets(kOp, offsets, num_bags));
  if (num_bags == 0) return OkStatus();
  TS_RETURN_IF_ERROR(CheckIndices(kOp, indices, offsets[0], offsets[num_bags], num_rows));
  ForEachBag(layout, dim, 0, num_bags, [&](int64_t k, int64_t start) {
    for (int64_t p = offsets[k]; p < offsets[k + 1]; ++p) {
      const float weight = weights != nullptr ? weights[p] : 1.0f;
      AddScaledRow(grad_out + start, weight, grad_rows + static_cast<int64_t>(indices[p]) * dim,
                   dim);
    }
  });
  return OkStatus();
}

}  // namespace tessera::kernels
