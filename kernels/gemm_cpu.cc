#include "kernels/gemm_cpu.h"

#include <sched.h>

#include <algorithm>

#include "oneapi/dnnl/dnnl.h"

// The two calls of the OpenMP runtime this file makes, in libgomp (the runtime Debian's oneDNN
// links): declared here rather than through <omp.h>, which Clang has only with libomp-dev and
// which would then describe another runtime.
extern "C" {
void omp_set_num_threads(int threads);
int omp_get_max_threads(void);
}

namespace tessera::kernels {

Status CpuSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc) {
  const dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                     lda, b, ldb, beta, c, ldc);
  if (s != dnnl_success) {
    return Status::Internal("oneDNN sgemm (" + std::to_string(m) + " x " + std::to_string(n) +
                            " x " + std::to_string(k) + ") failed with status " +
                            std::to_string(static_cast<int>(s)));
  }
  return OkStatus();
}

void SetGemmThreads(int threads) { omp_set_num_threads(std::max(threads, 1)); }

int GemmThreads() { return omp_get_max_threads(); }

std::string GemmIsa() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41:
      return "sse41";
    case dnnl_cpu_isa_avx:
      return "avx";
    case dnnl_cpu_isa_avx2:
      return "avx2";
    case dnnl_cpu_isa_avx512_mic:
    case dnnl_cpu_isa_avx512_mic_4ops:
      return "avx512_mic";
    case dnnl_cpu_isa_avx512_core:
      return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
      return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni:
      return "avx2_vnni";
    default:
      return "generic";
  }
}

int AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return std::max(CPU_COUNT(&set), 1);
}

}  // namespace tessera::kernels
