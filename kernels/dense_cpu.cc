// CPU dense layers: matrix products through oneDNN (kernels/gemm_cpu.h; row-major, so no copies or
// transposes of the caller's buffers): sgemm, and for a layer with a ReLU its matmul primitive
// with the bias and the ReLU fused, so neither takes a pass of its own over the output; the ReLU's
// backward pass sums the bias gradient as it goes. Everything else plain loops over the TS_HD math
// of ctr_math.h that g++ vectorises at the -O3 of Release builds (CMakeLists.txt; at -O2 they ran
// scalar). The sigmoid/BCE loop calls expf and stays scalar; it is O(batch) next to the
// O(batch * dim^2) products.
#include <algorithm>
#include <vector>

#include "kernels/cpu_parallel.h"
#include "kernels/ctr_math.h"
#include "kernels/dense.h"
#include "kernels/gemm_cpu.h"

namespace tessera::kernels {
namespace {

// Column sums go by blocks of kSumRows rows: each block sums its rows in order into its own
// partial row, the blocks run cut over the calling thread's OpenMP team (kernels/cpu_parallel.h),
// and the partials are added in block order. Two threads stream disjoint rows (cut by columns,
// they shared every row's cache lines and ran no faster than one), and the order of the sum is
// fixed by the block size alone, so the bits do not depend on the thread count. A matrix of at
// most kSumRows rows is one block: the plain sum in row order.
constexpr int64_t kSumRows = 256;

// out[j] = the blocked sum over rows i of what add_row(i, acc) adds into acc[j] (acc: cols
// floats, zeroed per block); add_row may write its own outputs of row i as it goes.
template <typename AddRow>
void BlockedColumnSums(int64_t rows, int cols, float* out, const AddRow& add_row) {
  const int64_t blocks = (rows + kSumRows - 1) / kSumRows;
  std::fill_n(out, cols, 0.0f);
  if (blocks <= 1) {
    for (int64_t i = 0; i < rows; ++i) add_row(i, out);
    return;
  }
  // The calling thread's scratch, named through a plain pointer in the team's threads (a
  // thread_local named there would be their own).
  thread_local std::vector<float> scratch;
  scratch.assign(static_cast<size_t>(blocks) * cols, 0.0f);
  float* const partials = scratch.data();
  const int64_t grain = kParallelGrainFloats / (kSumRows * std::max(cols, 1)) + 1;
  CpuParallelFor(blocks, grain, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      float* acc = partials + k * cols;
      for (int64_t i = k * kSumRows; i < std::min(rows, (k + 1) * kSumRows); ++i) add_row(i, acc);
    }
  });
  for (int64_t k = 0; k < blocks; ++k) {
    const float* __restrict__ partial = partials + k * cols;
    float* __restrict__ sum = out;
    for (int j = 0; j < cols; ++j) sum[j] += partial[j];
  }
}

}  // namespace

namespace internal {

void ColumnSumCpu(const float* m, int64_t rows, int cols, float* out) {
  BlockedColumnSums(rows, cols, out, [&](int64_t i, float* __restrict__ sum) {
    const float* __restrict__ row = m + i * cols;
    for (int j = 0; j < cols; ++j) sum[j] += row[j];
  });
}

}  // namespace internal

Status LinearForwardCpu(const float* x, const float* w, const float* b, float* y,
                        int64_t batch_size, int in_dim, int out_dim) {
  TS_RETURN_IF_ERROR(internal::ValidateLinearForwardArgs(x, w, y, batch_size, in_dim, out_dim));
  if (batch_size == 0) return OkStatus();
  // Broadcasting the bias into y first lets SGEMM add the product to it (beta = 1): one pass
  // over y instead of a second one after the product.
  float beta = 0.0f;
  if (b != nullptr) {
    for (int64_t i = 0; i < batch_size; ++i) std::copy_n(b, out_dim, y + i * out_dim);
    beta = 1.0f;
  }
  return CpuSgemm(false, false, batch_size, out_dim, in_dim, 1.0f, x, in_dim, w, out_dim, beta, y,
                  out_dim);
}

Status LinearBackwardCpu(const float* x, const float* w, const float* dy, float* dx, float* dw,
                         float* db, int64_t batch_size, int in_dim, int out_dim) {
  TS_RETURN_IF_ERROR(
      internal::ValidateLinearBackwardArgs(x, w, dy, dx, dw, batch_size, in_dim, out_dim));
  if (db != nullptr) internal::ColumnSumCpu(dy, batch_size, out_dim, db);
  if (batch_size == 0) {
    // A product over an empty batch is zero; not left to SGEMM's k = 0 corner case.
    std::fill_n(dw, static_cast<int64_t>(in_dim) * out_dim, 0.0f);
    return OkStatus();
  }
  // dw (in x out) = x^T (in x B) dy (B x out).
  TS_RETURN_IF_ERROR(CpuSgemm(true, false, in_dim, out_dim, batch_size, 1.0f, x, in_dim, dy,
                              out_dim, 0.0f, dw, out_dim));
  if (dx == nullptr) return OkStatus();
  // dx (B x in) = dy (B x out) w^T (out x in).
  return CpuSgemm(false, true, batch_size, in_dim, out_dim, 1.0f, dy, out_dim, w, out_dim, 0.0f, dx,
                  in_dim);
}

Status LinearReluForwardCpu(const float* x, const float* w, const float* b, float* y,
                            int64_t batch_size, int in_dim, int out_dim) {
  TS_RETURN_IF_ERROR(internal::ValidateLinearForwardArgs(x, w, y, batch_size, in_dim, out_dim));
  if (batch_size == 0) return OkStatus();
  if (!GemmIsOneDnn()) {  // OpenBLAS (TESSERA_CPU_GEMM): the two layers of the builds before
    TS_RETURN_IF_ERROR(LinearForwardCpu(x, w, b, y, batch_size, in_dim, out_dim));
    return ReluForwardCpu(y, y, batch_size * out_dim);
  }
  return CpuLinearForward(x, w, b, y, batch_size, in_dim, out_dim, /*relu=*/true);
}

Status ReluBackwardColumnSumCpu(const float* y, const float* dy, float* dx, float* db, int64_t rows,
                                int cols) {
  TS_RETURN_IF_ERROR(
      internal::ValidateSizeAndPointers("ReluBackwardColumnSum", rows * cols, {y, dy, dx}));
  if (db == nullptr) return Status::InvalidArgument("ReluBackwardColumnSum: db must be non-null");
  // Row by row, as ColumnSumCpu adds: the same bits as the two passes.
  BlockedColumnSums(rows, cols, db, [&](int64_t i, float* __restrict__ sum) {
    const float* __restrict__ yi = y + i * cols;
    const float* dyi = dy + i * cols;
    float* dxi = dx + i * cols;
    for (int j = 0; j < cols; ++j) {
      const float g = ReluGrad(yi[j], dyi[j]);
      dxi[j] = g;
      sum[j] += g;
    }
  });
  return OkStatus();
}

Status ReluForwardCpu(const float* x, float* y, int64_t size) {
  TS_RETURN_IF_ERROR(internal::ValidateSizeAndPointers("ReluForward", size, {x, y}));
  for (int64_t i = 0; i < size; ++i) y[i] = Relu(x[i]);
  return OkStatus();
}

Status ReluBackwardCpu(const float* y, const float* dy, float* dx, int64_t size) {
  TS_RETURN_IF_ERROR(internal::ValidateSizeAndPointers("ReluBackward", size, {y, dy, dx}));
  for (int64_t i = 0; i < size; ++i) dx[i] = ReluGrad(y[i], dy[i]);
  return OkStatus();
}

Status SigmoidBceForwardCpu(const float* logits, const float* labels, float* probs,
                            double* loss_sum, int64_t batch_size) {
  TS_RETURN_IF_ERROR(
      internal::ValidateSizeAndPointers("SigmoidBceForward", batch_size, {logits, labels}));
  if (probs != nullptr) {
    for (int64_t i = 0; i < batch_size; ++i) probs[i] = Sigmoid(logits[i]);
  }
  if (loss_sum != nullptr) {
    double sum = 0.0;
    for (int64_t i = 0; i < batch_size; ++i) sum += SigmoidBce(logits[i], labels[i]);
    *loss_sum = sum;
  }
  return OkStatus();
}

Status SigmoidBceBackwardCpu(const float* logits, const float* labels, float* dlogits,
                             int64_t batch_size, float loss_scale) {
  TS_RETURN_IF_ERROR(internal::ValidateSizeAndPointers("SigmoidBceBackward", batch_size,
                                                       {logits, labels, dlogits}));
  for (int64_t i = 0; i < batch_size; ++i) {
    dlogits[i] = SigmoidBceGrad(logits[i], labels[i], loss_scale);
  }
  return OkStatus();
}

}  // namespace tessera::kernels
