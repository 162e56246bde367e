// CPU biased-MF kernels. One pass over the samples in index order (deterministic sums); per
// sample a blocked dot product and one fused loop that adds both factor gradients. Loops run
// over fixed blocks of kBlock floats so g++ -O2 vectorises them (its default "very cheap"
// cost model skips loops that would need a runtime epilogue); the remainder runs scalar.
#include <algorithm>
#include <string>

#include "kernels/cpu_simd.h"
#include "kernels/mf.h"
#include "kernels/mf_math.h"

namespace tessera::kernels {
namespace {

constexpr int kBlock = 8;

// kBlock independent partial sums break the add dependency chain and form SIMD lanes; the
// fixed combination order keeps the result deterministic.
[[gnu::always_inline]] inline float Dot(const float* __restrict__ p, const float* __restrict__ q,
                                        int dim) {
  float partial[kBlock] = {};
  int j = 0;
  for (; j + kBlock <= dim; j += kBlock) {
    for (int k = 0; k < kBlock; ++k) partial[k] += p[j + k] * q[j + k];
  }
  float sum = 0.0f;
  for (int k = 0; k < kBlock; ++k) sum += partial[k];
  for (; j < dim; ++j) sum += p[j] * q[j];
  return sum;
}

// The worker's finite check is the squared-error sum, not a test of each gradient value written:
// the rows a pass reads are finite (the servers check every row they write, server/shard.cc), so a
// gradient is non-finite only through a non-finite error, which makes the double sum non-finite,
// or through an overflow of err * factor, which then makes the updated weight non-finite in the
// server's check of the same step. Flagging every value cost the pass 15-25 % at dim 32 and 128
// (tessera_bench kernels), about 9 % of in-process MF; a flag per sample's error, 1-4 %.

// grad_p = base_p + d loss / d p and grad_q = base_q + d loss / d q over the dim factors of one
// sample. base is the gradient row itself (a row seen before in the batch) or a row of zeros (its
// first sample), which gives the bits of adding to a zeroed row. Each element's one read of base
// comes before its one write of grad, so base may be grad.
[[gnu::always_inline]] inline void AddFactorGrads(float* grad_p, float* grad_q, const float* base_p,
                                                  const float* base_q, const float* __restrict__ p,
                                                  const float* __restrict__ q, float err, float l2,
                                                  int dim) {
  int j = 0;
  for (; j + kBlock <= dim; j += kBlock) {
    float gp[kBlock], gq[kBlock];
    for (int k = 0; k < kBlock; ++k) {
      gp[k] = base_p[j + k] + MfFactorGrad(err, q[j + k], p[j + k], l2);
      gq[k] = base_q[j + k] + MfFactorGrad(err, p[j + k], q[j + k], l2);
    }
    for (int k = 0; k < kBlock; ++k) {
      grad_p[j + k] = gp[k];
      grad_q[j + k] = gq[k];
    }
  }
  for (; j < dim; ++j) {
    const float gp = base_p[j] + MfFactorGrad(err, q[j], p[j], l2);
    const float gq = base_q[j] + MfFactorGrad(err, p[j], q[j], l2);
    grad_p[j] = gp;
    grad_q[j] = gq;
  }
}

// grad = base + d loss / d own over the dim factors of one sample, one side of AddFactorGrads
// (the same operations on that side, in the same order; base may be grad, as there).
[[gnu::always_inline]] inline void AddSideGrads(float* grad, const float* base,
                                                const float* __restrict__ own,
                                                const float* __restrict__ other, float err,
                                                float l2, int dim) {
  int j = 0;
  for (; j + kBlock <= dim; j += kBlock) {
    float g[kBlock];
    for (int k = 0; k < kBlock; ++k)
      g[k] = base[j + k] + MfFactorGrad(err, other[j + k], own[j + k], l2);
    for (int k = 0; k < kBlock; ++k) grad[j + k] = g[k];
  }
  for (; j < dim; ++j) {
    const float g = base[j] + MfFactorGrad(err, other[j], own[j], l2);
    grad[j] = g;
  }
}

// Samples touch rows in random order, so without help the loop waits on DRAM for every row
// (four per sample, 9 cache lines each at dim 128). Fetching the rows of a sample a few samples
// ahead keeps several misses in flight; it changes no arithmetic. Wide rows want the fetch
// started earlier (measured with tessera_bench kernels: 2 samples ahead at dim 32, 8 at 128).
// The base of a gradient row's first sample in BatchGradientLoop (dims up to 1023).
constexpr int64_t kZeroRowFloats = 1024;
alignas(64) constexpr float kZeroRow[kZeroRowFloats] = {};

[[gnu::always_inline]] inline int64_t PrefetchAhead(int dim) { return dim >= 64 ? 8 : 2; }

[[gnu::always_inline]] inline void PrefetchRow(const float* row, int64_t stride) {
  const char* bytes = reinterpret_cast<const char*>(row);
  const int64_t size = stride * static_cast<int64_t>(sizeof(float));
  for (int64_t offset = 0; offset < size; offset += 64) __builtin_prefetch(bytes + offset);
  __builtin_prefetch(bytes + size - 1);
}

// The per-sample loops, out of line so that each is also compiled for AVX-512 and AVX2
// (TS_WIDE_SIMD; the loader picks the widest clone the CPU runs). The bits do not depend on the
// clone: each of kBlock lanes sums its own products in the same order at any vector width.
//
// The rows of a batch from KeyDeduper come in the order of their first samples (a row index is
// either one seen before or the next new one), so each row's first sample can write it instead
// of adding to zeros: the loop then needs no zeroed outputs, which at dim 128 saved a memset of
// about 10 MB a step. `zeros` is a row of MfRowStride zeros, or null for a batch in another order,
// whose outputs the caller zeroed.
[[gnu::noinline, TS_WIDE_SIMD]] double BatchGradientLoop(const MfBatch& b, float* user_grads,
                                                         float* item_grads, const float* zeros) {
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  double sq_error = 0.0;
  const int64_t ahead = PrefetchAhead(dim);
  // The next row index not seen yet; never matched without `zeros`.
  int32_t new_user = zeros != nullptr ? 0 : -1, new_item = zeros != nullptr ? 0 : -1;
  for (int64_t s = 0; s < b.num_samples; ++s) {
    if (s + ahead < b.num_samples) {
      const int64_t u = b.user_index[s + ahead], i = b.item_index[s + ahead];
      PrefetchRow(b.user_rows + u * stride, stride);
      PrefetchRow(b.item_rows + i * stride, stride);
      PrefetchRow(user_grads + u * stride, stride);
      PrefetchRow(item_grads + i * stride, stride);
    }
    const int32_t u = b.user_index[s], i = b.item_index[s];
    const float* p = b.user_rows + u * stride;
    const float* q = b.item_rows + i * stride;
    float* grad_p = user_grads + u * stride;
    float* grad_q = item_grads + i * stride;
    const bool first_p = u == new_user, first_q = i == new_item;
    new_user += first_p ? 1 : 0;  // indices are >= 0: -1 stays
    new_item += first_q ? 1 : 0;
    const float* base_p = first_p ? zeros : grad_p;
    const float* base_q = first_q ? zeros : grad_q;
    const float prediction = MfPrediction(b.global_mean, p[dim], q[dim], Dot(p, q, dim));
    const float err = MfError(b.ratings[s], prediction);
    sq_error += static_cast<double>(err) * err;
    const float bias_p = base_p[dim] + MfBiasGrad(err, p[dim], b.l2_bias);
    const float bias_q = base_q[dim] + MfBiasGrad(err, q[dim], b.l2_bias);
    AddFactorGrads(grad_p, grad_q, base_p, base_q, p, q, err, b.l2, dim);
    grad_p[dim] = bias_p;
    grad_q[dim] = bias_q;
  }
  return sq_error;
}

[[gnu::noinline, TS_WIDE_SIMD]] void ErrorsLoop(const MfBatch& b, int64_t begin, int64_t end,
                                                float* errors) {
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  const int64_t ahead = PrefetchAhead(dim);
  for (int64_t s = begin; s < end; ++s) {
    if (s + ahead < end) {
      PrefetchRow(b.user_rows + b.user_index[s + ahead] * stride, stride);
      PrefetchRow(b.item_rows + b.item_index[s + ahead] * stride, stride);
    }
    const float* p = b.user_rows + b.user_index[s] * stride;
    const float* q = b.item_rows + b.item_index[s] * stride;
    errors[s] = MfError(b.ratings[s], MfPrediction(b.global_mean, p[dim], q[dim], Dot(p, q, dim)));
  }
}

// `zeros` as in BatchGradientLoop (for this side's rows).
[[gnu::noinline, TS_WIDE_SIMD]] void SideGradsLoop(const MfBatch& b, const float* errors,
                                                   const int32_t* own_index,
                                                   const int32_t* other_index,
                                                   const float* own_rows, const float* other_rows,
                                                   float* grads, const float* zeros) {
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  const int64_t ahead = PrefetchAhead(dim);
  int32_t new_own = zeros != nullptr ? 0 : -1;  // as new_user in BatchGradientLoop
  for (int64_t s = 0; s < b.num_samples; ++s) {
    if (s + ahead < b.num_samples) {
      PrefetchRow(own_rows + own_index[s + ahead] * stride, stride);
      PrefetchRow(other_rows + other_index[s + ahead] * stride, stride);
      PrefetchRow(grads + own_index[s + ahead] * stride, stride);
    }
    const float* own = own_rows + own_index[s] * stride;
    const float* other = other_rows + other_index[s] * stride;
    float* g = grads + own_index[s] * stride;
    const bool first = own_index[s] == new_own;
    new_own += first ? 1 : 0;
    const float* base = first ? zeros : g;
    const float bias = base[dim] + MfBiasGrad(errors[s], own[dim], b.l2_bias);
    AddSideGrads(g, base, own, other, errors[s], b.l2, dim);
    g[dim] = bias;
  }
}

}  // namespace

namespace internal {

// Index values are only readable on the host, so the CPU kernels check them, before writing any
// output.
Status CheckMfIndices(const MfBatch& b, int64_t begin, int64_t end, bool* first_seen_order) {
  int32_t new_user = 0, new_item = 0;
  bool ordered = true;
  for (int64_t s = begin; s < end; ++s) {
    const int32_t u = b.user_index[s];
    const int32_t i = b.item_index[s];
    if (u < 0 || u >= b.num_users || i < 0 || i >= b.num_items) {
      return Status::InvalidArgument(
          "MfBatch: sample " + std::to_string(s) + " has user_index " + std::to_string(u) +
          " (num_users " + std::to_string(b.num_users) + "), item_index " + std::to_string(i) +
          " (num_items " + std::to_string(b.num_items) + ")");
    }
    ordered = ordered && u <= new_user && i <= new_item;
    new_user += u == new_user ? 1 : 0;
    new_item += i == new_item ? 1 : 0;
  }
  if (first_seen_order != nullptr) {
    *first_seen_order = ordered && new_user == b.num_users && new_item == b.num_items;
  }
  return OkStatus();
}

}  // namespace internal

Status MfBatchGradientCpu(const MfBatch& b, float* user_grads, float* item_grads,
                          double* sq_error_sum) {
  TS_RETURN_IF_ERROR(internal::ValidateMfGradientArgs(b, user_grads, item_grads));
  bool first_seen_order = false;
  TS_RETURN_IF_ERROR(internal::CheckMfIndices(b, 0, b.num_samples, &first_seen_order));
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  // Rows may come before their first sample, or have none, or be wider than the row of zeros:
  // then the outputs are zeroed and every sample adds.
  const bool first_writes = first_seen_order && stride <= kZeroRowFloats;
  if (!first_writes) {
    std::fill_n(user_grads, b.num_users * stride, 0.0f);
    std::fill_n(item_grads, b.num_items * stride, 0.0f);
  }
  const double sq_error =
      BatchGradientLoop(b, user_grads, item_grads, first_writes ? kZeroRow : nullptr);
  if (sq_error_sum != nullptr) *sq_error_sum = sq_error;
  return OkStatus();
}

Status MfErrorsCpu(const MfBatch& b, int64_t begin, int64_t end, float* errors) {
  // The gradient's checks without its outputs (this pass writes none): the rows stand in for
  // the gradient pointers, which it does not touch.
  TS_RETURN_IF_ERROR(internal::ValidateMfGradientArgs(b, b.user_rows, b.item_rows));
  if (begin < 0 || begin > end || end > b.num_samples) {
    return Status::InvalidArgument("MfErrorsCpu: range [" + std::to_string(begin) + ", " +
                                   std::to_string(end) + ") is not within [0, " +
                                   std::to_string(b.num_samples) + ")");
  }
  if (end > begin && errors == nullptr) {
    return Status::InvalidArgument("MfErrorsCpu: errors must be non-null");
  }
  TS_RETURN_IF_ERROR(internal::CheckMfIndices(b, begin, end));
  ErrorsLoop(b, begin, end, errors);
  return OkStatus();
}

Status MfSideGradsCpu(const MfBatch& b, const float* errors, MfSide side, float* grads) {
  const bool user = side == MfSide::kUser;
  TS_RETURN_IF_ERROR(
      internal::ValidateMfGradientArgs(b, user ? grads : b.user_rows, user ? b.item_rows : grads));
  if (b.num_samples > 0 && errors == nullptr) {
    return Status::InvalidArgument("MfSideGradsCpu: errors must be non-null");
  }
  bool first_seen_order = false;
  TS_RETURN_IF_ERROR(internal::CheckMfIndices(b, 0, b.num_samples, &first_seen_order));
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  // This side's rows ("own") get the gradient; the other side's factors enter it.
  const int32_t* own_index = user ? b.user_index : b.item_index;
  const int32_t* other_index = user ? b.item_index : b.user_index;
  const float* own_rows = user ? b.user_rows : b.item_rows;
  const float* other_rows = user ? b.item_rows : b.user_rows;
  const int64_t own_count = user ? b.num_users : b.num_items;
  // As the one-pass kernel: a batch whose rows come in the order of their first samples writes
  // each row at its first sample; any other is zeroed first.
  const bool first_writes = first_seen_order && stride <= kZeroRowFloats;
  if (!first_writes) std::fill_n(grads, own_count * stride, 0.0f);
  SideGradsLoop(b, errors, own_index, other_index, own_rows, other_rows, grads,
                first_writes ? kZeroRow : nullptr);
  return OkStatus();
}

double MfSquaredErrorSum(const float* errors, int64_t n) {
  double sum = 0.0;
  for (int64_t s = 0; s < n; ++s) sum += static_cast<double>(errors[s]) * errors[s];
  return sum;
}

Status MfPredictCpu(const MfBatch& b, float* predictions) {
  TS_RETURN_IF_ERROR(internal::ValidateMfPredictArgs(b, predictions));
  TS_RETURN_IF_ERROR(internal::CheckMfIndices(b, 0, b.num_samples));
  const int dim = b.dim;
  const int64_t stride = MfRowStride(dim);
  const int64_t ahead = PrefetchAhead(dim);
  for (int64_t s = 0; s < b.num_samples; ++s) {
    if (s + ahead < b.num_samples) {
      PrefetchRow(b.user_rows + b.user_index[s + ahead] * stride, stride);
      PrefetchRow(b.item_rows + b.item_index[s + ahead] * stride, stride);
    }
    const float* p = b.user_rows + b.user_index[s] * stride;
    const float* q = b.item_rows + b.item_index[s] * stride;
    predictions[s] = MfPrediction(b.global_mean, p[dim], q[dim], Dot(p, q, dim));
  }
  return OkStatus();
}

}  // namespace tessera::kernels
