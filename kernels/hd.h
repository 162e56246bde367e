// TS_HD marks per-element math that both the CPU and the CUDA kernels call: __host__ __device__
// under nvcc, nothing otherwise. Keep cuda_runtime.h out of headers; this is all they need.
#pragma once

#if defined(__CUDACC__)
#define TS_HD __host__ __device__ __forceinline__
#else
#define TS_HD inline
#endif
