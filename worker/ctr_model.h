// The CTR models: LR, FM, DeepFM, Wide&Deep and DCN-v2, as a forward/backward over one batch.
//
// Hybrid parameter placement (DESIGN.md): sparse rows live on the parameter servers — table
// kEmbeddingTable (emb_dim floats per key: field embeddings) and table kLinearTable (1 float per
// key: first-order weights) — and arrive here as the batch's unique rows; every dense parameter
// (global bias, weights of the dense features, MLP, cross layers) is replicated on each worker in
// one flat buffer, whose gradient is all-reduced as one fused buffer per step.
//
// Models (x_emb: the batch's field embeddings, B x F x D; x0 = [x_emb flattened, dense features]):
//   lr        logit = bias + sum_f w_f + <w_dense, dense>
//   fm        lr + FM(x_emb)                            (Rendle 2010)
//   deepfm    fm + MLP(x0)                              (Guo et al. 2017)
//   wide_deep lr + MLP(x0)                              (Cheng et al. 2016)
//   dcn_v2    Linear([Cross^L(x0), MLP(x0)])            (Wang et al. 2021, parallel structure)
// with the MLP's hidden layers ReLU and its last layer 1 unit. Fields are looked up as bags of
// (row, value) pairs: one bag per field for one-hot data, one sum-pooled bag per row for
// multi-hot data; feature values weight the rows (1 for Criteo categories).
//
// Kernels run through the DeviceContext the model is created with (kernels/device_resources.h:
// the worker's one context), on the CPU or on CUDA. The model owns its activations and their
// gradients, in the context's memory (grow-only buffers, kernels/device_memory.h); the dense
// parameters and their gradient are the caller's, in the same memory (device memory on kCuda);
// the batch's inputs and the per-row gradients are host memory, which the model stages
// (worker/ctr_staging.h: one packed upload and one download per call on kCuda). The forward and
// backward are one code path for both devices: on kCpu every kernel is the CPU twin and the
// results are the bits of the former host loops.
// Thread-compatible: one trainer thread uses a model; it owns its activation scratch.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/embedding.h"
#include "kernels/segments.h"

namespace tessera::worker {

class CtrStaging;  // worker/ctr_staging.h

enum class CtrModelKind { kLr, kFm, kDeepFm, kWideDeep, kDcnV2 };

// "lr" | "fm" | "deepfm" | "wide_deep" | "dcn_v2".
StatusOr<CtrModelKind> ParseCtrModel(const std::string& name);
const char* CtrModelName(CtrModelKind kind);

inline constexpr uint32_t kEmbeddingTable = 0;
inline constexpr uint32_t kLinearTable = 1;

struct CtrModelConfig {
  CtrModelKind kind = CtrModelKind::kDeepFm;
  int num_fields = 0;                      // bags per row: one-hot fields, or 1 when multi-hot
  int num_dense = 0;                       // dense input features per row
  int emb_dim = 16;                        // D
  std::vector<int> mlp = {400, 400, 400};  // hidden layer widths (deepfm, wide_deep, dcn_v2)
  int cross_layers = 3;                    // dcn_v2
  uint64_t seed = 1;                       // dense parameter initialisation
};

// Which server tables the model reads.
bool UsesEmbeddingTable(CtrModelKind kind);
bool UsesLinearTable(CtrModelKind kind);

// One batch as the model sees it, after the pull. Bags: row r of the batch has bags
// r * num_fields .. r * num_fields + num_fields - 1; bag k covers positions
// [offsets[k], offsets[k+1]) of `indices` (rows of the unique-row matrices) and `weights`.
struct CtrBatchView {
  int64_t batch_size = 0;
  const float* labels = nullptr;     // batch_size (unused by Predict)
  const float* dense = nullptr;      // batch_size x num_dense
  const int64_t* offsets = nullptr;  // batch_size * num_fields + 1
  const int32_t* indices = nullptr;
  const float* weights = nullptr;      // feature values (may be null: all 1)
  int64_t num_rows = 0;                // unique rows pulled
  const float* emb_rows = nullptr;     // num_rows x emb_dim (when UsesEmbeddingTable)
  const float* linear_rows = nullptr;  // num_rows x 1 (when UsesLinearTable)
};

// Where ForwardBackward writes its gradients (every array OVERWRITTEN).
struct CtrGradients {
  float* params = nullptr;       // num_params(): d loss / d dense parameters; context memory
  float* emb_rows = nullptr;     // num_rows x emb_dim, host memory (when UsesEmbeddingTable)
  float* linear_rows = nullptr;  // num_rows, host memory (when UsesLinearTable)
};

// A named block of the flat dense parameter vector: a weight matrix [in, out] (row-major, as
// y = x w + b) or a bias [out].
struct DenseBlock {
  std::string name;
  size_t offset = 0;
  std::vector<int64_t> shape;
};

class CtrModel {
 public:
  // InvalidArgument for a model that cannot be built (no fields, bad widths, ...) or a kCuda
  // context without a stream and cuBLAS handle (make it with kernels::DeviceResources). The model
  // keeps a copy of ctx: REQUIRES that ctx's resources (kernels::DeviceResources) outlive it.
  static StatusOr<std::unique_ptr<CtrModel>> Create(const CtrModelConfig& config,
                                                    const kernels::DeviceContext& ctx);
  ~CtrModel();

  const CtrModelConfig& config() const { return config_; }
  size_t num_params() const { return num_params_; }
  // Deterministic initial dense parameters (a function of the seed only): every replica starts
  // from the same bits. Weights: uniform Glorot; biases: 0.
  void InitParams(float* params) const;
  // "deepfm: 26 fields x 16 + 13 dense -> MLP 400-400-400 -> 1; 187,457 dense parameters".
  std::string Describe() const;
  // The dense parameters block by block, in the order of the flat vector.
  std::vector<DenseBlock> Blocks() const;

  // Forward and backward of the loss loss_scale * sum_b bce(logit_b, label_b) (pass
  // 1 / global batch size for the mean); *loss_sum (host) is the unscaled sum of the batch's BCE.
  // `params` (num_params() floats) is in the context's memory, `batch` in host memory. Returns
  // once the host outputs are written (kCuda: after a stream sync); grads.params is then complete
  // as far as work queued on the context's stream is concerned.
  Status ForwardBackward(const float* params, const CtrBatchView& batch, float loss_scale,
                         const CtrGradients& grads, double* loss_sum);
  // Click probabilities for the batch (batch_size floats, host memory); params as above.
  Status Predict(const float* params, const CtrBatchView& batch, float* probs);

 private:
  struct Layout;
  class Buffers;
  struct DeviceSegmentsHolder;  // a kernels::DeviceSegments where CUDA is built
  CtrModel(const CtrModelConfig& config, const kernels::DeviceContext& ctx);
  // Both on a batch in the context's memory (after staging); every output pointer of Backward is
  // context memory too.
  Status Forward(const float* params, const CtrBatchView& batch);
  Status Backward(const float* params, const CtrBatchView& batch, float loss_scale,
                  float* param_grads, float* emb_grads, float* linear_grads, double* loss_sum,
                  const kernels::SegmentsView* segments);
  // A deterministic CUDA context's segment plan of the batch's bag positions by row (built on the
  // host from `batch`, uploaded on the context's stream), for the embedding backwards without
  // float atomics; null (and nothing done) otherwise.
  StatusOr<const kernels::SegmentsView*> PlanSegments(const CtrBatchView& batch);
  // Where the pools put the field embeddings: the first num_fields * emb_dim columns of the MLP's
  // input x0 when there is an MLP, else a dense batch x fields x emb_dim buffer.
  kernels::BagLayout EmbLayout() const;

  CtrModelConfig config_;
  kernels::DeviceContext ctx_;  // its resources are borrowed
  std::unique_ptr<Layout> layout_;
  size_t num_params_ = 0;
  // Activations of the last Forward and the backward's scratch, in the context's memory.
  std::unique_ptr<Buffers> buffers_;
  std::unique_ptr<CtrStaging> staging_;
  // Deterministic CUDA only (PlanSegments).
  kernels::SegmentPlan plan_;
  std::unique_ptr<DeviceSegmentsHolder> device_plan_;
  kernels::SegmentsView device_plan_view_;
};

}  // namespace tessera::worker
