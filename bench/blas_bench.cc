// The single-precision matrix-product rate of the DeepFM MLP's shapes through OpenBLAS
// (cblas_sgemm, with whichever kernel it picked: OPENBLAS_CORETYPE forces one), through
// oneDNN's matmul primitives (kernels::CpuSgemm, what kernels/dense_cpu.cc multiplies with) and
// through oneDNN's sgemm call (dnnl_sgemm, what it multiplied with before), the same layouts:
// per layer (in x out) at batch B, forward y = x W (B x in . in x out), backward dW = x^T dy and
// dx = dy W^T. Each is timed alone and the whole MLP step (all layers, forward and both backward
// products) is timed as one, in FLOPs/s with 2 * m * n * k FLOPs per product. The run script
// divides a training run's samples/s x FLOPs per sample by the whole-step rate.
#include <cblas.h>

#include <cstdio>
#include <vector>

#include "bench/benches.h"
#include "kernels/gemm_cpu.h"
#include "oneapi/dnnl/dnnl.h"

namespace tessera::bench {
namespace {

enum class Library { kOpenBlas, kOneDnn, kOneDnnSgemm };

struct Product {
  const char* what;
  CBLAS_TRANSPOSE ta, tb;
  int m, n, k;
  const float *a, *b;
  float* c;
  int lda, ldb, ldc;
  double Flops() const { return 2.0 * m * n * k; }
  void Run(Library library) const {
    switch (library) {
      case Library::kOpenBlas:
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
        break;
      case Library::kOneDnn:
        (void)kernels::CpuSgemm(ta == CblasTrans, tb == CblasTrans, m, n, k, 1.0f, a, lda, b, ldb,
                                0.0f, c, ldc);
        break;
      case Library::kOneDnnSgemm:
        (void)dnnl_sgemm(ta == CblasTrans ? 'T' : 'N', tb == CblasTrans ? 'T' : 'N', m, n, k, 1.0f,
                         a, lda, b, ldb, 0.0f, c, ldc);
        break;
    }
  }
};

// Repeats `fn` for `seconds` (after one warm call); returns calls/s.
template <typename Fn>
double CallsPerSecond(double seconds, Fn&& fn) {
  fn();
  int64_t calls = 0;
  auto start = Clock::now();
  do {
    fn();
    ++calls;
  } while (SecondsSince(start) < seconds);
  return static_cast<double>(calls) / SecondsSince(start);
}

}  // namespace

bool RunBlasBench(const BlasBenchOptions& o, JsonLines* json) {
  std::vector<int> dims = {o.input};
  dims.insert(dims.end(), o.hidden.begin(), o.hidden.end());
  dims.push_back(1);
  const int B = o.batch;
  std::printf("\n== GEMM (OpenBLAS and oneDNN) for the MLP %d", o.input);
  for (size_t i = 1; i < dims.size(); ++i) std::printf("-%d", dims[i]);
  std::printf(" at batch %d: GFLOP/s (2mnk per product)\n", B);
  std::printf("%-34s %12s %12s %10s\n", "product", "GFLOP/s med", "GFLOP/s best", "MFLOP");
  // Per-layer buffers: activations x (B x in), weights w (in x out), dy (B x out), outputs.
  std::vector<std::vector<float>> x, w, dy, y, dw, dx;
  std::vector<Product> products;
  char names[64][64];
  int name_count = 0;
  for (size_t l = 0; l + 1 < dims.size(); ++l) {
    const int in = dims[l], out = dims[l + 1];
    x.emplace_back(static_cast<size_t>(B) * in, 0.01f);
    w.emplace_back(static_cast<size_t>(in) * out, 0.02f);
    dy.emplace_back(static_cast<size_t>(B) * out, 0.03f);
    y.emplace_back(static_cast<size_t>(B) * out);
    dw.emplace_back(static_cast<size_t>(in) * out);
    dx.emplace_back(static_cast<size_t>(B) * in);
  }
  for (size_t l = 0; l + 1 < dims.size(); ++l) {
    const int in = dims[l], out = dims[l + 1];
    const char* kinds[3] = {"fwd  y=xW", "bwd dW=x^T dy", "bwd dx=dy W^T"};
    for (int k = 0; k < 3; ++k) {
      std::snprintf(names[name_count], sizeof(names[0]), "%dx%d %s", in, out, kinds[k]);
      const char* name = names[name_count++];
      if (k == 0) {
        products.push_back({name, CblasNoTrans, CblasNoTrans, B, out, in, x[l].data(), w[l].data(),
                            y[l].data(), in, out, out});
      } else if (k == 1) {
        products.push_back({name, CblasTrans, CblasNoTrans, in, out, B, x[l].data(), dy[l].data(),
                            dw[l].data(), in, out, out});
      } else {
        products.push_back({name, CblasNoTrans, CblasTrans, B, in, out, dy[l].data(), w[l].data(),
                            dx[l].data(), out, out, in});
      }
    }
  }
  // OpenBLAS, then oneDNN on as many threads as the process may use (the worker's policy for
  // one worker, launch/job.cc).
  kernels::SetGemmThreads(kernels::AvailableCpus());
  const std::string onednn =
      kernels::GemmIsa() + ", " + std::to_string(kernels::GemmThreads()) + " threads";
  for (Library lib : {Library::kOpenBlas, Library::kOneDnn, Library::kOneDnnSgemm}) {
    const char* library = lib == Library::kOpenBlas ? "blas"
                          : lib == Library::kOneDnn ? "onednn"
                                                    : "onednn_sgemm";
    std::printf("-- %s\n", lib == Library::kOpenBlas ? "OpenBLAS cblas_sgemm"
                           : lib == Library::kOneDnn
                               ? ("oneDNN matmul primitives (" + onednn + ")").c_str()
                               : ("oneDNN dnnl_sgemm (" + onednn + ")").c_str());
    double step_flops = 0;
    for (const Product& p : products) {
      Samples s;
      for (int r = 0; r < o.reps; ++r) {
        s.Add(CallsPerSecond(o.seconds, [&] { p.Run(lib); }) * p.Flops());
      }
      step_flops += p.Flops();
      std::printf("%-34s %12.1f %12.1f %10.1f\n", p.what, s.Median() / 1e9, s.Best() / 1e9,
                  p.Flops() / 1e6);
      if (json != nullptr) {
        json->Write(std::string(library) + " " + p.what,
                    {{"gflops", s.Median() / 1e9}, {"gflops_best", s.Best() / 1e9}});
      }
    }
    Samples step;
    for (int r = 0; r < o.reps; ++r) {
      step.Add(CallsPerSecond(o.seconds * 2,
                              [&] {
                                for (const Product& p : products) p.Run(lib);
                              }) *
               step_flops);
    }
    const double per_sample = step_flops / B;
    std::printf("%-34s %12.1f %12.1f %10.1f\n", "whole MLP step (all of the above)",
                step.Median() / 1e9, step.Best() / 1e9, step_flops / 1e6);
    std::printf("FLOPs per sample %.0f -> GEMM-bound ceiling %.0f samples/s (median rate)\n",
                per_sample, step.Median() / per_sample);
    if (json != nullptr) {
      json->Write(std::string(library) + " mlp_step", {{"gflops", step.Median() / 1e9},
                                                       {"gflops_best", step.Best() / 1e9},
                                                       {"flops_per_sample", per_sample},
                                                       {"batch", static_cast<double>(B)}});
    }
  }
  return true;
}

}  // namespace tessera::bench
