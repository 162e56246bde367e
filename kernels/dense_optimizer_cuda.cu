// CUDA dense optimizer: one grid-stride kernel per optimizer over the TS_HD steps of
// optimizer_math.h. This file is compiled with -fmad=false (kernels/CMakeLists.txt) and the Adam
// step size comes from the host, so every element gets the CPU loop's bits
// (dense_optimizer_cpu.cc runs with -ffp-contract=off; sqrtf and division are IEEE on both).
#include <cuda_runtime.h>

#include "kernels/cuda_util.cuh"
#include "kernels/dense_optimizer.h"
#include "kernels/optimizer_math.h"

namespace tessera::kernels {
namespace {

using cuda::GridBlocks;
using cuda::kThreadsPerBlock;

__global__ void SgdKernel(float* __restrict__ w, const float* __restrict__ g, int64_t count,
                          SgdParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    w[i] = SgdStep(w[i], g[i], p);
  }
}

__global__ void AdagradKernel(float* __restrict__ w, float* __restrict__ acc,
                              const float* __restrict__ g, int64_t count, AdagradParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    float a = acc[i];
    w[i] = AdagradStep(w[i], g[i], &a, p);
    acc[i] = a;
  }
}

__global__ void AdamKernel(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                           const float* __restrict__ g, int64_t count, float step_size,
                           AdamParams p) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    float mi = m[i], vi = v[i];
    w[i] = AdamStep(w[i], g[i], &mi, &vi, step_size, p);
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

Status ApplyDenseUpdateCuda(const OptimizerParams& p, float* d_params, const float* d_grads,
                            int64_t count, float* d_slots, int64_t* step, cudaStream_t stream) {
  TS_RETURN_IF_ERROR(internal::ValidateDenseSlotsArgs(p, d_params, d_grads, count, d_slots, step));
  const unsigned blocks = GridBlocks(count);
  switch (p.kind) {
    case OptimizerKind::kSgd:
      if (count == 0) return OkStatus();
      TS_LAUNCH(SgdKernel, blocks, kThreadsPerBlock, stream, d_params, d_grads, count,
                SgdParams{p.lr});
      break;
    case OptimizerKind::kAdagrad:
      if (count == 0) return OkStatus();
      TS_LAUNCH(AdagradKernel, blocks, kThreadsPerBlock, stream, d_params, d_slots, d_grads, count,
                AdagradParams{p.lr, p.eps});
      break;
    case OptimizerKind::kAdam: {
      // Counted even for count == 0, as on the CPU, so every replica's counter moves together.
      const AdamParams adam{p.lr, p.beta1, p.beta2, p.eps};
      const float step_size = AdamStepSize(static_cast<float>(*step + 1), adam);
      ++*step;
      if (count == 0) return OkStatus();
      TS_LAUNCH(AdamKernel, blocks, kThreadsPerBlock, stream, d_params, d_slots, d_slots + count,
                d_grads, count, step_size, adam);
      break;
    }
    case OptimizerKind::kFtrl:  // row optimizers: rejected by ValidateDenseSlotsArgs
    case OptimizerKind::kRowwiseAdagrad:
      return OkStatus();
  }
  return internal::CudaLaunchStatus("ApplyDenseUpdateCuda");
}

}  // namespace tessera::kernels
