// cuBLAS, loaded when first used. The real CUDA build does not link libcublas: loading it runs
// libcublasLt's static initialisers, about 0.3 s of every process start on the 2-vCPU machines
// (perf of `tessera --help`: 80 % of its samples), paid by every CPU job and every test that
// starts a tessera process. The few entry points the CUDA kernels call are defined here instead,
// hidden to the executable, and forward to the library, which the first of them loads with
// dlopen (the soname of the toolkit the build compiled against). Without it, every call returns
// CUBLAS_STATUS_NOT_INITIALIZED, and cublasGetStatusString says why the library did not load.
#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>

#ifndef TESSERA_CUBLAS_SONAME
#error "TESSERA_CUBLAS_SONAME (libcublas.so.<major>) comes from kernels/CMakeLists.txt"
#endif

namespace {

struct Cublas {
  void* library = nullptr;  // null unless loaded with every entry point below resolved
  std::string error;        // why it did not load, or ""
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

template <typename F>
bool Resolve(Cublas* c, const char* name, F* f) {
  *f = reinterpret_cast<F>(dlsym(c->library, name));
  if (*f == nullptr && c->error.empty()) {
    c->error = std::string(TESSERA_CUBLAS_SONAME) + " has no " + name;
  }
  return *f != nullptr;
}

const Cublas& Library() {
  static Cublas* cublas = [] {
    auto* c = new Cublas;  // never freed: kernels may run until exit
    c->library = dlopen(TESSERA_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (c->library == nullptr) {
      const char* why = dlerror();
      c->error = std::string("cannot load ") + TESSERA_CUBLAS_SONAME + ": " +
                 (why != nullptr ? why : "unknown error");
      return c;
    }
    const bool all = Resolve(c, "cublasCreate_v2", &c->create) &
                     Resolve(c, "cublasDestroy_v2", &c->destroy) &
                     Resolve(c, "cublasSetStream_v2", &c->set_stream) &
                     Resolve(c, "cublasSetMathMode", &c->set_math_mode) &
                     Resolve(c, "cublasSgemm_v2", &c->sgemm) &
                     Resolve(c, "cublasGetStatusString", &c->status_string);
    if (!all) {
      dlclose(c->library);
      c->library = nullptr;
    }
    return c;
  }();
  return *cublas;
}

}  // namespace

#define TS_CUBLAS_ENTRY extern "C" __attribute__((visibility("hidden")))

TS_CUBLAS_ENTRY cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
  const Cublas& c = Library();
  return c.library != nullptr ? c.create(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

TS_CUBLAS_ENTRY cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
  const Cublas& c = Library();
  return c.library != nullptr ? c.destroy(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

TS_CUBLAS_ENTRY cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle,
                                                               cudaStream_t stream) {
  const Cublas& c = Library();
  return c.library != nullptr ? c.set_stream(handle, stream) : CUBLAS_STATUS_NOT_INITIALIZED;
}

TS_CUBLAS_ENTRY cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle,
                                                              cublasMath_t mode) {
  const Cublas& c = Library();
  return c.library != nullptr ? c.set_math_mode(handle, mode) : CUBLAS_STATUS_NOT_INITIALIZED;
}

TS_CUBLAS_ENTRY cublasStatus_t CUBLASWINAPI
cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
               int n, int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
               const float* beta, float* c_out, int ldc) {
  const Cublas& c = Library();
  return c.library != nullptr
             ? c.sgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c_out, ldc)
             : CUBLAS_STATUS_NOT_INITIALIZED;
}

TS_CUBLAS_ENTRY const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  const Cublas& c = Library();
  if (c.library != nullptr) return c.status_string(status);
  return c.error.c_str();
}
