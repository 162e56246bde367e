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

namespace {

// Products with fewer columns than this (the output layers' 400 x 1: matrix-vector products) run
// on oneDNN's sgemm call, whose matrix-vector kernels ran them 2.5-3.4x faster than a matmul
// primitive (tessera_bench blas); every other product on a matmul primitive, as fast as the
// sgemm call over the whole MLP step within this machine's drift (1.1x and 0.93x in two runs,
// docs/PERFORMANCE.md).
constexpr int64_t kMatmulMinColumns = 16;

// What a matmul primitive is made for: C (m x n) = alpha op(A) op(B) (+ bias) (+ beta C), then
// max(., 0) when relu; the row strides and the thread count are part of it (a primitive splits
// its work as it was made).
struct MatmulShape {
  bool trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  bool bias, relu;
  int threads;
  auto tie() const {
    return std::tie(trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta, bias, relu, threads);
  }
  bool operator<(const MatmulShape& o) const { return tie() < o.tie(); }
};

struct MatmulPrimitive {
  dnnl::matmul matmul;
  dnnl::memory::desc a, b, bias, c;
};

const dnnl::engine& CpuEngine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

MatmulPrimitive MakeMatmul(const MatmulShape& s) {
  using dt = dnnl::memory::data_type;
  MatmulPrimitive p;
  // A transposed operand is the same row-major buffer read with its strides swapped.
  p.a = dnnl::memory::desc({s.m, s.k}, dt::f32,
                           s.trans_a ? dnnl::memory::dims{1, s.lda} : dnnl::memory::dims{s.lda, 1});
  p.b = dnnl::memory::desc({s.k, s.n}, dt::f32,
                           s.trans_b ? dnnl::memory::dims{1, s.ldb} : dnnl::memory::dims{s.ldb, 1});
  if (s.bias) p.bias = dnnl::memory::desc({1, s.n}, dt::f32, dnnl::memory::dims{s.n, 1});
  p.c = dnnl::memory::desc({s.m, s.n}, dt::f32, dnnl::memory::dims{s.ldc, 1});
  dnnl::primitive_attr attr;
  if (s.alpha != 1.0f) attr.set_output_scales(0, {s.alpha});
  dnnl::post_ops ops;
  if (s.beta != 0.0f) ops.append_sum(s.beta);  // beta 0: C is never read
  if (s.relu) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  attr.set_post_ops(ops);
  const dnnl::matmul::desc desc(p.a, p.b, p.bias, p.c);
  p.matmul = dnnl::matmul(dnnl::matmul::primitive_desc(desc, attr, CpuEngine()));
  return p;
}

// Runs the product on oneDNN's matmul primitive for its shape, made on first use by the calling
// thread and kept: a primitive executes on that thread's OpenMP team with its own scratch.
Status RunMatmul(const MatmulShape& shape, const float* a, const float* b, const float* bias,
                 float* c) {
  try {
    thread_local std::map<MatmulShape, MatmulPrimitive> cache;
    thread_local dnnl::stream stream(CpuEngine());
    auto it = cache.find(shape);
    if (it == cache.end()) {
      if (cache.size() >= 64) cache.clear();  // a bound; a job uses a handful of shapes
      it = cache.emplace(shape, MakeMatmul(shape)).first;
    }
    const MatmulPrimitive& p = it->second;
    const dnnl::engine& engine = CpuEngine();
    std::unordered_map<int, dnnl::memory> args = {
        {DNNL_ARG_SRC, dnnl::memory(p.a, engine, const_cast<float*>(a))},
        {DNNL_ARG_WEIGHTS, dnnl::memory(p.b, engine, const_cast<float*>(b))},
        {DNNL_ARG_DST, dnnl::memory(p.c, engine, c)}};
    if (bias != nullptr) {
      args[DNNL_ARG_BIAS] = dnnl::memory(p.bias, engine, const_cast<float*>(bias));
    }
    p.matmul.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    return Status::Internal("oneDNN matmul (" + std::to_string(shape.m) + " x " +
                            std::to_string(shape.n) + " x " + std::to_string(shape.k) +
                            ") failed: " + e.what());
  }
  return OkStatus();
}

}  // namespace

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
  if (m == 0 || n == 0) return OkStatus();
  if (k == 0) {  // an empty sum: C = beta C, C not read when beta is 0
    for (int64_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      for (int64_t j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
    return OkStatus();
  }
  if (n >= kMatmulMinColumns) {
    return RunMatmul({trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta, /*bias=*/false,
                      /*relu=*/false, omp_get_max_threads()},
                     a, b, nullptr, c);
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

bool GemmIsOneDnn() { return !UseOpenBlas(); }

Status CpuLinearForward(const float* x, const float* w, const float* b, float* y, int64_t m, int k,
                        int n, bool relu) {
  if (UseOpenBlas()) {
    return Status::FailedPrecondition("CpuLinearForward: oneDNN's matmul, not with " +
                                      std::string(kChoiceVariable) + "=openblas");
  }
  if (m == 0) return OkStatus();
  return RunMatmul(
      {false, false, m, n, k, k, n, n, 1.0f, 0.0f, b != nullptr, relu, omp_get_max_threads()}, x, w,
      b, y);
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
