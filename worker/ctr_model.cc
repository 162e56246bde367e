#include "worker/ctr_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cross.h"
#include "kernels/dense.h"
#include "kernels/dense_ops.h"
#include "kernels/device_memory.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "kernels/random_math.h"
#include "worker/ctr_staging.h"

namespace tessera::worker {

using kernels::ColumnSum;
using kernels::CopyColumns;
using kernels::CrossBackward;
using kernels::CrossForward;
using kernels::EmbeddingPool;
using kernels::EmbeddingPoolBackward;
using kernels::FillZeros;
using kernels::FirstOrderLogits;
using kernels::FmBackward;
using kernels::FmForward;
using kernels::LinearBackward;
using kernels::LinearForward;
using kernels::LinearReluForward;
using kernels::ReluBackwardColumnSum;
using kernels::RepeatElements;
using kernels::SigmoidBceBackward;
using kernels::SigmoidBceForward;
using kernels::WeightedColumnSum;

StatusOr<CtrModelKind> ParseCtrModel(const std::string& name) {
  if (name == "lr") return CtrModelKind::kLr;
  if (name == "fm") return CtrModelKind::kFm;
  if (name == "deepfm") return CtrModelKind::kDeepFm;
  if (name == "wide_deep") return CtrModelKind::kWideDeep;
  if (name == "dcn_v2") return CtrModelKind::kDcnV2;
  return Status::InvalidArgument("unknown CTR model '" + name +
                                 "'; choices: lr, fm, deepfm, wide_deep, dcn_v2");
}

const char* CtrModelName(CtrModelKind kind) {
  switch (kind) {
    case CtrModelKind::kLr:
      return "lr";
    case CtrModelKind::kFm:
      return "fm";
    case CtrModelKind::kDeepFm:
      return "deepfm";
    case CtrModelKind::kWideDeep:
      return "wide_deep";
    case CtrModelKind::kDcnV2:
      return "dcn_v2";
  }
  return "unknown";
}

bool UsesEmbeddingTable(CtrModelKind kind) { return kind != CtrModelKind::kLr; }
bool UsesLinearTable(CtrModelKind kind) { return kind != CtrModelKind::kDcnV2; }

namespace {

bool UsesFm(CtrModelKind k) { return k == CtrModelKind::kFm || k == CtrModelKind::kDeepFm; }
bool UsesMlp(CtrModelKind k) {
  return k == CtrModelKind::kDeepFm || k == CtrModelKind::kWideDeep || k == CtrModelKind::kDcnV2;
}
bool UsesCross(CtrModelKind k) { return k == CtrModelKind::kDcnV2; }

}  // namespace

// Offsets of every parameter block in the flat buffer.
struct CtrModel::Layout {
  struct Dense {
    size_t w = 0, b = 0;
    int in = 0, out = 0;
  };
  size_t bias = 0;
  size_t dense_w = 0;  // num_dense weights of the dense features (linear part)
  bool has_dense_w = false;
  int x0_dim = 0;            // F * D + num_dense
  std::vector<Dense> mlp;    // hidden layers (ReLU)
  Dense mlp_out;             // deepfm / wide_deep: last hidden -> 1
  std::vector<Dense> cross;  // dcn_v2: x0_dim x x0_dim each
  Dense dcn_out;             // dcn_v2: [cross, mlp] -> 1, no bias (the global bias is added)
  size_t total = 0;

  Dense Add(int in, int out, bool with_bias) {
    Dense d;
    d.in = in;
    d.out = out;
    d.w = total;
    total += static_cast<size_t>(in) * out;
    if (with_bias) {
      d.b = total;
      total += out;
    } else {
      d.b = SIZE_MAX;
    }
    return d;
  }
};

// The activation and scratch buffers of one model, in the context's memory, by id: fixed ids
// below, then one per hidden layer and two per cross layer. A buffer keeps its largest size.
class CtrModel::Buffers {
 public:
  enum Id {
    kLogits,
    kLinearTerms,
    kEmb,  // the field embeddings without an MLP (with one they are x0's first columns)
    kX0,
    kConcat,
    kScratchA,  // the gradient flowing down the MLP
    kScratchB,  // bag gradients of the first-order rows, then the MLP's other half
    kMlpOut,    // the output layer's logit (MLP, or DCN-v2's [cross, MLP] layer)
    kDlogits,
    kDemb,
    kDconcat,
    kDx,
    kDxl,
    kDx0,
    kCrossWorkspace,
    kZeros,
    kNumFixed
  };
  Buffers(kernels::Device device, size_t num_mlp, size_t num_cross)
      : num_mlp_(num_mlp), num_cross_(num_cross) {
    for (size_t i = 0; i < kNumFixed + num_mlp + 2 * num_cross; ++i) {
      buffers_.push_back(std::make_unique<kernels::DeviceBuffer>(device, "CTR activations"));
    }
  }
  // Buffer `id` with room for `count` floats (its contents are lost when it grows).
  StatusOr<float*> Get(size_t id, int64_t count) {
    return buffers_[id]->Get<float>(static_cast<size_t>(count));
  }
  float* at(size_t id) const { return buffers_[id]->data<float>(); }
  size_t hidden(size_t l) const { return kNumFixed + l; }
  size_t cross_x(size_t l) const { return kNumFixed + num_mlp_ + l; }
  size_t cross_z(size_t l) const { return kNumFixed + num_mlp_ + num_cross_ + l; }

 private:
  const size_t num_mlp_, num_cross_;
  std::vector<std::unique_ptr<kernels::DeviceBuffer>> buffers_;
};

CtrModel::CtrModel(const CtrModelConfig& config, const kernels::DeviceContext& ctx)
    : config_(config), ctx_(ctx) {}
struct CtrModel::DeviceSegmentsHolder {
#if TESSERA_WITH_CUDA
  kernels::DeviceSegments segments;
#endif
};

CtrModel::~CtrModel() = default;

StatusOr<std::unique_ptr<CtrModel>> CtrModel::Create(const CtrModelConfig& c,
                                                     const kernels::DeviceContext& ctx) {
  if (ctx.device == kernels::Device::kCuda) {
    TS_RETURN_IF_ERROR(kernels::CheckCudaAvailable());
    if (ctx.stream == nullptr || ctx.cublas == nullptr) {
      return Status::InvalidArgument(
          "a CTR model on cuda needs a context with a stream and a cuBLAS handle "
          "(kernels::DeviceResources)");
    }
  } else if (ctx.device != kernels::Device::kCpu) {
    return Status::InvalidArgument(std::string("CTR models run on cpu or cuda, not on ") +
                                   kernels::DeviceName(ctx.device));
  }
  if (c.num_fields < 1) return Status::InvalidArgument("a CTR model needs at least one field");
  if (c.num_dense < 0) return Status::InvalidArgument("negative number of dense features");
  if (UsesEmbeddingTable(c.kind) && (c.emb_dim < 1 || c.emb_dim > 1024)) {
    return Status::InvalidArgument("--emb-dim must be in [1, 1024]");
  }
  if (UsesMlp(c.kind)) {
    if (c.mlp.empty()) return Status::InvalidArgument("--mlp needs at least one hidden layer");
    for (int w : c.mlp) {
      if (w < 1 || w > 65536) return Status::InvalidArgument("--mlp widths must be in [1, 65536]");
    }
  }
  if (UsesCross(c.kind) && (c.cross_layers < 1 || c.cross_layers > 16)) {
    return Status::InvalidArgument("--cross-layers must be in [1, 16]");
  }
  std::unique_ptr<CtrModel> model(new CtrModel(c, ctx));
  auto layout = std::make_unique<Layout>();
  layout->bias = layout->total++;
  if (UsesLinearTable(c.kind) && c.num_dense > 0) {
    layout->has_dense_w = true;
    layout->dense_w = layout->total;
    layout->total += c.num_dense;
  }
  layout->x0_dim = c.num_fields * c.emb_dim + c.num_dense;
  if (UsesMlp(c.kind)) {
    int in = layout->x0_dim;
    for (int width : c.mlp) {
      layout->mlp.push_back(layout->Add(in, width, true));
      in = width;
    }
    if (c.kind != CtrModelKind::kDcnV2) layout->mlp_out = layout->Add(in, 1, true);
  }
  if (UsesCross(c.kind)) {
    for (int l = 0; l < c.cross_layers; ++l) {
      layout->cross.push_back(layout->Add(layout->x0_dim, layout->x0_dim, true));
    }
    layout->dcn_out = layout->Add(layout->x0_dim + c.mlp.back(), 1, false);
  }
  model->num_params_ = layout->total;
  model->buffers_ = std::make_unique<Buffers>(ctx.device, layout->mlp.size(), layout->cross.size());
  model->staging_ = std::make_unique<CtrStaging>(ctx, c.num_fields, c.num_dense, c.emb_dim);
  model->layout_ = std::move(layout);
  return model;
}

std::vector<DenseBlock> CtrModel::Blocks() const {
  const Layout& L = *layout_;
  std::vector<DenseBlock> blocks = {{"global_bias", L.bias, {1}}};
  if (L.has_dense_w) blocks.push_back({"dense_linear.w", L.dense_w, {config_.num_dense}});
  auto add = [&](const std::string& name, const Layout::Dense& d) {
    blocks.push_back({name + ".w", d.w, {d.in, d.out}});
    if (d.b != SIZE_MAX) blocks.push_back({name + ".b", d.b, {d.out}});
  };
  for (size_t i = 0; i < L.mlp.size(); ++i) add("mlp." + std::to_string(i), L.mlp[i]);
  if (UsesMlp(config_.kind) && config_.kind != CtrModelKind::kDcnV2) add("mlp.out", L.mlp_out);
  for (size_t i = 0; i < L.cross.size(); ++i) add("cross." + std::to_string(i), L.cross[i]);
  if (UsesCross(config_.kind)) add("dcn.out", L.dcn_out);
  return blocks;
}

void CtrModel::InitParams(float* params) const {
  std::fill_n(params, num_params_, 0.0f);
  const uint64_t stream = kernels::SplitMix64(config_.seed ^ 0x44454E5345ull);  // "DENSE"
  uint32_t counter = 0;
  auto glorot = [&](const Layout::Dense& d) {
    const float limit = std::sqrt(6.0f / static_cast<float>(d.in + d.out));
    const size_t n = static_cast<size_t>(d.in) * d.out;
    for (size_t i = 0; i < n; ++i) {
      params[d.w + i] = limit * (2.0f * kernels::CounterUniform(stream, counter++) - 1.0f);
    }
  };
  for (const auto& d : layout_->mlp) glorot(d);
  if (UsesMlp(config_.kind) && config_.kind != CtrModelKind::kDcnV2) glorot(layout_->mlp_out);
  for (const auto& d : layout_->cross) glorot(d);
  if (UsesCross(config_.kind)) glorot(layout_->dcn_out);
}

std::string CtrModel::Describe() const {
  const auto& c = config_;
  std::string s =
      std::string(CtrModelName(c.kind)) + ": " + std::to_string(c.num_fields) + " field(s)";
  if (UsesEmbeddingTable(c.kind)) s += " x " + std::to_string(c.emb_dim);
  s += " + " + std::to_string(c.num_dense) + " dense";
  if (UsesCross(c.kind)) s += " -> " + std::to_string(c.cross_layers) + " cross layer(s) ||";
  if (UsesMlp(c.kind)) {
    s += " -> MLP";
    for (size_t i = 0; i < c.mlp.size(); ++i) s += (i ? "-" : " ") + std::to_string(c.mlp[i]);
  }
  s += " -> 1; " + std::to_string(num_params_) + " dense parameters";
  return s;
}

namespace {

// y[i] += x[i] over a rows x cols block (both row-major, same shape).
Status AddTo(const kernels::DeviceContext& ctx, const float* x, float* y, int64_t rows, int cols) {
  return CopyColumns(ctx, x, cols, 0, y, cols, 0, rows, cols, /*accumulate=*/true);
}

}  // namespace

Status CtrModel::Forward(const float* params, const CtrBatchView& in) {
  const auto& c = config_;
  const Layout& L = *layout_;
  Buffers& buf = *buffers_;
  const int64_t B = in.batch_size;
  const int F = c.num_fields, D = c.emb_dim, Nd = c.num_dense;
  const int64_t bags = B * F;
  if (B < 0) return Status::InvalidArgument("negative batch size");
  if (B == 0) return OkStatus();
  TS_ASSIGN_OR_RETURN(float* logits, buf.Get(Buffers::kLogits, B));

  // logits = bias + (first-order terms of the bags + <w_dense, dense>).
  const float* linear_terms = nullptr;
  if (UsesLinearTable(c.kind)) {
    TS_ASSIGN_OR_RETURN(float* terms, buf.Get(Buffers::kLinearTerms, bags));
    TS_RETURN_IF_ERROR(EmbeddingPool(ctx_, in.linear_rows, in.num_rows, in.offsets, in.indices,
                                     in.weights, terms, bags, 1));
    linear_terms = terms;
  }
  TS_RETURN_IF_ERROR(FirstOrderLogits(
      ctx_, params + L.bias, linear_terms, linear_terms != nullptr ? F : 0,
      L.has_dense_w ? params + L.dense_w : nullptr, in.dense, L.has_dense_w ? Nd : 0, logits, B));
  // The field embeddings: pooled straight into the first F * D columns of the MLP's input x0 =
  // [field embeddings, dense features] when there is an MLP (no copy into it), else into a
  // batch x F x D buffer of their own.
  const int x0_dim = L.x0_dim;
  const float* emb = nullptr;
  if (UsesEmbeddingTable(c.kind)) {
    const bool in_x0 = UsesMlp(c.kind);
    TS_ASSIGN_OR_RETURN(
        float* out, buf.Get(in_x0 ? Buffers::kX0 : Buffers::kEmb, in_x0 ? B * x0_dim : bags * D));
    TS_RETURN_IF_ERROR(EmbeddingPool(ctx_, in.emb_rows, in.num_rows, in.offsets, in.indices,
                                     in.weights, out, bags, D, EmbLayout()));
    emb = out;
  }
  // The FM term goes straight into the logits.
  if (UsesFm(c.kind)) {
    TS_RETURN_IF_ERROR(FmForward(ctx_, emb, logits, B, F, D, EmbLayout().row_stride, true));
  }
  if (!UsesMlp(c.kind)) return OkStatus();

  float* x0 = buf.at(Buffers::kX0);
  if (Nd > 0) {
    TS_RETURN_IF_ERROR(CopyColumns(ctx_, in.dense, Nd, 0, x0, x0_dim, F * D, B, Nd, false));
  }
  const float* h = x0;
  for (size_t l = 0; l < L.mlp.size(); ++l) {
    const auto& d = L.mlp[l];
    TS_ASSIGN_OR_RETURN(float* out, buf.Get(buf.hidden(l), B * d.out));
    TS_RETURN_IF_ERROR(
        LinearReluForward(ctx_, ctx_.cublas, h, params + d.w, params + d.b, out, B, d.in, d.out));
    h = out;
  }
  TS_ASSIGN_OR_RETURN(float* mlp_logit, buf.Get(Buffers::kMlpOut, B));
  if (c.kind != CtrModelKind::kDcnV2) {
    TS_RETURN_IF_ERROR(LinearForward(ctx_, ctx_.cublas, h, params + L.mlp_out.w,
                                     params + L.mlp_out.b, mlp_logit, B, L.mlp_out.in, 1));
    return AddTo(ctx_, mlp_logit, logits, B, 1);
  }
  // DCN-v2: cross stack on x0, in parallel with the MLP; the output layer sees both.
  const float* xl = x0;
  for (size_t l = 0; l < L.cross.size(); ++l) {
    const auto& d = L.cross[l];
    TS_ASSIGN_OR_RETURN(float* z, buf.Get(buf.cross_z(l), B * x0_dim));
    TS_ASSIGN_OR_RETURN(float* y, buf.Get(buf.cross_x(l), B * x0_dim));
    TS_RETURN_IF_ERROR(
        CrossForward(ctx_, ctx_.cublas, x0, xl, params + d.w, params + d.b, z, y, B, x0_dim));
    xl = y;
  }
  const int m = L.mlp.back().out;
  const int concat_dim = x0_dim + m;
  TS_ASSIGN_OR_RETURN(float* concat, buf.Get(Buffers::kConcat, B * concat_dim));
  TS_RETURN_IF_ERROR(CopyColumns(ctx_, xl, x0_dim, 0, concat, concat_dim, 0, B, x0_dim, false));
  TS_RETURN_IF_ERROR(CopyColumns(ctx_, h, m, 0, concat, concat_dim, x0_dim, B, m, false));
  TS_RETURN_IF_ERROR(LinearForward(ctx_, ctx_.cublas, concat, params + L.dcn_out.w, nullptr,
                                   mlp_logit, B, concat_dim, 1));
  return AddTo(ctx_, mlp_logit, logits, B, 1);
}

Status CtrModel::Predict(const float* params, const CtrBatchView& batch, float* probs) {
  const CtrModelKind kind = config_.kind;
  TS_ASSIGN_OR_RETURN(CtrBatchView in,
                      staging_->Upload(batch, /*with_labels=*/false, UsesEmbeddingTable(kind),
                                       UsesLinearTable(kind)));
  TS_ASSIGN_OR_RETURN(float* out, staging_->PrepareProbs(batch.batch_size, probs));
  TS_RETURN_IF_ERROR(Forward(params, in));
  const int64_t B = batch.batch_size;
  if (B > 0) {
    // Labels do not change the probabilities; the kernel reads them, so they are zeros.
    TS_ASSIGN_OR_RETURN(float* zeros, buffers_->Get(Buffers::kZeros, B));
    TS_RETURN_IF_ERROR(FillZeros(ctx_, zeros, sizeof(float) * B));
    TS_RETURN_IF_ERROR(
        SigmoidBceForward(ctx_, buffers_->at(Buffers::kLogits), zeros, out, nullptr, B));
  }
  return staging_->Finish();
}

Status CtrModel::ForwardBackward(const float* params, const CtrBatchView& batch, float loss_scale,
                                 const CtrGradients& grads, double* loss_sum) {
  const bool emb = UsesEmbeddingTable(config_.kind), linear = UsesLinearTable(config_.kind);
  TS_ASSIGN_OR_RETURN(CtrBatchView in, staging_->Upload(batch, /*with_labels=*/true, emb, linear));
  TS_ASSIGN_OR_RETURN(CtrStaging::GradientOutputs out,
                      staging_->PrepareGradients(batch.num_rows, emb, linear, grads.emb_rows,
                                                 grads.linear_rows, loss_sum));
  TS_ASSIGN_OR_RETURN(const kernels::SegmentsView* segments, PlanSegments(batch));
  TS_RETURN_IF_ERROR(Forward(params, in));
  TS_RETURN_IF_ERROR(Backward(params, in, loss_scale, grads.params, out.emb_rows, out.linear_rows,
                              out.loss_sum, segments));
  return staging_->Finish();
}

StatusOr<const kernels::SegmentsView*> CtrModel::PlanSegments(const CtrBatchView& batch) {
  if (ctx_.device != kernels::Device::kCuda || !ctx_.deterministic) return nullptr;
  const int64_t bags = batch.batch_size * config_.num_fields;
  const int64_t first = bags > 0 ? batch.offsets[0] : 0;
  const int64_t positions = bags > 0 ? batch.offsets[bags] - first : 0;
  // Positions count from offsets[0], as the pool backward's plan expects (kernels/embedding.h);
  // one plan serves both backwards (embedding and first-order rows share num_rows).
  TS_RETURN_IF_ERROR(plan_.Build(batch.indices + first, positions, batch.num_rows));
#if TESSERA_WITH_CUDA
  if (device_plan_ == nullptr) device_plan_ = std::make_unique<DeviceSegmentsHolder>();
  TS_RETURN_IF_ERROR(device_plan_->segments.Upload(plan_, ctx_.stream));
  device_plan_view_ = device_plan_->segments.view();
  return &device_plan_view_;
#else
  return Status::FailedPrecondition("CtrModel: a CUDA context in a build without CUDA");
#endif
}

kernels::BagLayout CtrModel::EmbLayout() const {
  kernels::BagLayout layout;
  layout.bags_per_row = config_.num_fields;
  if (UsesMlp(config_.kind)) layout.row_stride = layout_->x0_dim;
  return layout;
}

Status CtrModel::Backward(const float* params, const CtrBatchView& in, float loss_scale, float* g,
                          float* emb_grads, float* linear_grads, double* loss_sum,
                          const kernels::SegmentsView* segments) {
  const auto& c = config_;
  const Layout& L = *layout_;
  Buffers& buf = *buffers_;
  const int64_t B = in.batch_size;
  const int F = c.num_fields, D = c.emb_dim, Nd = c.num_dense;
  const int64_t bags = B * F;
  const bool emb_table = UsesEmbeddingTable(c.kind), linear_table = UsesLinearTable(c.kind);
  // The row gradients start from zero: the pools' backwards add into them. Every block of the
  // dense gradient is overwritten by the kernel that computes it (CtrModelTest.
  // EveryDenseGradientIsWrittenWhateverTheBufferHeld), so it is zeroed only for an empty batch.
  if (emb_table) TS_RETURN_IF_ERROR(FillZeros(ctx_, emb_grads, sizeof(float) * in.num_rows * D));
  if (linear_table) TS_RETURN_IF_ERROR(FillZeros(ctx_, linear_grads, sizeof(float) * in.num_rows));
  TS_RETURN_IF_ERROR(FillZeros(ctx_, loss_sum, sizeof(double)));
  if (B == 0) return FillZeros(ctx_, g, sizeof(float) * num_params_);

  const float* logits = buf.at(Buffers::kLogits);
  TS_RETURN_IF_ERROR(SigmoidBceForward(ctx_, logits, in.labels, nullptr, loss_sum, B));
  TS_ASSIGN_OR_RETURN(float* dlogits, buf.Get(Buffers::kDlogits, B));
  TS_RETURN_IF_ERROR(SigmoidBceBackward(ctx_, logits, in.labels, dlogits, B, loss_scale));
  TS_RETURN_IF_ERROR(ColumnSum(ctx_, dlogits, B, 1, g + L.bias));
  // The two scratch buffers hold the bag gradients below, then the gradients flowing down the
  // MLP (up to x0_dim or the widest layer per row): sized once, so no pointer moves mid-way.
  int widest = std::max(L.x0_dim, F);
  for (int w : c.mlp) widest = std::max(widest, w);
  TS_ASSIGN_OR_RETURN(float* scratch_a, buf.Get(Buffers::kScratchA, B * widest));
  TS_ASSIGN_OR_RETURN(float* scratch_b, buf.Get(Buffers::kScratchB, B * widest));

  if (linear_table) {
    if (L.has_dense_w) {
      TS_RETURN_IF_ERROR(WeightedColumnSum(ctx_, dlogits, in.dense, B, Nd, g + L.dense_w));
    }
    // d logit / d linear term of each bag = 1.
    float* dlin = scratch_b;
    TS_RETURN_IF_ERROR(RepeatElements(ctx_, dlogits, B, F, dlin));
    TS_RETURN_IF_ERROR(EmbeddingPoolBackward(ctx_, in.offsets, in.indices, in.weights, dlin,
                                             linear_grads, in.num_rows, bags, 1, segments));
  }
  if (!emb_table) return OkStatus();

  if (!UsesMlp(c.kind)) {  // FM: the embeddings' gradient is the FM term's alone
    TS_ASSIGN_OR_RETURN(float* demb, buf.Get(Buffers::kDemb, bags * D));
    TS_RETURN_IF_ERROR(FmBackward(ctx_, buf.at(Buffers::kEmb), dlogits, demb, B, F, D));
    return EmbeddingPoolBackward(ctx_, in.offsets, in.indices, in.weights, demb, emb_grads,
                                 in.num_rows, bags, D, segments);
  }
  const int x0_dim = L.x0_dim;
  const float* x0 = buf.at(Buffers::kX0);
  // Gradient arriving at the last hidden layer's output (every buffer below is overwritten
  // by the kernel that fills it, so none is zeroed first).
  const int m = L.mlp.back().out;
  float* dh = scratch_a;
  float* dx0 = nullptr;  // what reaches x0 besides the MLP: the cross stack (DCN-v2)
  if (c.kind != CtrModelKind::kDcnV2) {
    TS_RETURN_IF_ERROR(LinearBackward(ctx_, ctx_.cublas, buf.at(buf.hidden(L.mlp.size() - 1)),
                                      params + L.mlp_out.w, dlogits, dh, g + L.mlp_out.w,
                                      g + L.mlp_out.b, B, m, 1));
  } else {
    const int concat_dim = x0_dim + m;
    TS_ASSIGN_OR_RETURN(float* dconcat, buf.Get(Buffers::kDconcat, B * concat_dim));
    TS_RETURN_IF_ERROR(LinearBackward(ctx_, ctx_.cublas, buf.at(Buffers::kConcat),
                                      params + L.dcn_out.w, dlogits, dconcat, g + L.dcn_out.w,
                                      nullptr, B, concat_dim, 1));
    TS_ASSIGN_OR_RETURN(float* dx, buf.Get(Buffers::kDx, B * x0_dim));
    TS_RETURN_IF_ERROR(CopyColumns(ctx_, dconcat, concat_dim, 0, dx, x0_dim, 0, B, x0_dim, false));
    TS_RETURN_IF_ERROR(CopyColumns(ctx_, dconcat, concat_dim, x0_dim, dh, m, 0, B, m, false));
    // Cross stack backwards; x0 feeds every layer, so its gradient accumulates in dx0.
    TS_ASSIGN_OR_RETURN(dx0, buf.Get(Buffers::kDx0, B * x0_dim));
    TS_RETURN_IF_ERROR(FillZeros(ctx_, dx0, sizeof(float) * B * x0_dim));
    TS_ASSIGN_OR_RETURN(
        float* workspace,
        buf.Get(Buffers::kCrossWorkspace, kernels::CrossBackwardWorkspaceFloats(B, x0_dim)));
    TS_ASSIGN_OR_RETURN(float* dxl, buf.Get(Buffers::kDxl, B * x0_dim));
    for (size_t l = L.cross.size(); l-- > 0;) {
      const auto& d = L.cross[l];
      const float* xl = l == 0 ? x0 : buf.at(buf.cross_x(l - 1));
      TS_RETURN_IF_ERROR(CrossBackward(ctx_, ctx_.cublas, x0, xl, params + d.w,
                                       buf.at(buf.cross_z(l)), dx, dx0, dxl, g + d.w, g + d.b,
                                       workspace, B, x0_dim));
      std::swap(dx, dxl);
    }
    TS_RETURN_IF_ERROR(AddTo(ctx_, dx, dx0, B, x0_dim));  // layer 0's x_l is x0
  }
  // MLP backwards down to x0.
  float* dprev = scratch_b;
  for (size_t l = L.mlp.size(); l-- > 0;) {
    const auto& d = L.mlp[l];
    const float* y = buf.at(buf.hidden(l));
    TS_RETURN_IF_ERROR(ReluBackwardColumnSum(ctx_, y, dh, dh, g + d.b, B, d.out));
    const float* x = l == 0 ? x0 : buf.at(buf.hidden(l - 1));
    TS_RETURN_IF_ERROR(LinearBackward(ctx_, ctx_.cublas, x, params + d.w, dh, dprev, g + d.w,
                                      nullptr, B, d.in, d.out));
    std::swap(dh, dprev);
  }
  if (dx0 != nullptr) TS_RETURN_IF_ERROR(AddTo(ctx_, dh, dx0, B, x0_dim));
  float* dx0_total = dx0 != nullptr ? dx0 : dh;
  // DeepFM: the FM term's gradient joins the MLP's in the embedding columns of x0's gradient
  // (the embeddings are x0's first columns), which the pool's backward then reads in place.
  if (UsesFm(c.kind)) {
    TS_RETURN_IF_ERROR(
        FmBackward(ctx_, x0, dlogits, dx0_total, B, F, D, x0_dim, x0_dim, /*accumulate=*/true));
  }
  return EmbeddingPoolBackward(ctx_, in.offsets, in.indices, in.weights, dx0_total, emb_grads,
                               in.num_rows, bags, D, segments, EmbLayout());
}

}  // namespace tessera::worker
