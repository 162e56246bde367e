// CPU DCN-v2 cross layer: the product W x_l (and, backward, dW and dz W) is one sgemm on the
// row-major batch (kernels/gemm_cpu.h); the elementwise parts are single vectorisable passes over
// the ctr_math.h functions, cut by element over the calling thread's OpenMP team
// (kernels/cpu_parallel.h; the bias gradient is ColumnSumCpu's blocked sum), so the cut changes
// no bit. Deterministic for a given instruction set and product thread count.
#include <algorithm>

#include "kernels/cpu_parallel.h"
#include "kernels/cross.h"
#include "kernels/ctr_math.h"
#include "kernels/dense.h"
#include "kernels/gemm_cpu.h"

namespace tessera::kernels {

Status CrossForwardCpu(const float* x0, const float* xl, const float* w, const float* b, float* z,
                       float* y, int64_t batch_size, int dim) {
  TS_RETURN_IF_ERROR(internal::ValidateCrossForwardArgs(x0, xl, w, b, y, batch_size, dim));
  if (batch_size == 0) return OkStatus();
  // Without a z buffer the pre-activation is built in y and finished in place.
  float* pre = z != nullptr ? z : y;
  CpuParallelFor(batch_size, kParallelGrainFloats / dim + 1, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::copy_n(b, dim, pre + i * dim);
  });
  // pre (B x dim) += xl (B x dim) W^T: row r of the product is W x_l of sample r.
  TS_RETURN_IF_ERROR(
      CpuSgemm(false, true, batch_size, dim, dim, 1.0f, xl, dim, w, dim, 1.0f, pre, dim));
  CpuParallelFor(batch_size * dim, kParallelGrainFloats, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = CrossOutput(x0[i], pre[i], xl[i]);
  });
  return OkStatus();
}

Status CrossBackwardCpu(const float* x0, const float* xl, const float* w, const float* z,
                        const float* dy, float* dx0, float* dxl, float* dw, float* db,
                        float* workspace, int64_t batch_size, int dim) {
  TS_RETURN_IF_ERROR(internal::ValidateCrossBackwardArgs(x0, xl, w, z, dy, dx0, dxl, dw, db,
                                                         workspace, batch_size, dim));
  float* dz = workspace;
  // dy is read before dxl[i] is written, so dxl == dy works.
  CpuParallelFor(batch_size * dim, kParallelGrainFloats, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = dy[i];
      dz[i] = CrossGradZ(g, x0[i]);
      dx0[i] += CrossGradX0(g, z[i]);
      dxl[i] = g;  // the identity path; the product path is added below
    }
  });
  internal::ColumnSumCpu(dz, batch_size, dim, db);
  if (batch_size == 0) {
    std::fill_n(dw, static_cast<int64_t>(dim) * dim, 0.0f);
    return OkStatus();
  }
  // dW (dim x dim) = dz^T (dim x B) xl (B x dim).
  TS_RETURN_IF_ERROR(
      CpuSgemm(true, false, dim, dim, batch_size, 1.0f, dz, dim, xl, dim, 0.0f, dw, dim));
  // dxl (B x dim) += dz (B x dim) W (dim x dim).
  return CpuSgemm(false, false, batch_size, dim, dim, 1.0f, dz, dim, w, dim, 1.0f, dxl, dim);
}

}  // namespace tessera::kernels
