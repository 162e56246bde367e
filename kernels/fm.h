// Factorization-machine second-order interaction (Rendle 2010), the FM part of FM and DeepFM.
// Input: the field embeddings of each sample, batch_size x num_fields x dim (row-major; e.g.
// the output of EmbeddingGather). Output: one scalar per sample,
//   y[b] = sum_{f < g} <v[b,f,:], v[b,g,:]> = 0.5 * sum_d ((sum_f v[b,f,d])^2 - sum_f v[b,f,d]^2),
// computed in O(num_fields * dim) per sample (per-element math in kernels/ctr_math.h). The
// first-order term and the bias are a sum of 1-dim embeddings, which the model code adds.
// Memory, errors and devices as in kernels/dense.h: caller-owned buffers, outputs overwritten,
// kCuda pointers are device memory and work is queued on ctx.stream without a sync.
// InvalidArgument for batch_size < 0, num_fields <= 0, dim <= 0, or a null pointer with
// batch_size > 0. Thread-compatible: concurrent calls must not share outputs.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::kernels {

// Strides: sample b's embeddings start at v + b * v_stride (0: num_fields * dim, the dense
// layout; otherwise >= num_fields * dim, as when they are the first columns of the MLP input x0
// = [field embeddings | dense features]), and its gradient at dv + b * dv_stride likewise.
// `accumulate` adds the result to the output (y[b] + interaction, dv + gradient: the bits of the
// separate addition) instead of overwriting it.

// y: batch_size floats. REQUIRES: y does not overlap v.
Status FmForward(const DeviceContext& ctx, const float* v, float* y, int64_t batch_size,
                 int num_fields, int dim, int64_t v_stride = 0, bool accumulate = false);
Status FmForwardCpu(const float* v, float* y, int64_t batch_size, int num_fields, int dim,
                    int64_t v_stride = 0, bool accumulate = false);

// Given dy = d loss / d y (batch_size), writes dv[b,f,d] = dy[b] * (sum_g v[b,g,d] - v[b,f,d])
// (batch_size x num_fields x dim, or added to it). REQUIRES: dv overlaps neither v nor dy.
Status FmBackward(const DeviceContext& ctx, const float* v, const float* dy, float* dv,
                  int64_t batch_size, int num_fields, int dim, int64_t v_stride = 0,
                  int64_t dv_stride = 0, bool accumulate = false);
Status FmBackwardCpu(const float* v, const float* dy, float* dv, int64_t batch_size, int num_fields,
                     int dim, int64_t v_stride = 0, int64_t dv_stride = 0, bool accumulate = false);

#if TESSERA_WITH_CUDA
// One warp per sample, lanes over dim; no atomics, so the result is deterministic run to run
// and matches the CPU to float rounding (different summation order over dim).
Status FmForwardCuda(const float* d_v, float* d_y, int64_t batch_size, int num_fields, int dim,
                     struct CUstream_st* stream, int64_t v_stride = 0, bool accumulate = false);
Status FmBackwardCuda(const float* d_v, const float* d_dy, float* d_dv, int64_t batch_size,
                      int num_fields, int dim, struct CUstream_st* stream, int64_t v_stride = 0,
                      int64_t dv_stride = 0, bool accumulate = false);
#endif

namespace internal {
// Shared by the Cpu and Cuda entry points; checks pointer values and that every stride is 0 or
// at least num_fields * dim.
Status ValidateFmArgs(const char* op, std::initializer_list<const void*> required,
                      int64_t batch_size, int num_fields, int dim,
                      std::initializer_list<int64_t> strides = {});
}  // namespace internal

}  // namespace tessera::kernels
