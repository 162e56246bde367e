#include "kernels/gemm_cpu.h"

#include <cblas.h>
#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <tuple>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"

// The two calls of the OpenMP runtime this file makes, in libgomp (the runtime Debian's oneDNN
// links): declared here rather than through <omp.h>, which Clang has only with libomp-dev and
// which would then describe another runtime.
extern "C" {
void omp_set_num_threads(int threads);
int omp_get_max_threads(void);
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

// OpenBLAS, loaded when TESSERA_CPU_GEMM=openblas first asks for it: linked into the binary, its
// thread pool would start in every process (scheduler and servers included). Its own two calls
// are not in every cblas.h (Debian's points to the alternative installed), so they are looked up
// by name like cblas_sgemm.
struct OpenBlas {
  decltype(&cblas_sgemm) sgemm = nullptr;
  void (*set_num_threads)(int) = nullptr;
  char* (*corename)() = nullptr;
  std::string error;  // why it is not there ("" when it is)
};

const OpenBlas& LoadOpenBlas() {
  static const OpenBlas blas = [] {
    OpenBlas b;
    constexpr char kLibrary[] = "libopenblas.so.0";
    void* handle = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);  // kept for the process's life
    if (handle == nullptr) {
      const char* why = dlerror();
      b.error = std::string(kLibrary) + ": " + (why != nullptr ? why : "cannot be loaded") +
                " (Debian package libopenblas0)";
      return b;
    }
    b.sgemm = reinterpret_cast<decltype(b.sgemm)>(dlsym(handle, "cblas_sgemm"));
    b.set_num_threads =
        reinterpret_cast<decltype(b.set_num_threads)>(dlsym(handle, "openblas_set_num_threads"));
    b.corename = reinterpret_cast<decltype(b.corename)>(dlsym(handle, "openblas_get_corename"));
    if (b.sgemm == nullptr || b.set_num_threads == nullptr || b.corename == nullptr) {
      b.error = std::string(kLibrary) + " lacks cblas_sgemm or OpenBLAS's thread calls";
      b.sgemm = nullptr;
    }
    return b;
  }();
  return blas;
}

}  // namespace

Status CheckGemmChoice() {
  const std::string& c = Choice();
  if (c.empty() || c == "onednn") return OkStatus();
  if (c == "openblas") {
    const OpenBlas& blas = LoadOpenBlas();
    if (blas.sgemm != nullptr) return OkStatus();
    return Status::FailedPrecondition(std::string(kChoiceVariable) + "=openblas: " + blas.error);
  }
  return Status::InvalidArgument(std::string(kChoiceVariable) + "=" + c +
                                 " is not one of onednn|openblas");
}

std::string GemmLibrary() {
  if (UseOpenBlas()) {
    const OpenBlas& blas = LoadOpenBlas();
    return std::string("OpenBLAS ") + (blas.corename != nullptr ? blas.corename() : "(missing)") +
           " (" + kChoiceVariable + "=openblas)";
  }
  return "oneDNN " + GemmIsa();
}

Status CpuSgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                int64_t ldc) {
  if (UseOpenBlas()) {
    const OpenBlas& blas = LoadOpenBlas();
    if (blas.sgemm == nullptr) {
      return Status::FailedPrecondition(std::string(kChoiceVariable) + "=openblas: " + blas.error);
    }
    blas.sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
               static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
               c, static_cast<int>(ldc));
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

namespace {

// A matmul primitive for one layer shape, with what it was made for.
struct LinearPrimitive {
  dnnl::matmul matmul;
  dnnl::memory::desc src, weights, bias, dst;
};

const dnnl::engine& CpuEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

LinearPrimitive MakeLinear(int64_t m, int k, int n, bool bias, bool relu) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  LinearPrimitive p;
  p.src = dnnl::memory::desc({m, k}, dt::f32, tag::ab);
  p.weights = dnnl::memory::desc({k, n}, dt::f32, tag::ab);
  if (bias) p.bias = dnnl::memory::desc({1, n}, dt::f32, tag::ab);
  p.dst = dnnl::memory::desc({m, n}, dt::f32, tag::ab);
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    attr.set_post_ops(ops);
  }
  const dnnl::matmul::desc desc(p.src, p.weights, p.bias, p.dst);
  p.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, CpuEngine()));
  return p;
}

}  // namespace

bool GemmIsOneDnn() { return !UseOpenBlas(); }

Status CpuLinearForward(const float* x, const float* w, const float* b, float* y, int64_t m, int k,
                        int n, bool relu) {
  if (UseOpenBlas()) {
    return Status::FailedPrecondition("CpuLinearForward: oneDNN's matmul, not with " +
                                      std::string(kChoiceVariable) + "=openblas");
  }
  try {
    // Per thread: a primitive executes on the calling thread's OpenMP team with its own scratch.
    // The thread count is part of the key: a primitive splits its work as it was made.
    thread_local std::map<std::tuple<int64_t, int, int, bool, bool, int>, LinearPrimitive> cache;
    thread_local dnnl::stream stream(CpuEngine());
    const auto key = std::make_tuple(m, k, n, b != nullptr, relu, omp_get_max_threads());
    auto it = cache.find(key);
    if (it == cache.end()) {
      if (cache.size() >= 64) cache.clear();  // a bound; a job uses a handful of shapes
      it = cache.emplace(key, MakeLinear(m, k, n, b != nullptr, relu)).first;
    }
    const LinearPrimitive& p = it->second;
    const dnnl::engine& engine = CpuEngine();
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(p.src, engine, const_cast<float*>(x))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(p.weights, engine, const_cast<float*>(w))},
        {DNNL_ARG_DST, dnnl::memory(p.dst, engine, y)}};
    if (b != nullptr) args[DNNL_ARG_BIAS] = dnnl::memory(p.bias, engine, const_cast<float*>(b));
    p.matmul.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    return Status::Internal("oneDNN matmul (" + std::to_string(m) + " x " + std::to_string(n) +
                            " x " + std::to_string(k) + ") failed: " + e.what());
  }
  return OkStatus();
}

void SetGemmThreads(int threads) {
  omp_set_num_threads(std::max(threads, 1));
  if (!UseOpenBlas()) return;
  if (const OpenBlas& blas = LoadOpenBlas(); blas.set_num_threads != nullptr) {
    blas.set_num_threads(std::max(threads, 1));
  }
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
