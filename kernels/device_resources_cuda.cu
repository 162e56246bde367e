// The cuBLAS handle of a kCuda DeviceResources (kernels/device_resources.h).
#include <cublas_v2.h>

#include "kernels/cuda_util.cuh"
#include "kernels/device_resources.h"

namespace tessera::kernels::internal {

namespace {

// Binds `cublas` to `stream` and sets its math mode. The dense kernels bind the handle to their
// context's stream at every call too; binding it here keeps work that a caller queues directly
// on the handle on the same stream. CUBLAS_DEFAULT_MATH keeps FP32 products in FP32 (TF32 is
// opt-in since CUDA 11); TF32 only where the user asked for it (--allow-tf32).
Status Configure(cublasHandle_t cublas, cudaStream_t stream, bool allow_tf32) {
  TS_RETURN_IF_ERROR(cuda::CublasStatus(cublasSetStream(cublas, stream), "cublasSetStream"));
  return cuda::CublasStatus(
      cublasSetMathMode(cublas, allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
      "cublasSetMathMode");
}

}  // namespace

StatusOr<cublasHandle_t> CreateCublasHandle(cudaStream_t stream, bool allow_tf32) {
  cublasHandle_t cublas = nullptr;
  TS_RETURN_IF_ERROR(cuda::CublasStatus(cublasCreate(&cublas), "cublasCreate"));
  const Status configured = Configure(cublas, stream, allow_tf32);
  if (!configured.ok()) {
    (void)cublasDestroy(cublas);
    return configured;
  }
  return cublas;
}

void DestroyCublasHandle(cublasHandle_t cublas) { (void)cublasDestroy(cublas); }

}  // namespace tessera::kernels::internal
