// What the *_cuda.cu files share: the launch and shared-memory macros, the launch configuration
// of their grid-stride kernels, the conversion of CUDA and cuBLAS errors into a Status, and the
// warp shuffle sum. Included only by .cu files (it includes cuda_runtime.h and cublas_v2.h);
// public headers stay free of CUDA. Nothing here allocates or synchronises.
//
// Every kernel launch and every __shared__ array goes through these macros, so that the same
// source also builds for the emulated device (-DTESSERA_CUDA_EMULATION=ON, kernels/cuda_emu/):
//   TS_LAUNCH(kernel, grid, block, stream, args...)   kernel<<<grid, block, 0, stream>>>(args...)
//       for kernels whose threads never wait for each other (no __syncthreads, no shuffle or
//       vote, no shared memory): the emulator may run their threads as a plain loop;
//   TS_LAUNCH_COOPERATIVE(kernel, grid, block, stream, args...)
//       for every other kernel: the emulator runs each block's threads as fibers, switching in a
//       seeded random order at every barrier, and checks shared memory for races;
//   TS_SHARED(type, name, count)                      __shared__ type name[count]
//       one-dimensional only (index a 2-D tile by hand), so the emulator can watch every word.
// A kernel launched with TS_LAUNCH that reaches a barrier, a shuffle or TS_SHARED stops the
// emulated process with a message naming it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#if TESSERA_CUDA_EMULATION
#define TS_LAUNCH(kernel, grid, block, stream, ...)                                              \
  ::cuda_emu::Launch(#kernel, ::cuda_emu::LaunchMode::kIndependent, kernel, grid, block, stream, \
                     __VA_ARGS__)
#define TS_LAUNCH_COOPERATIVE(kernel, grid, block, stream, ...)                                  \
  ::cuda_emu::Launch(#kernel, ::cuda_emu::LaunchMode::kCooperative, kernel, grid, block, stream, \
                     __VA_ARGS__)
#define TS_SHARED(type, name, count)   \
  ::cuda_emu::SharedArray<type> name = \
      ::cuda_emu::DeclareShared<type>(count, #name, __FILE__, __LINE__)
#else
#define TS_LAUNCH(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#define TS_LAUNCH_COOPERATIVE(kernel, grid, block, stream, ...) \
  kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#define TS_SHARED(type, name, count) __shared__ type name[count]
#endif

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace tessera::kernels::cuda {

constexpr int kWarpSize = 32;
// Threads per block of every kernel launched through GridBlocks / WarpGridBlocks.
constexpr int kThreadsPerBlock = 256;
constexpr int kWarpsPerBlock = kThreadsPerBlock / kWarpSize;
// Grid cap, enough to fill any current GPU; the grid-stride loops cover larger inputs. On the
// emulated device the cap is small, so that every test input of more than 64 blocks takes the
// grid-stride loops through several passes (a GPU does so only on huge inputs), and an emulated
// grid makes fewer fibers.
#if TESSERA_CUDA_EMULATION
constexpr int64_t kMaxBlocks = 64;
#else
constexpr int64_t kMaxBlocks = 65536;
#endif
// Every lane of a warp, for the *_sync shuffles.
constexpr unsigned kFullMask = 0xffffffffu;

// Blocks of kThreadsPerBlock threads for one thread per item over `total` items (capped).
inline unsigned GridBlocks(int64_t total) {
  return static_cast<unsigned>(
      std::min(kMaxBlocks, (total + kThreadsPerBlock - 1) / kThreadsPerBlock));
}

// Blocks of kThreadsPerBlock threads for one warp per item over `items` items (capped).
inline unsigned WarpGridBlocks(int64_t items) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (items + kWarpsPerBlock - 1) / kWarpsPerBlock));
}

// OK for cudaSuccess, else Internal "<what>: <CUDA's error string>".
inline Status CudaStatus(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return OkStatus();
  return Status::Internal(what + ": " + cudaGetErrorString(err));
}

// OK for CUBLAS_STATUS_SUCCESS, else Internal "<what>: <cuBLAS's status string>".
inline Status CublasStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return OkStatus();
  return Status::Internal(std::string(what) + ": " + cublasGetStatusString(status));
}

// InvalidArgument "<op>: null cuBLAS handle" when `cublas` is null.
inline Status CheckHandle(const char* op, cublasHandle_t cublas) {
  if (cublas != nullptr) return OkStatus();
  return Status::InvalidArgument(std::string(op) + ": null cuBLAS handle");
}

// Butterfly sum over the 32 lanes of a warp; every lane returns the sum. REQUIRES: called by
// all lanes of the warp together (warp-uniform control flow).
template <typename T>
__device__ T WarpSum(T value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullMask, value, offset);
  }
  return value;
}

}  // namespace tessera::kernels::cuda
