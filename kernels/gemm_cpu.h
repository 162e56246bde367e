// The CPU matrix product of the CTR layers (dense_cpu.cc, cross_cpu.cc):
// C = alpha op(A) op(B) + beta C on row-major matrices, through oneDNN's matmul primitive
// (Debian's libdnnl-dev), made once per product shape and reused: the forward layers' and the
// backward products alike, a transposed operand being the same buffer read with swapped strides
// (a product of fewer than 16 columns, a matrix-vector one, goes to oneDNN's sgemm call).
// oneDNN picks its JIT kernel from CPUID as the process starts, so a processor newer than the
// library still gets its widest vector unit. Debian's OpenBLAS 0.3.21 picks from
// a table of the processors it knew, and on an AVX-512 Xeon it does not know it ran its SSE3
// kernels at a quarter of the rate (docs/PERFORMANCE.md, "Dense layers through oneDNN").
//
// Threads: Debian's oneDNN is the OpenMP build. A product runs on the calling thread's OpenMP
// thread count, which SetGemmThreads sets for that thread alone (the worker's compute thread;
// DeviceResources does it from DeviceOptions::gemm_threads). The bits of a product depend on the
// kernel oneDNN chose, so on the processor's instruction set, and on that thread count; the same
// machine kind and the same count reproduce them.
//
// TESSERA_CPU_GEMM=openblas in the environment sends the products to OpenBLAS's cblas_sgemm
// instead (libopenblas.so.0, loaded on first use), the library of the builds before oneDNN: for
// comparing the two (the CTR test's before/after check) and as a way out should oneDNN misbehave
// on some processor. OpenBLAS's thread count is the process's, not the thread's: the last
// SetGemmThreads sets it.
//
// Thread-safe: concurrent products from several threads (in-process workers) are independent.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tessera::kernels {

// C (m x n) = alpha op(A) op(B) + beta C; op(A) is m x k, op(B) is k x n; lda, ldb, ldc are row
// strides. With beta 0, C is overwritten (never read). Internal for an error oneDNN reports
// (arguments the caller checked, so a bug or an exhausted memory).
Status CpuSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc);

// True unless TESSERA_CPU_GEMM=openblas: the products run on oneDNN, and CpuLinearForward is there.
bool GemmIsOneDnn();

// y (m x n) = x (m x k) w (k x n) + b (n; null: none), then max(., 0) when `relu`: oneDNN's
// matmul primitive with the bias and the ReLU as post-ops. Like CpuSgemm's, the primitives are
// created once per shape on each calling thread and reused (not shared between threads). y is
// overwritten and must overlap nothing. Internal for an error oneDNN reports; FailedPrecondition
// without oneDNN (!GemmIsOneDnn(): the caller runs its unfused layers instead).
Status CpuLinearForward(const float* x, const float* w, const float* b, float* y, int64_t m, int k,
                        int n, bool relu);

// The calling thread's products from now on run on `threads` threads (>= 1).
void SetGemmThreads(int threads);
// The calling thread's product thread count.
int GemmThreads();

// The instruction set oneDNN runs its kernels with on this processor, e.g. "avx512_core" (for
// the start-up line and the benchmark's record).
std::string GemmIsa();

// OK when TESSERA_CPU_GEMM is unset, "onednn" or "openblas" (and then OpenBLAS loads);
// InvalidArgument naming the value and the choices otherwise, FailedPrecondition saying why
// OpenBLAS did not load (checked where a CPU device is set up, so a typo stops the job).
Status CheckGemmChoice();
// The library the products run on, e.g. "oneDNN avx512_core_bf16", or "OpenBLAS Haswell
// (TESSERA_CPU_GEMM=openblas)" with OpenBLAS's kernel name, for the start-up line.
std::string GemmLibrary();

// The CPUs this process may run on (its affinity mask: taskset, Slurm's --cpus-per-task, a
// cgroup cpuset), at least 1; not the machine's core count.
int AvailableCpus();

}  // namespace tessera::kernels
