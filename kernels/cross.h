// One DCN-v2 cross layer (Wang et al. 2021, "DCN V2", eq. 1), per sample:
//   z       = W x_l + b            (W: dim x dim, z[i] = sum_j W[i][j] x_l[j] + b[i])
//   x_{l+1} = x_0 (.) z + x_l      ((.) elementwise)
// over a batch of row-major batch_size x dim matrices x_0, x_l. A stack of L layers is L
// calls; layer 0 passes x_l = x_0. The product is one SGEMM (oneDNN / cuBLAS), the rest is
// the TS_HD math of kernels/ctr_math.h.
// Memory, errors, devices and the cuBLAS handle as in kernels/dense.h: caller-owned buffers
// (the backward's scratch included), kCuda pointers are device memory, work is queued on
// ctx.stream without a sync, `cublas` is bound to ctx.stream and ignored on kCpu.
// InvalidArgument for batch_size < 0 or > INT32_MAX, dim <= 0, or a null pointer the call needs
// (w, b, dw, db always; the batch buffers when batch_size > 0).
// Thread-compatible: concurrent calls must not share outputs or a cuBLAS handle.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "kernels/device.h"

struct cublasContext;

namespace tessera::kernels {

// Writes y = x_{l+1} (batch_size x dim) and, when z is non-null, z = W x_l + b (batch_size x
// dim), which the backward needs (save it while training; pass null for inference).
// x0 may equal xl. REQUIRES: y and z overlap neither each other nor the inputs.
Status CrossForward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x0,
                    const float* xl, const float* w, const float* b, float* z, float* y,
                    int64_t batch_size, int dim);
Status CrossForwardCpu(const float* x0, const float* xl, const float* w, const float* b, float* z,
                       float* y, int64_t batch_size, int dim);

// Floats of scratch CrossBackward needs: batch_size * dim (it holds d loss / d z).
inline int64_t CrossBackwardWorkspaceFloats(int64_t batch_size, int dim) {
  return batch_size * dim;
}

// Given dy = d loss / d x_{l+1} and the forward's x0, xl, w and z:
//   dx0 (batch_size x dim) is ADDED to: dx0 += dy (.) z. x_0 feeds every layer of the stack,
//       so the caller zeroes dx0 (or seeds it with x_0's other gradients) before the first
//       layer's backward, and for layer 0 (xl = x0) adds dxl to it afterwards.
//   dxl (batch_size x dim) is OVERWRITTEN: dxl = dy + (dy (.) x0) W. dxl may equal dy (in place).
//   dw (dim x dim) = (dy (.) x0)^T xl and db (dim) = column sums of dy (.) x0, OVERWRITTEN (a
//       batch of 0 rows writes zeros).
// workspace: CrossBackwardWorkspaceFloats(batch_size, dim) floats, contents unspecified after.
// REQUIRES: apart from dxl == dy, no output overlaps another output, an input or workspace.
Status CrossBackward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x0,
                     const float* xl, const float* w, const float* z, const float* dy, float* dx0,
                     float* dxl, float* dw, float* db, float* workspace, int64_t batch_size,
                     int dim);
Status CrossBackwardCpu(const float* x0, const float* xl, const float* w, const float* z,
                        const float* dy, float* dx0, float* dxl, float* dw, float* db,
                        float* workspace, int64_t batch_size, int dim);

#if TESSERA_WITH_CUDA
// Device twins. Match the CPU to float rounding (cuBLAS vs oneDNN blocking, fused
// multiply-adds), not bitwise; no atomics, so each is deterministic run to run.
Status CrossForwardCuda(struct cublasContext* cublas, const float* d_x0, const float* d_xl,
                        const float* d_w, const float* d_b, float* d_z, float* d_y,
                        int64_t batch_size, int dim, struct CUstream_st* stream);
Status CrossBackwardCuda(struct cublasContext* cublas, const float* d_x0, const float* d_xl,
                         const float* d_w, const float* d_z, const float* d_dy, float* d_dx0,
                         float* d_dxl, float* d_dw, float* d_db, float* d_workspace,
                         int64_t batch_size, int dim, struct CUstream_st* stream);
#endif

namespace internal {
// Shared by the Cpu and Cuda entry points; checks pointer values only.
Status ValidateCrossForwardArgs(const float* x0, const float* xl, const float* w, const float* b,
                                const float* y, int64_t batch_size, int dim);
Status ValidateCrossBackwardArgs(const float* x0, const float* xl, const float* w, const float* z,
                                 const float* dy, const float* dx0, const float* dxl,
                                 const float* dw, const float* db, const float* workspace,
                                 int64_t batch_size, int dim);
}  // namespace internal

}  // namespace tessera::kernels
