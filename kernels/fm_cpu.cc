// CPU FM interaction. Per sample, the embedding dimension is processed in chunks of kChunk
// floats whose per-field sums live on the stack (no allocation, any dim); inside a chunk the
// loops run over fixed blocks of kBlock floats so g++ -O2 vectorises them (as in mf_cpu.cc),
// with a scalar remainder. Samples and fields are visited in index order: deterministic.
#include <algorithm>

#include "kernels/ctr_math.h"
#include "kernels/fm.h"

namespace tessera::kernels {
namespace {

constexpr int kChunk = 64;
constexpr int kBlock = 8;

// sum[k] += row[k] and sum_sq[k] += row[k]^2 for k < width.
void AddFieldSums(const float* __restrict__ row, float* __restrict__ sum,
                  float* __restrict__ sum_sq, int width) {
  int k = 0;
  for (; k + kBlock <= width; k += kBlock) {
    for (int i = 0; i < kBlock; ++i) {
      sum[k + i] += row[k + i];
      sum_sq[k + i] += row[k + i] * row[k + i];
    }
  }
  for (; k < width; ++k) {
    sum[k] += row[k];
    sum_sq[k] += row[k] * row[k];
  }
}

// sum[k] += row[k] for k < width.
void AddFieldSum(const float* __restrict__ row, float* __restrict__ sum, int width) {
  int k = 0;
  for (; k + kBlock <= width; k += kBlock) {
    for (int i = 0; i < kBlock; ++i) sum[k + i] += row[k + i];
  }
  for (; k < width; ++k) sum[k] += row[k];
}

// grad[k] = FmGrad(dy, sum[k], row[k]) for k < width.
void FieldGrad(const float* __restrict__ row, const float* __restrict__ sum, float dy,
               float* __restrict__ grad, int width) {
  int k = 0;
  for (; k + kBlock <= width; k += kBlock) {
    for (int i = 0; i < kBlock; ++i) grad[k + i] = FmGrad(dy, sum[k + i], row[k + i]);
  }
  for (; k < width; ++k) grad[k] = FmGrad(dy, sum[k], row[k]);
}

}  // namespace

Status FmForwardCpu(const float* v, float* y, int64_t batch_size, int num_fields, int dim) {
  TS_RETURN_IF_ERROR(internal::ValidateFmArgs("FmForward", {v, y}, batch_size, num_fields, dim));
  const int64_t sample_stride = static_cast<int64_t>(num_fields) * dim;
  for (int64_t b = 0; b < batch_size; ++b) {
    const float* sample = v + b * sample_stride;
    float total = 0.0f;
    for (int d0 = 0; d0 < dim; d0 += kChunk) {
      const int width = std::min(kChunk, dim - d0);
      float sum[kChunk] = {};
      float sum_sq[kChunk] = {};
      for (int f = 0; f < num_fields; ++f) {
        AddFieldSums(sample + static_cast<int64_t>(f) * dim + d0, sum, sum_sq, width);
      }
      for (int k = 0; k < width; ++k) total += FmInteraction(sum[k], sum_sq[k]);
    }
    y[b] = total;
  }
  return OkStatus();
}

Status FmBackwardCpu(const float* v, const float* dy, float* dv, int64_t batch_size, int num_fields,
                     int dim) {
  TS_RETURN_IF_ERROR(
      internal::ValidateFmArgs("FmBackward", {v, dy, dv}, batch_size, num_fields, dim));
  const int64_t sample_stride = static_cast<int64_t>(num_fields) * dim;
  for (int64_t b = 0; b < batch_size; ++b) {
    const float* sample = v + b * sample_stride;
    float* grad = dv + b * sample_stride;
    for (int d0 = 0; d0 < dim; d0 += kChunk) {
      const int width = std::min(kChunk, dim - d0);
      float sum[kChunk] = {};
      for (int f = 0; f < num_fields; ++f) {
        AddFieldSum(sample + static_cast<int64_t>(f) * dim + d0, sum, width);
      }
      for (int f = 0; f < num_fields; ++f) {
        const int64_t offset = static_cast<int64_t>(f) * dim + d0;
        FieldGrad(sample + offset, sum, dy[b], grad + offset, width);
      }
    }
  }
  return OkStatus();
}

}  // namespace tessera::kernels
