// cuBLAS loaded on first use (kernels/cublas_lazy.cc): a process that never calls it never maps
// the library, and the first call loads it or says why it could not.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace {

bool CublasMapped() {
  std::ifstream maps("/proc/self/maps");
  std::stringstream text;
  text << maps.rdbuf();
  return text.str().find("libcublas") != std::string::npos;
}

TEST(CublasLazy, NotMappedBeforeTheFirstCall) { EXPECT_FALSE(CublasMapped()); }

TEST(CublasLazy, TheFirstCallLoadsTheLibraryOrSaysWhyNot) {
  const std::string ok = cublasGetStatusString(CUBLAS_STATUS_SUCCESS);
  if (ok.find("cannot load") != std::string::npos) {
    EXPECT_NE(ok.find("libcublas.so."), std::string::npos) << ok;
    EXPECT_FALSE(CublasMapped());
    cublasHandle_t handle = nullptr;
    EXPECT_EQ(cublasCreate(&handle), CUBLAS_STATUS_NOT_INITIALIZED);
    return;
  }
  EXPECT_TRUE(CublasMapped());
  EXPECT_NE(ok, cublasGetStatusString(CUBLAS_STATUS_NOT_INITIALIZED));
  // Without a usable device cublasCreate fails with a status, never a crash; with one, the
  // handle works through the forwarded entry points.
  cublasHandle_t handle = nullptr;
  const cublasStatus_t created = cublasCreate(&handle);
  if (created != CUBLAS_STATUS_SUCCESS) {
    EXPECT_EQ(handle, nullptr);
    GTEST_SKIP() << "no usable CUDA device: cublasCreate says " << cublasGetStatusString(created);
  }
  EXPECT_EQ(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasDestroy(handle), CUBLAS_STATUS_SUCCESS);
}

}  // namespace
