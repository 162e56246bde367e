// tessera_bench gpu on a device: each CUDA kernel's achieved bandwidth or FLOP rate next to the
// device's peak, then samples/s of an MF and a DeepFM worker step on the device and on the CPU.
//
// Peaks (printed with the table):
//   memory bytes/s = 2 (DDR) x memory clock (cudaDevAttrMemoryClockRate, kHz) x bus width / 8
//   FP32 FLOP/s    = SMs x SM clock (cudaDevAttrClockRate) x FP32 lanes per SM x 2 (an FMA is two
//                    FLOPs); lanes: 64 on compute capability 6.0, 7.x and 8.0 (P100, V100, A100),
//                    128 on 6.1/6.2, 8.6, 8.9, 9.0 (H100) and later.
// Bytes counted per kernel are the ones it must move at least (stated in each row's note); an
// atomicAdd counts as a read and a write. Kernels are timed with CUDA events over back-to-back
// launches on one stream, so launch overhead is included but host work is not.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/benches.h"
#include "bench/gpu_bench_util.cuh"
#include "kernels/cuda_util.cuh"
#include "kernels/dense.h"
#include "kernels/device_resources.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::bench::internal {
namespace {

// The fastest repetition gives the rate; the median is printed next to it.
struct Row {
  const char* name;
  std::string size;
  double work;  // bytes or FLOPs per call
  bool flops;
  const char* note;
};

void PrintKernelRow(const DeviceInfo& dev, const Row& row, const Samples& seconds, JsonLines* json,
                    const char* key) {
  // Samples::Best is the largest value; for times the fastest is the smallest.
  double best = seconds.values.empty() ? 0 : seconds.values[0];
  for (double v : seconds.values) best = std::min(best, v);
  const double median = seconds.Median();
  const double rate = best > 0 ? row.work / best : 0;
  const double peak = row.flops ? dev.peak_flops : dev.peak_bytes_per_s;
  std::printf("%-30s %-22s %10.1f us %9.1f %s %6.1f %%  %s\n", row.name, row.size.c_str(),
              median * 1e6, rate / 1e9, row.flops ? "GFLOP/s" : "GB/s   ", 100.0 * rate / peak,
              row.note);
  json->Write(key, {{"seconds_median", median},
                    {"seconds_best", best},
                    {row.flops ? "flops_per_sec" : "bytes_per_sec", rate},
                    {"fraction_of_peak", rate / peak}});
}

// The kernel table. Returns false on a CUDA error (printed).
bool KernelTable(const DeviceInfo& dev, const GpuBenchOptions& o, int shrink, cudaStream_t stream,
                 cublasHandle_t cublas, JsonLines* json) {
  std::printf("%-30s %-22s %13s %17s %8s  %s\n", "kernel", "size", "time (med)", "rate (best)",
              "of peak", "bytes or FLOPs counted");
  Random rng(12345);
  constexpr int kFields = 26, kEmbDim = 16;
  const int64_t batch = std::max<int64_t>(1, o.gather_batch / shrink);
  const int64_t lookups = batch * kFields;
  const int64_t table_rows = std::max<int64_t>(1, (int64_t{1} << 20) / shrink);  // 64 MiB at dim 16
  const std::vector<int32_t> h_idx = rng.Indices(static_cast<size_t>(lookups), table_rows);
  DeviceArray<int32_t> idx(h_idx);
  DeviceArray<float> rows(rng.Floats(static_cast<size_t>(table_rows * kEmbDim), 1.0f));
  DeviceArray<float> out(static_cast<size_t>(lookups * kEmbDim));
  DeviceArray<float> grad_rows(static_cast<size_t>(table_rows * kEmbDim));
  // Pool: bags of 4 positions over the same lookups.
  const int64_t bags = std::max<int64_t>(1, lookups / 4);
  std::vector<int64_t> h_offsets(static_cast<size_t>(bags + 1));
  for (int64_t k = 0; k <= bags; ++k) h_offsets[static_cast<size_t>(k)] = std::min(4 * k, lookups);
  const int64_t positions = h_offsets.back();
  DeviceArray<int64_t> offsets(h_offsets);
  if (!idx.ok() || !rows.ok() || !out.ok() || !grad_rows.ok() || !offsets.ok()) {
    std::printf("gpu: device allocation failed\n");
    return false;
  }
  const double f = sizeof(float);
  const double gather_bytes = lookups * 4.0 + 2.0 * lookups * kEmbDim * f;
  const double scatter_bytes = lookups * 4.0 + 3.0 * lookups * kEmbDim * f;
  const double pool_bytes = (bags + 1) * 8.0 + positions * (4.0 + kEmbDim * f) + bags * kEmbDim * f;
  const double pool_back_bytes =
      (bags + 1) * 8.0 + positions * (4.0 + 2.0 * kEmbDim * f) + bags * kEmbDim * f;
  const std::string lookup_size =
      std::to_string(batch) + "x" + std::to_string(kFields) + "x" + std::to_string(kEmbDim);
  const std::string bag_size = std::to_string(bags) + " bags x4 x" + std::to_string(kEmbDim);

  // MF: users all distinct-ish, items repeating, as in kernel_bench.cc.
  const int64_t mf_samples = std::max<int64_t>(1, int64_t{65536} / shrink);
  const int mf_dim = o.mf_dim;
  const int64_t mf_users = mf_samples, mf_items = std::max<int64_t>(1, mf_samples / 2);
  const int64_t stride = mf_dim + 1;
  DeviceArray<int32_t> mf_ui(rng.Indices(static_cast<size_t>(mf_samples), mf_users));
  DeviceArray<int32_t> mf_ii(rng.Indices(static_cast<size_t>(mf_samples), mf_items));
  DeviceArray<float> mf_r(std::vector<float>(static_cast<size_t>(mf_samples), 3.5f));
  DeviceArray<float> mf_u(rng.Floats(static_cast<size_t>(mf_users * stride), 0.1f));
  DeviceArray<float> mf_i(rng.Floats(static_cast<size_t>(mf_items * stride), 0.1f));
  DeviceArray<float> mf_gu(static_cast<size_t>(mf_users * stride));
  DeviceArray<float> mf_gi(static_cast<size_t>(mf_items * stride));
  DeviceArray<double> mf_sq(1);
  kernels::MfBatch mb;
  mb.num_samples = mf_samples;
  mb.user_index = mf_ui.get();
  mb.item_index = mf_ii.get();
  mb.ratings = mf_r.get();
  mb.dim = mf_dim;
  mb.user_rows = mf_u.get();
  mb.num_users = mf_users;
  mb.item_rows = mf_i.get();
  mb.num_items = mf_items;
  mb.global_mean = 3.5f;
  mb.l2 = 0.05f;
  const double mf_bytes = mf_samples * (12.0 + 2.0 * stride * f + 4.0 * stride * f) +
                          (mf_users + mf_items) * stride * f;

  // SGEMM: one MLP layer of the DeepFM step, and a large square product near the FP32 peak.
  struct Gemm {
    int64_t m;
    int k, n;
  };
  const Gemm gemms[] = {{std::max<int64_t>(1, o.ctr_batch / shrink), 400, 400},
                        {std::max<int64_t>(1, 8192 / shrink), 2048, 2048}};

  // Sparse Adagrad over distinct rows of a table (weights then accumulators).
  const int64_t opt_rows = std::max<int64_t>(1, int64_t{262144} / shrink);
  const int opt_dim = 32;
  DeviceArray<float> table(static_cast<size_t>(opt_rows * 2 * opt_dim));
  DeviceArray<float> opt_grads(rng.Floats(static_cast<size_t>(opt_rows * opt_dim), 0.01f));
  std::vector<float*> h_ptrs(static_cast<size_t>(opt_rows));
  for (int64_t r = 0; r < opt_rows; ++r) {
    h_ptrs[static_cast<size_t>(r)] = table.get() + ((r * 7919) % opt_rows) * 2 * opt_dim;
  }
  DeviceArray<float*> ptrs(h_ptrs);
  kernels::OptimizerParams adagrad;
  const double opt_bytes = opt_rows * (8.0 + opt_dim * f + 4.0 * opt_dim * f);

  struct Case {
    Row row;
    const char* key;
    std::function<Status()> queue;
  };
  std::vector<Case> cases;
  // One at a time: an initializer list of these trips GCC 12's -Wmaybe-uninitialized.
  auto add = [&cases](Row row, const char* key, std::function<Status()> queue) {
    cases.push_back(Case{std::move(row), key, std::move(queue)});
  };
  add({"EmbeddingGatherCuda", lookup_size, gather_bytes, false,
       "indices + rows read + out written"},
      "gpu_gather", [&] {
        return kernels::EmbeddingGatherCuda(rows.get(), table_rows, idx.get(), out.get(), batch,
                                            kFields, kEmbDim, stream);
      });
  add({"EmbeddingGatherBackwardCuda", lookup_size, scatter_bytes, false,
       "indices + grads read + rows atomically updated"},
      "gpu_gather_backward", [&] {
        return kernels::EmbeddingGatherBackwardCuda(idx.get(), out.get(), grad_rows.get(),
                                                    table_rows, batch, kFields, kEmbDim, stream);
      });
  add({"EmbeddingPoolCuda", bag_size, pool_bytes, false,
       "offsets + indices + rows read + bags written"},
      "gpu_pool", [&] {
        return kernels::EmbeddingPoolCuda(rows.get(), table_rows, offsets.get(), idx.get(), nullptr,
                                          out.get(), bags, kEmbDim, stream);
      });
  add({"EmbeddingPoolBackwardCuda", bag_size, pool_back_bytes, false,
       "offsets + indices + bag grads + rows atomically updated"},
      "gpu_pool_backward", [&] {
        return kernels::EmbeddingPoolBackwardCuda(offsets.get(), idx.get(), nullptr, out.get(),
                                                  grad_rows.get(), table_rows, bags, kEmbDim,
                                                  stream);
      });
  add({"MfBatchGradientCuda", std::to_string(mf_samples) + " x dim " + std::to_string(mf_dim),
       mf_bytes, false, "per sample: 12 B + 2 rows read + 2 rows atomically updated; zeroing"},
      "gpu_mf_gradient", [&] {
        return kernels::MfBatchGradientCuda(mb, mf_gu.get(), mf_gi.get(), mf_sq.get(), stream);
      });
  add({"ApplySparseUpdateCuda adagrad", std::to_string(opt_rows) + " rows x dim 32", opt_bytes,
       false, "pointer + grad read, weights + accumulators read and written"},
      "gpu_sparse_adagrad", [&] {
        return kernels::ApplySparseUpdateCuda(adagrad, ptrs.get(), opt_grads.get(), opt_rows,
                                              opt_dim, stream);
      });
  std::vector<std::unique_ptr<DeviceArray<float>>> gemm_buffers;
  for (const Gemm& g : gemms) {
    auto x = std::make_unique<DeviceArray<float>>(rng.Floats(static_cast<size_t>(g.m * g.k), 1));
    auto w = std::make_unique<DeviceArray<float>>(
        rng.Floats(static_cast<size_t>(g.k) * static_cast<size_t>(g.n), 0.1f));
    auto b = std::make_unique<DeviceArray<float>>(static_cast<size_t>(g.n));
    auto y = std::make_unique<DeviceArray<float>>(static_cast<size_t>(g.m * g.n));
    float *px = x->get(), *pw = w->get(), *pb = b->get(), *py = y->get();
    const std::string size =
        std::to_string(g.m) + "x" + std::to_string(g.k) + " * " + std::to_string(g.n);
    add({"LinearForwardCuda (SGEMM)", size, 2.0 * g.m * g.k * g.n, true,
         "2 m k n FLOPs, FP32 (no TF32)"},
        g.k == 400 ? "gpu_sgemm_mlp_layer" : "gpu_sgemm_large",
        [=] { return kernels::LinearForwardCuda(cublas, px, pw, pb, py, g.m, g.k, g.n, stream); });
    for (auto* p : {&x, &w, &b, &y}) gemm_buffers.push_back(std::move(*p));
  }
  for (const Case& c : cases) {
    auto seconds = TimeOnDevice(stream, c.queue, o.seconds, o.reps);
    if (!seconds.ok()) {
      std::printf("%-30s failed: %s\n", c.row.name, seconds.status().ToString().c_str());
      return false;
    }
    PrintKernelRow(dev, c.row, *seconds, json, c.key);
  }
  std::printf("(dense optimizer: no CUDA dense optimizer in this build, not measured)\n");
  return true;
}

}  // namespace

bool RunGpuBenchOnDevice(const GpuBenchOptions& o, JsonLines* json) {
  auto info = QueryDevice();
  if (!info.ok()) {
    std::printf("\n== GPU: cannot query the device: %s\n", info.status().ToString().c_str());
    return false;
  }
  const DeviceInfo& dev = *info;
  const int shrink = o.shrink > 0 ? o.shrink : (dev.emulated ? 64 : 1);
  std::printf("\n== GPU: %s (compute capability %d.%d, %d SMs)%s\n", dev.name.c_str(), dev.major,
              dev.minor, dev.sms,
              dev.emulated ? " -- EMULATED device: the figures below mean nothing" : "");
  std::printf(
      "peak memory bandwidth %.0f GB/s = 2 x %.0f MHz memory clock x %d-bit bus / 8; peak FP32 "
      "%.1f TFLOP/s = %d SMs x %.0f MHz x %d lanes x 2\n",
      dev.peak_bytes_per_s / 1e9, dev.memory_clock_hz / 1e6, dev.bus_bits, dev.peak_flops / 1e12,
      dev.sms, dev.sm_clock_hz / 1e6, dev.fp32_lanes);
  if (shrink > 1) std::printf("sizes divided by %d\n", shrink);
  json->Write("gpu_device", {{"peak_bytes_per_sec", dev.peak_bytes_per_s},
                             {"peak_flops", dev.peak_flops},
                             {"sms", static_cast<double>(dev.sms)},
                             {"emulated", dev.emulated ? 1.0 : 0.0}});
  auto resources = kernels::DeviceResources::Create({kernels::Device::kCuda, 1});
  if (!resources.ok()) {
    std::printf("gpu: %s\n", resources.status().ToString().c_str());
    return false;
  }
  cudaStream_t stream = (*resources)->context().stream;
  cublasHandle_t cublas = nullptr;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS ||
      cublasSetStream(cublas, stream) != CUBLAS_STATUS_SUCCESS) {
    std::printf("gpu: cannot create a cuBLAS handle\n");
    return false;
  }
  const bool kernels_ok = KernelTable(dev, o, shrink, stream, cublas, json);
  (void)cublasDestroy(cublas);
  resources->reset();
  return kernels_ok && RunStepComparison(dev, o, shrink, json);
}

}  // namespace tessera::bench::internal
