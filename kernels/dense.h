// Dense layers of the CTR models (the MLP towers of DeepFM / Wide&Deep / DCN-v2 and their loss):
// fully connected layer, ReLU, and sigmoid + binary cross-entropy, each as a forward and a
// backward kernel. Per-element math in kernels/ctr_math.h; matrix products are SGEMM (oneDNN
// on CPU, kernels/gemm_cpu.h; cuBLAS on CUDA). The model code composes the layers and owns every
// buffer: kernels never allocate, and keep no state between calls.
//
// Conventions (also used by kernels/fm.h, cross.h, embedding.h):
// - Matrices are row-major; a batch is batch_size rows. Sizes are explicit arguments.
// - Outputs are OVERWRITTEN unless the comment says "added to".
// - kCpu: every pointer is host memory. Loops sum in a fixed order (column sums by fixed blocks
//   of rows, kernels/cpu_parallel.h), so results are deterministic for a given instruction set
//   and product thread count (kernels/gemm_cpu.h).
// - kCuda: every pointer (loss sums included) is device memory; work is queued on ctx.stream
//   and the call returns after the launch, without synchronising. Kernels that multiply
//   matrices also take a cuBLAS handle (`cublas`, not owned): the call binds it to ctx.stream
//   (cublasSetStream) and passes alpha/beta from the host, so the handle must stay in the
//   default host pointer mode; its math mode and workspace are the caller's (cuBLAS default
//   math is full FP32). For kCpu `cublas` is ignored and may be null.
// - Errors: InvalidArgument for negative sizes, non-positive dimensions, a batch too large for
//   BLAS (batch_size > INT32_MAX) or a null pointer the call needs; nothing is written then.
//   FailedPrecondition for kCuda in a build without CUDA; Internal for a failed CUDA/cuBLAS call.
// Thread-compatible: concurrent calls must not share output buffers or a cuBLAS handle.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/status.h"
#include "kernels/device.h"

struct cublasContext;  // what cublasHandle_t points to; keeps cublas_v2.h out of headers

namespace tessera::kernels {

// ---- Fully connected layer: y = x w + b ----
// x: batch_size x in_dim; w: in_dim x out_dim; b: out_dim (may be null: no bias);
// y: batch_size x out_dim. REQUIRES: y overlaps none of x, w, b.
Status LinearForward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x,
                     const float* w, const float* b, float* y, int64_t batch_size, int in_dim,
                     int out_dim);
Status LinearForwardCpu(const float* x, const float* w, const float* b, float* y,
                        int64_t batch_size, int in_dim, int out_dim);

// Given dy = d loss / d y (batch_size x out_dim), writes
//   dx = dy w^T (batch_size x in_dim; dx may be null when the input needs no gradient, and w is
//        read only for dx, so it may then be null too),
//   dw = x^T dy (in_dim x out_dim), db = column sums of dy (out_dim; null when there is no bias).
// dw and db are OVERWRITTEN (a batch of 0 rows writes zeros), not accumulated: a layer applied
// once per step has one gradient. REQUIRES: outputs overlap neither each other nor the inputs.
Status LinearBackward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x,
                      const float* w, const float* dy, float* dx, float* dw, float* db,
                      int64_t batch_size, int in_dim, int out_dim);
Status LinearBackwardCpu(const float* x, const float* w, const float* dy, float* dx, float* dw,
                         float* db, int64_t batch_size, int in_dim, int out_dim);

// ---- Fully connected layer and ReLU in one: y = max(x w + b, 0) ----
// LinearForward then ReluForward, arguments as LinearForward. On the CPU one oneDNN matmul with
// the bias and the ReLU as its post-ops (kernels/gemm_cpu.h CpuLinearForward): no separate pass
// over y for either; the products may sum in another order than LinearForward's, and a NaN may
// stay NaN where ReluForward gives 0 (the finite checks stop such a step either way). On CUDA the
// two kernels.
Status LinearReluForward(const DeviceContext& ctx, struct cublasContext* cublas, const float* x,
                         const float* w, const float* b, float* y, int64_t batch_size, int in_dim,
                         int out_dim);
Status LinearReluForwardCpu(const float* x, const float* w, const float* b, float* y,
                            int64_t batch_size, int in_dim, int out_dim);

// ---- ReLU backward and the bias gradient in one pass ----
// dx = ReluBackward(y, dy) over rows x cols, and db (cols) = the column sums of dx: the same bits
// as ReluBackward then ColumnSum (kernels/dense_ops.h), in one pass over the CPU's buffers. dx may
// equal dy (in place); db overlaps nothing.
Status ReluBackwardColumnSum(const DeviceContext& ctx, const float* y, const float* dy, float* dx,
                             float* db, int64_t rows, int cols);
Status ReluBackwardColumnSumCpu(const float* y, const float* dy, float* dx, float* db, int64_t rows,
                                int cols);

// ---- ReLU, elementwise over `size` floats ----
// y = max(x, 0). y may equal x (in place); otherwise they must not overlap.
Status ReluForward(const DeviceContext& ctx, const float* x, float* y, int64_t size);
Status ReluForwardCpu(const float* x, float* y, int64_t size);

// dx = dy where y > 0, else 0, computed from the forward OUTPUT y (so an in-place forward is
// fine). dx may equal dy (in place); otherwise no overlap.
Status ReluBackward(const DeviceContext& ctx, const float* y, const float* dy, float* dx,
                    int64_t size);
Status ReluBackwardCpu(const float* y, const float* dy, float* dx, int64_t size);

// ---- Sigmoid + binary cross-entropy on one logit per sample ----
// logits, labels (in [0, 1]; soft labels allowed): batch_size each.
// probs[i] = sigmoid(logits[i]) (probs may be null); *loss_sum = sum_i bce(logits[i], labels[i])
// accumulated in double (loss_sum may be null; a SUM, divide by batch_size for the mean).
// Numerically stable: finite probabilities in [0, 1] and a finite loss for every finite logit.
Status SigmoidBceForward(const DeviceContext& ctx, const float* logits, const float* labels,
                         float* probs, double* loss_sum, int64_t batch_size);
Status SigmoidBceForwardCpu(const float* logits, const float* labels, float* probs,
                            double* loss_sum, int64_t batch_size);

// Fused backward of sigmoid + BCE: dlogits[i] = loss_scale * (sigmoid(logits[i]) - labels[i]),
// the gradient of loss_scale * sum_i bce(...). The models train on the MEAN loss over the batch
// and pass loss_scale = 1.0f / batch_size (1 / global batch under data parallelism).
// REQUIRES: dlogits overlaps neither input.
Status SigmoidBceBackward(const DeviceContext& ctx, const float* logits, const float* labels,
                          float* dlogits, int64_t batch_size, float loss_scale);
Status SigmoidBceBackwardCpu(const float* logits, const float* labels, float* dlogits,
                             int64_t batch_size, float loss_scale);

#if TESSERA_WITH_CUDA
// Device twins (see the conventions above). Results match the CPU to float rounding, not
// bitwise (different SGEMM blocking; nvcc fuses multiply-adds). The loss sum is reduced per
// block and added with a double atomicAdd per block (after a cudaMemsetAsync to zero), so its
// last bits vary run to run; bias gradients are deterministic column sums.
Status LinearForwardCuda(struct cublasContext* cublas, const float* d_x, const float* d_w,
                         const float* d_b, float* d_y, int64_t batch_size, int in_dim, int out_dim,
                         struct CUstream_st* stream);
Status LinearBackwardCuda(struct cublasContext* cublas, const float* d_x, const float* d_w,
                          const float* d_dy, float* d_dx, float* d_dw, float* d_db,
                          int64_t batch_size, int in_dim, int out_dim, struct CUstream_st* stream);
Status ReluForwardCuda(const float* d_x, float* d_y, int64_t size, struct CUstream_st* stream);
Status ReluBackwardCuda(const float* d_y, const float* d_dy, float* d_dx, int64_t size,
                        struct CUstream_st* stream);
Status SigmoidBceForwardCuda(const float* d_logits, const float* d_labels, float* d_probs,
                             double* d_loss_sum, int64_t batch_size, struct CUstream_st* stream);
// SigmoidBceForwardCuda with the loss summed by one block in a fixed order: the same bits every
// run (SigmoidBceForward takes it for a ctx.deterministic context).
Status SigmoidBceForwardDeterministicCuda(const float* d_logits, const float* d_labels,
                                          float* d_probs, double* d_loss_sum, int64_t batch_size,
                                          struct CUstream_st* stream);
Status SigmoidBceBackwardCuda(const float* d_logits, const float* d_labels, float* d_dlogits,
                              int64_t batch_size, float loss_scale, struct CUstream_st* stream);
#endif

namespace internal {
// Argument checks shared by the Cpu and Cuda entry points (pointer values only; never reads
// through them, as they may be device memory).
Status ValidateLinearForwardArgs(const float* x, const float* w, const float* y, int64_t batch_size,
                                 int in_dim, int out_dim);
Status ValidateLinearBackwardArgs(const float* x, const float* w, const float* dy, const float* dx,
                                  const float* dw, int64_t batch_size, int in_dim, int out_dim);
// InvalidArgument unless size >= 0 and, when size > 0, every pointer in `required` is non-null.
Status ValidateSizeAndPointers(const char* op, int64_t size,
                               std::initializer_list<const void*> required);
// InvalidArgument "<op>: batch_size ... exceeds the BLAS limit" when rows > INT32_MAX.
Status ValidateBlasRows(const char* op, int64_t rows);
// The Status of a dispatch on a device this build cannot run: FailedPrecondition for kCuda
// without CUDA, InvalidArgument for a value outside the enum. Shared by the CTR kernels.
Status UnsupportedDevice(const char* op, Device device);

// out[j] = sum_i m[i * cols + j] (rows x cols): each block of 256 rows summed in row order, the
// blocks' sums added in block order, the blocks cut over the calling thread's OpenMP team (the
// same bits on any number of threads; dense_cpu.cc). Host memory. Shared with the cross layer.
void ColumnSumCpu(const float* m, int64_t rows, int cols, float* out);

#if TESSERA_WITH_CUDA
// Row-major C (m x n) = alpha * op(A) op(B) + beta * C on `stream`, op = transpose when the flag
// is set; lda/ldb/ldc are row strides. Binds `cublas` to `stream`. Internal with the cuBLAS
// status string on failure.
Status SgemmRowMajorCuda(struct cublasContext* cublas, struct CUstream_st* stream, bool trans_a,
                         bool trans_b, int m, int n, int k, float alpha, const float* d_a, int lda,
                         const float* d_b, int ldb, float beta, float* d_c, int ldc);
// Device ColumnSumCpu: deterministic (fixed reduction order), no atomics. Queued on `stream`.
Status ColumnSumCuda(const float* d_m, int64_t rows, int cols, float* d_out,
                     struct CUstream_st* stream);
#endif
}  // namespace internal

}  // namespace tessera::kernels
