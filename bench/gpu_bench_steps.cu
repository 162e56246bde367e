// tessera_bench gpu, second half: one worker step of MF and of DeepFM, computed by the CUDA
// kernels and by the CPU kernels in the same process, in samples/s. These are the compute part of
// a training step only (what the worker does between the pull and the push), not the parameter
// servers: `tessera train` with --device cuda and cpu (scripts/gpu-check.sh) gives the end-to-end
// figures.
//   MF: batch of mf_batch samples, dim mf_dim, as many users as samples and half as many items.
//       CPU: MfBatchGradient on a context with a helper thread (--compute-threads 2, the
//       default). CUDA: the worker's staged step: the host arrays written into the workspace's
//       pinned slot (the decode of a pull), one upload, the kernel, one download, waited for.
//   DeepFM: 26 fields of emb 16 (MLP input 416; the 13 dense features are left out), MLP
//       400-400-400-1 with ReLU, sigmoid BCE, FM term computed (forward and backward), half as
//       many unique rows as lookups. CUDA adds the upload of the rows, indices and labels and the
//       download of the row gradients (from / to pinned memory) and waits for the stream.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/gpu_bench_util.cuh"
#include "kernels/dense.h"
#include "kernels/device_resources.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"

namespace tessera::bench::internal {
namespace {

// Zeroed buffers on the host or the device, freed together.
class Arena {
 public:
  explicit Arena(bool device) : device_(device) {}
  ~Arena() {
    for (void* p : blocks_) {
      if (device_) {
        (void)cudaFree(p);
      } else {
        std::free(p);
      }
    }
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  template <typename T>
  T* Alloc(size_t count) {
    const size_t bytes = std::max<size_t>(count * sizeof(T), 1);
    void* p = nullptr;
    if (device_) {
      if (cudaMalloc(&p, bytes) != cudaSuccess) return nullptr;
      (void)cudaMemset(p, 0, bytes);
    } else {
      p = std::calloc(1, bytes);
    }
    blocks_.push_back(p);
    return static_cast<T*>(p);
  }
  // `count` values copied from the host.
  template <typename T>
  T* Copy(const std::vector<T>& host) {
    T* p = Alloc<T>(host.size());
    if (p == nullptr) return nullptr;
    if (device_) {
      (void)cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    } else {
      std::memcpy(p, host.data(), host.size() * sizeof(T));
    }
    return p;
  }

 private:
  const bool device_;
  std::vector<void*> blocks_;
};

constexpr int kFields = 26, kEmbDim = 16, kHidden = 400;
constexpr int kInput = kFields * kEmbDim;

// One DeepFM step's buffers in one memory space.
struct DeepFm {
  int64_t batch = 0, unique_rows = 0;
  int32_t* idx = nullptr;
  float *rows = nullptr, *labels = nullptr, *emb = nullptr, *fm_y = nullptr, *logits = nullptr;
  float *dlogits = nullptr, *demb = nullptr, *dfm = nullptr, *grad_rows = nullptr;
  double* loss = nullptr;
  float* w[4] = {};
  float* b[4] = {};
  float* dw[4] = {};
  float* db[4] = {};
  float* h[3] = {};
  float* dh[3] = {};

  // Everything allocated from `arena`, inputs seeded; false when an allocation failed.
  bool Init(Arena* arena, int64_t batch_size, uint64_t seed) {
    batch = batch_size;
    unique_rows = std::max<int64_t>(1, batch * kFields / 2);
    Random rng(seed);
    idx = arena->Copy(rng.Indices(static_cast<size_t>(batch * kFields), unique_rows));
    rows = arena->Copy(rng.Floats(static_cast<size_t>(unique_rows * kEmbDim), 0.02f));
    std::vector<float> y(static_cast<size_t>(batch));
    for (float& v : y) v = static_cast<float>(rng.Next() & 1);
    labels = arena->Copy(y);
    const size_t n = static_cast<size_t>(batch);
    emb = arena->Alloc<float>(n * kInput);
    demb = arena->Alloc<float>(n * kInput);
    dfm = arena->Alloc<float>(n * kInput);
    fm_y = arena->Alloc<float>(n);
    logits = arena->Alloc<float>(n);
    dlogits = arena->Alloc<float>(n);
    loss = arena->Alloc<double>(1);
    grad_rows = arena->Alloc<float>(static_cast<size_t>(unique_rows * kEmbDim));
    bool ok = idx && rows && labels && emb && demb && dfm && fm_y && logits && dlogits && loss &&
              grad_rows;
    for (int l = 0; l < 4; ++l) {
      const size_t in = l == 0 ? kInput : kHidden, out = l == 3 ? 1 : kHidden;
      w[l] = arena->Copy(rng.Floats(in * out, 0.1f));
      b[l] = arena->Alloc<float>(out);
      dw[l] = arena->Alloc<float>(in * out);
      db[l] = arena->Alloc<float>(out);
      ok = ok && w[l] && b[l] && dw[l] && db[l];
      if (l < 3) {
        h[l] = arena->Alloc<float>(n * kHidden);
        dh[l] = arena->Alloc<float>(n * kHidden);
        ok = ok && h[l] && dh[l];
      }
    }
    return ok;
  }

  // Forward and backward through the kernel entry points of `ctx`.
  Status Step(const kernels::DeviceContext& ctx, cublasHandle_t cublas) const {
    using namespace kernels;
    TS_RETURN_IF_ERROR(EmbeddingGather(ctx, rows, unique_rows, idx, emb, batch, kFields, kEmbDim));
    TS_RETURN_IF_ERROR(FmForward(ctx, emb, fm_y, batch, kFields, kEmbDim));
    const float* x = emb;
    for (int l = 0; l < 3; ++l) {
      TS_RETURN_IF_ERROR(LinearForward(ctx, cublas, x, w[l], b[l], h[l], batch,
                                       l == 0 ? kInput : kHidden, kHidden));
      TS_RETURN_IF_ERROR(ReluForward(ctx, h[l], h[l], batch * kHidden));
      x = h[l];
    }
    TS_RETURN_IF_ERROR(LinearForward(ctx, cublas, x, w[3], b[3], logits, batch, kHidden, 1));
    TS_RETURN_IF_ERROR(SigmoidBceForward(ctx, logits, labels, nullptr, loss, batch));
    TS_RETURN_IF_ERROR(
        SigmoidBceBackward(ctx, logits, labels, dlogits, batch, 1.0f / static_cast<float>(batch)));
    const float* dy = dlogits;
    for (int l = 3; l >= 0; --l) {
      const int in = l == 0 ? kInput : kHidden, out = l == 3 ? 1 : kHidden;
      const float* input = l == 0 ? emb : h[l - 1];
      float* dx = l == 0 ? demb : dh[l - 1];
      TS_RETURN_IF_ERROR(
          LinearBackward(ctx, cublas, input, w[l], dy, dx, dw[l], db[l], batch, in, out));
      if (l > 0) TS_RETURN_IF_ERROR(ReluBackward(ctx, h[l - 1], dx, dx, batch * kHidden));
      dy = dx;
    }
    TS_RETURN_IF_ERROR(FmBackward(ctx, emb, dlogits, dfm, batch, kFields, kEmbDim));
    TS_RETURN_IF_ERROR(
        EmbeddingGatherBackward(ctx, idx, demb, grad_rows, unique_rows, batch, kFields, kEmbDim));
    return EmbeddingGatherBackward(ctx, idx, dfm, grad_rows, unique_rows, batch, kFields, kEmbDim);
  }
};

void PrintStep(const char* what, double cpu_per_sec, double cuda_per_sec, JsonLines* json,
               const char* key, int64_t batch) {
  std::printf("%-44s %12s %12s %8.1fx\n", what, Human(cpu_per_sec).c_str(),
              Human(cuda_per_sec).c_str(), cpu_per_sec > 0 ? cuda_per_sec / cpu_per_sec : 0.0);
  json->Write(key, {{"batch", static_cast<double>(batch)},
                    {"cpu_samples_per_sec", cpu_per_sec},
                    {"cuda_samples_per_sec", cuda_per_sec}});
}

double Fastest(const Samples& seconds) {
  double best = seconds.values.empty() ? 0 : seconds.values[0];
  for (double v : seconds.values) best = std::min(best, v);
  return best;
}

StatusOr<std::pair<double, double>> MfStep(const GpuBenchOptions& o, int shrink) {
  const int64_t samples = std::max<int64_t>(1, o.mf_batch / shrink);
  Random rng(99);
  const int dim = o.mf_dim;
  const int64_t users = samples, items = std::max<int64_t>(1, samples / 2);
  const std::vector<int32_t> ui = rng.Indices(static_cast<size_t>(samples), users);
  const std::vector<int32_t> ii = rng.Indices(static_cast<size_t>(samples), items);
  const std::vector<float> ratings(static_cast<size_t>(samples), 3.5f);
  const std::vector<float> rows =
      rng.Floats(static_cast<size_t>((users + items) * (dim + 1)), 0.1f);
  std::vector<float> grads(rows.size());
  kernels::MfBatch b;
  b.num_samples = samples;
  b.user_index = ui.data();
  b.item_index = ii.data();
  b.ratings = ratings.data();
  b.dim = dim;
  b.user_rows = rows.data();
  b.num_users = users;
  b.item_rows = rows.data() + users * (dim + 1);
  b.num_items = items;
  b.global_mean = 3.5f;
  b.l2 = 0.05f;
  TS_ASSIGN_OR_RETURN(auto cpu, kernels::DeviceResources::Create({kernels::Device::kCpu, 2}));
  TS_ASSIGN_OR_RETURN(Samples cpu_seconds, TimeOnHost(
                                               [&] {
                                                 double sq = 0;
                                                 return kernels::MfBatchGradient(
                                                     cpu->context(), b, grads.data(),
                                                     grads.data() + users * (dim + 1), &sq);
                                               },
                                               o.seconds, o.reps));
  TS_ASSIGN_OR_RETURN(auto gpu, kernels::DeviceResources::Create({kernels::Device::kCuda, 1}));
  TS_ASSIGN_OR_RETURN(auto ws, kernels::MfDeviceWorkspace::Create(gpu->context()));
  const kernels::MfStageShape shape{samples, dim, users, items, 0};
  const kernels::MfStepScalars scalars{b.global_mean, b.l2, b.l2_bias};
  TS_ASSIGN_OR_RETURN(Samples gpu_seconds,
                      TimeOnHost(
                          [&]() -> Status {
                            TS_ASSIGN_OR_RETURN(auto step, ws->Stage(shape));
                            std::memcpy(step->user_index(), ui.data(), ui.size() * 4);
                            std::memcpy(step->item_index(), ii.data(), ii.size() * 4);
                            std::memcpy(step->ratings(), ratings.data(), ratings.size() * 4);
                            std::memcpy(step->rows(), rows.data(), rows.size() * 4);
                            TS_RETURN_IF_ERROR(ws->EnqueueGradient(step.get(), scalars));
                            double sq = 0;
                            return ws->FinishGradient(step.get(), &sq);
                          },
                          o.seconds, o.reps));
  return std::make_pair(samples / Fastest(cpu_seconds), samples / Fastest(gpu_seconds));
}

StatusOr<std::pair<double, double>> DeepFmStep(const GpuBenchOptions& o, int shrink) {
  const int64_t batch = std::max<int64_t>(1, o.ctr_batch / shrink);
  Arena host(false);
  DeepFm cpu;
  if (!cpu.Init(&host, batch, 5)) return Status::Internal("host allocation failed");
  TS_ASSIGN_OR_RETURN(
      Samples cpu_seconds,
      TimeOnHost([&] { return cpu.Step(kernels::DeviceContext{}, nullptr); }, o.seconds, o.reps));
  TS_ASSIGN_OR_RETURN(auto gpu, kernels::DeviceResources::Create({kernels::Device::kCuda, 1}));
  const kernels::DeviceContext& ctx = gpu->context();
  Arena device(true);
  DeepFm d;
  if (!d.Init(&device, batch, 5)) return Status::Internal("device allocation failed");
  cublasHandle_t cublas = nullptr;
  if (cublasCreate(&cublas) != CUBLAS_STATUS_SUCCESS) return Status::Internal("cublasCreate");
  std::unique_ptr<cublasContext, void (*)(cublasHandle_t)> cublas_owner(
      cublas, [](cublasHandle_t h) { (void)cublasDestroy(h); });
  TS_RETURN_IF_ERROR(kernels::cuda::CublasStatus(cublasSetStream(cublas, ctx.stream), "stream"));
  // Pinned host copies of what a step moves: rows + indices + labels up, row gradients down.
  const size_t rows_bytes = static_cast<size_t>(d.unique_rows) * kEmbDim * sizeof(float);
  const size_t idx_bytes = static_cast<size_t>(batch) * kFields * sizeof(int32_t);
  const size_t labels_bytes = static_cast<size_t>(batch) * sizeof(float);
  void* pinned = nullptr;
  TS_RETURN_IF_ERROR(CudaStatus(
      cudaHostAlloc(&pinned, 2 * rows_bytes + idx_bytes + labels_bytes, cudaHostAllocDefault),
      "pin"));
  std::unique_ptr<void, void (*)(void*)> pinned_owner(pinned,
                                                      [](void* p) { (void)cudaFreeHost(p); });
  unsigned char* h = static_cast<unsigned char*>(pinned);
  std::memset(h, 0, 2 * rows_bytes + idx_bytes + labels_bytes);  // indices 0: in range
  cudaStream_t s = ctx.stream;
  TS_ASSIGN_OR_RETURN(
      Samples gpu_seconds,
      TimeOnHost(
          [&]() -> Status {
            TS_RETURN_IF_ERROR(CudaStatus(
                cudaMemcpyAsync(d.rows, h, rows_bytes, cudaMemcpyHostToDevice, s), "upload"));
            TS_RETURN_IF_ERROR(CudaStatus(
                cudaMemcpyAsync(d.idx, h + rows_bytes, idx_bytes, cudaMemcpyHostToDevice, s),
                "upload"));
            TS_RETURN_IF_ERROR(CudaStatus(cudaMemcpyAsync(d.labels, h + rows_bytes + idx_bytes,
                                                          labels_bytes, cudaMemcpyHostToDevice, s),
                                          "upload"));
            TS_RETURN_IF_ERROR(
                CudaStatus(cudaMemsetAsync(d.grad_rows, 0, rows_bytes, s), "zero row grads"));
            TS_RETURN_IF_ERROR(d.Step(ctx, cublas));
            TS_RETURN_IF_ERROR(
                CudaStatus(cudaMemcpyAsync(h + rows_bytes + idx_bytes + labels_bytes, d.grad_rows,
                                           rows_bytes, cudaMemcpyDeviceToHost, s),
                           "download"));
            return CudaStatus(cudaStreamSynchronize(s), "synchronise");
          },
          o.seconds, o.reps));
  return std::make_pair(batch / Fastest(cpu_seconds), batch / Fastest(gpu_seconds));
}

}  // namespace

bool RunStepComparison(const DeviceInfo& dev, const GpuBenchOptions& o, int shrink,
                       JsonLines* json) {
  std::printf("\n%-44s %12s %12s %9s\n", "worker step (compute only, samples/s)", "cpu", "cuda",
              "cuda/cpu");
  auto mf = MfStep(o, shrink);
  if (!mf.ok()) {
    std::printf("MF step failed: %s\n", mf.status().ToString().c_str());
    return false;
  }
  const int64_t mf_batch = std::max<int64_t>(1, o.mf_batch / shrink);
  PrintStep(("MF dim " + std::to_string(o.mf_dim) + ", batch " + std::to_string(mf_batch)).c_str(),
            mf->first, mf->second, json, "gpu_step_mf", mf_batch);
  auto deepfm = DeepFmStep(o, shrink);
  if (!deepfm.ok()) {
    std::printf("DeepFM step failed: %s\n", deepfm.status().ToString().c_str());
    return false;
  }
  const int64_t ctr_batch = std::max<int64_t>(1, o.ctr_batch / shrink);
  PrintStep(("DeepFM emb 16, MLP 400x3, batch " + std::to_string(ctr_batch)).c_str(), deepfm->first,
            deepfm->second, json, "gpu_step_deepfm", ctr_batch);
  if (dev.emulated) std::printf("(emulated device: the cuda column means nothing)\n");
  return true;
}

}  // namespace tessera::bench::internal
