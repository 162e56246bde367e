// CPU FM interaction. Per sample, the embedding dimension is processed in chunks of kChunk
// floats whose per-field sums live on the stack (no allocation, any dim); inside a chunk the
// loops run over fixed blocks of kBlock floats so g++ -O2 vectorises them (as in mf_cpu.cc),
// with a scalar remainder. Samples and fields are visited in index order: deterministic. The
// samples are cut over the calling thread's OpenMP team (kernels/cpu_parallel.h); each sample is
// computed alone, so the cut does not change a bit.
#include <algorithm>

#include "kernels/cpu_parallel.h"
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

// grad[k] = FmGrad(dy, sum[k], row[k]) for k < width (Accumulate: added to grad[k]).
template <bool Accumulate>
void FieldGrad(const float* __restrict__ row, const float* __restrict__ sum, float dy,
               float* __restrict__ grad, int width) {
  auto put = [](float* out, float g) { *out = Accumulate ? *out + g : g; };
  int k = 0;
  for (; k + kBlock <= width; k += kBlock) {
    for (int i = 0; i < kBlock; ++i) put(&grad[k + i], FmGrad(dy, sum[k + i], row[k + i]));
  }
  for (; k < width; ++k) put(&grad[k], FmGrad(dy, sum[k], row[k]));
}

// One sample's interaction: v holds its num_fields x dim embeddings.
float SampleInteraction(const float* v, int num_fields, int dim) {
  float total = 0.0f;
  for (int d0 = 0; d0 < dim; d0 += kChunk) {
    const int width = std::min(kChunk, dim - d0);
    float sum[kChunk] = {};
    float sum_sq[kChunk] = {};
    for (int f = 0; f < num_fields; ++f) {
      AddFieldSums(v + static_cast<int64_t>(f) * dim + d0, sum, sum_sq, width);
    }
    for (int k = 0; k < width; ++k) total += FmInteraction(sum[k], sum_sq[k]);
  }
  return total;
}

// One sample's gradient into grad (num_fields x dim; Accumulate: added to it).
template <bool Accumulate>
void SampleGrad(const float* v, float dy, float* grad, int num_fields, int dim) {
  for (int d0 = 0; d0 < dim; d0 += kChunk) {
    const int width = std::min(kChunk, dim - d0);
    float sum[kChunk] = {};
    for (int f = 0; f < num_fields; ++f) {
      AddFieldSum(v + static_cast<int64_t>(f) * dim + d0, sum, width);
    }
    for (int f = 0; f < num_fields; ++f) {
      const int64_t offset = static_cast<int64_t>(f) * dim + d0;
      FieldGrad<Accumulate>(v + offset, sum, dy, grad + offset, width);
    }
  }
}

}  // namespace

Status FmForwardCpu(const float* v, float* y, int64_t batch_size, int num_fields, int dim,
                    int64_t v_stride, bool accumulate) {
  TS_RETURN_IF_ERROR(
      internal::ValidateFmArgs("FmForward", {v, y}, batch_size, num_fields, dim, {v_stride}));
  const int64_t width = static_cast<int64_t>(num_fields) * dim;
  const int64_t stride = v_stride != 0 ? v_stride : width;
  CpuParallelFor(batch_size, kParallelGrainFloats / width + 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float interaction = SampleInteraction(v + b * stride, num_fields, dim);
      y[b] = accumulate ? y[b] + interaction : interaction;
    }
  });
  return OkStatus();
}

Status FmBackwardCpu(const float* v, const float* dy, float* dv, int64_t batch_size, int num_fields,
                     int dim, int64_t v_stride, int64_t dv_stride, bool accumulate) {
  TS_RETURN_IF_ERROR(internal::ValidateFmArgs("FmBackward", {v, dy, dv}, batch_size, num_fields,
                                              dim, {v_stride, dv_stride}));
  const int64_t width = static_cast<int64_t>(num_fields) * dim;
  const int64_t in_stride = v_stride != 0 ? v_stride : width;
  const int64_t out_stride = dv_stride != 0 ? dv_stride : width;
  CpuParallelFor(batch_size, kParallelGrainFloats / width + 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* sample = v + b * in_stride;
      float* grad = dv + b * out_stride;
      if (accumulate) {
        SampleGrad<true>(sample, dy[b], grad, num_fields, dim);
      } else {
        SampleGrad<false>(sample, dy[b], grad, num_fields, dim);
      }
    }
  });
  return OkStatus();
}

}  // namespace tessera::kernels
