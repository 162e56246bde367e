#include "kernels/gemm_cpu.h"

#include <cblas.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "oneapi/dnnl/dnnl.h"

// The two calls of the OpenMP runtime this file makes, in libgomp (the runtime Debian's oneDNN
// links): declared here rather than through <omp.h>, which Clang has only with libomp-dev and
// which would then describe another runtime.
// Likewise OpenBLAS's own two, which Debian's cblas.h declares only when the alternative it points
// to is OpenBLAS's.
extern "C" {
void omp_set_num_threads(int threads);
int omp_get_max_threads(void);
void openblas_set_num_threads(int threads);
char* openblas_get_corename(void);
}

namespace tessera::kernels {
namespace {

constexpr char kChoiceVariable[] = "TESSERA_CPU_GEMM";

// TESSERA_CPU_GEMM as the process started ("" when unset).
const std::string& Choice() {
  static const std::string choice = [] {
    const char* v = std::getenv(kChoiceVariable);
    return std::string(v != nullptr ? v : "");
  }();
  return choice;
}

bool UseOpenBlas() {
  static const bool openblas = Choice() == "openblas";
  return openblas;
}

}  // namespace

Status CheckGemmChoice() {
  const std::string& c = Choice();
  if (c.empty() || c == "onednn" || c == "openblas") return OkStatus();
  return Status::InvalidArgument(std::string(kChoiceVariable) + "=" + c +
                                 " is not one of onednn|openblas");
}

std::string GemmLibrary() {
  if (UseOpenBlas()) {
    return std::string("OpenBLAS ") + openblas_get_corename() + " (" + kChoiceVariable +
           "=openblas)";
  }
  return "oneDNN " + GemmIsa();
}

Status CpuSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc) {
  if (UseOpenBlas()) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                beta, c, static_cast<int>(ldc));
    return OkStatus();
  }
  const dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                     lda, b, ldb, beta, c, ldc);
  if (s != dnnl_success) {
    return Status::Internal("oneDNN sgemm (" + std::to_string(m) + " x " + std::to_string(n) +
                            " x " + std::to_string(k) + ") failed with status " +
                            std::to_string(static_cast<int>(s)));
  }
  return OkStatus();
}

void SetGemmThreads(int threads) {
  omp_set_num_threads(std::max(threads, 1));
  if (UseOpenBlas()) openblas_set_num_threads(std::max(threads, 1));
}

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
