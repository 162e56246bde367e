#include "worker/ctr_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cross.h"
#include "kernels/dense.h"
#include "kernels/embedding.h"
#include "kernels/fm.h"
#include "kernels/random_math.h"

namespace tessera::worker {

using kernels::CrossBackward;
using kernels::CrossBackwardWorkspaceFloats;
using kernels::CrossForward;
using kernels::EmbeddingPool;
using kernels::EmbeddingPoolBackward;
using kernels::FmBackward;
using kernels::FmForward;
using kernels::LinearBackward;
using kernels::LinearForward;
using kernels::ReluBackward;
using kernels::ReluForward;
using kernels::SigmoidBceBackward;
using kernels::SigmoidBceForward;

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

// The model runs its kernels on the CPU (Create refuses other devices), where the dense layers
// take no cuBLAS handle.
constexpr cublasContext* kNoCublas = nullptr;

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

CtrModel::CtrModel(const CtrModelConfig& config, const kernels::DeviceContext& ctx)
    : config_(config), ctx_(ctx) {}
CtrModel::~CtrModel() = default;

StatusOr<std::unique_ptr<CtrModel>> CtrModel::Create(const CtrModelConfig& c,
                                                     const kernels::DeviceContext& ctx) {
  if (ctx.device != kernels::Device::kCpu) {
    return Status::Unimplemented(std::string("CTR models run on the CPU only, not on device ") +
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

Status CtrModel::Forward(const float* params, const CtrBatchView& in) {
  const auto& c = config_;
  const Layout& L = *layout_;
  const int64_t B = in.batch_size;
  const int F = c.num_fields, D = c.emb_dim, Nd = c.num_dense;
  const int64_t bags = B * F;
  if (B < 0) return Status::InvalidArgument("negative batch size");
  logits_.assign(B, params[L.bias]);
  if (B == 0) return OkStatus();

  if (UsesLinearTable(c.kind)) {
    linear_terms_.resize(bags);
    TS_RETURN_IF_ERROR(EmbeddingPool(ctx_, in.linear_rows, in.num_rows, in.offsets, in.indices,
                                     in.weights, linear_terms_.data(), bags, 1));
    for (int64_t b = 0; b < B; ++b) {
      float sum = 0;
      for (int f = 0; f < F; ++f) sum += linear_terms_[b * F + f];
      if (L.has_dense_w) {
        for (int j = 0; j < Nd; ++j) sum += params[L.dense_w + j] * in.dense[b * Nd + j];
      }
      logits_[b] += sum;
    }
  }
  if (UsesEmbeddingTable(c.kind)) {
    emb_.resize(bags * D);
    TS_RETURN_IF_ERROR(EmbeddingPool(ctx_, in.emb_rows, in.num_rows, in.offsets, in.indices,
                                     in.weights, emb_.data(), bags, D));
  }
  if (UsesFm(c.kind)) {
    fm_.resize(B);
    TS_RETURN_IF_ERROR(FmForward(ctx_, emb_.data(), fm_.data(), B, F, D));
    for (int64_t b = 0; b < B; ++b) logits_[b] += fm_[b];
  }
  if (!UsesMlp(c.kind)) return OkStatus();

  // x0 = [field embeddings, dense features] per row.
  const int x0_dim = L.x0_dim;
  x0_.resize(B * x0_dim);
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(&x0_[b * x0_dim], &emb_[b * F * D], sizeof(float) * F * D);
    if (Nd > 0) std::memcpy(&x0_[b * x0_dim + F * D], &in.dense[b * Nd], sizeof(float) * Nd);
  }
  hidden_.resize(L.mlp.size());
  const float* h = x0_.data();
  for (size_t l = 0; l < L.mlp.size(); ++l) {
    const auto& d = L.mlp[l];
    hidden_[l].resize(B * d.out);
    TS_RETURN_IF_ERROR(LinearForward(ctx_, kNoCublas, h, params + d.w, params + d.b,
                                     hidden_[l].data(), B, d.in, d.out));
    TS_RETURN_IF_ERROR(ReluForward(ctx_, hidden_[l].data(), hidden_[l].data(), B * d.out));
    h = hidden_[l].data();
  }
  scratch_a_.resize(B);
  if (c.kind != CtrModelKind::kDcnV2) {
    TS_RETURN_IF_ERROR(LinearForward(ctx_, kNoCublas, h, params + L.mlp_out.w, params + L.mlp_out.b,
                                     scratch_a_.data(), B, L.mlp_out.in, 1));
    for (int64_t b = 0; b < B; ++b) logits_[b] += scratch_a_[b];
    return OkStatus();
  }
  // DCN-v2: cross stack on x0, in parallel with the MLP; the output layer sees both.
  cross_x_.resize(L.cross.size());
  cross_z_.resize(L.cross.size());
  const float* xl = x0_.data();
  for (size_t l = 0; l < L.cross.size(); ++l) {
    const auto& d = L.cross[l];
    cross_x_[l].resize(B * x0_dim);
    cross_z_[l].resize(B * x0_dim);
    TS_RETURN_IF_ERROR(CrossForward(ctx_, kNoCublas, x0_.data(), xl, params + d.w, params + d.b,
                                    cross_z_[l].data(), cross_x_[l].data(), B, x0_dim));
    xl = cross_x_[l].data();
  }
  const int m = L.mlp.back().out;
  const int concat_dim = x0_dim + m;
  concat_.resize(B * concat_dim);
  for (int64_t b = 0; b < B; ++b) {
    std::memcpy(&concat_[b * concat_dim], &xl[b * x0_dim], sizeof(float) * x0_dim);
    std::memcpy(&concat_[b * concat_dim + x0_dim], &h[b * m], sizeof(float) * m);
  }
  TS_RETURN_IF_ERROR(LinearForward(ctx_, kNoCublas, concat_.data(), params + L.dcn_out.w, nullptr,
                                   scratch_a_.data(), B, concat_dim, 1));
  for (int64_t b = 0; b < B; ++b) logits_[b] += scratch_a_[b];
  return OkStatus();
}

Status CtrModel::Predict(const float* params, const CtrBatchView& batch, float* probs) {
  TS_RETURN_IF_ERROR(Forward(params, batch));
  std::vector<float> zeros(batch.batch_size, 0.0f);
  return SigmoidBceForward(ctx_, logits_.data(), zeros.data(), probs, nullptr, batch.batch_size);
}

Status CtrModel::ForwardBackward(const float* params, const CtrBatchView& in, float loss_scale,
                                 CtrGradients* grads, double* loss_sum) {
  TS_RETURN_IF_ERROR(Forward(params, in));
  const auto& c = config_;
  const Layout& L = *layout_;
  const int64_t B = in.batch_size;
  const int F = c.num_fields, D = c.emb_dim, Nd = c.num_dense;
  const int64_t bags = B * F;
  float* g = nullptr;
  grads->params.assign(num_params_, 0.0f);
  g = grads->params.data();
  grads->emb_rows.assign(UsesEmbeddingTable(c.kind) ? in.num_rows * D : 0, 0.0f);
  grads->linear_rows.assign(UsesLinearTable(c.kind) ? in.num_rows : 0, 0.0f);
  *loss_sum = 0;
  if (B == 0) return OkStatus();

  TS_RETURN_IF_ERROR(SigmoidBceForward(ctx_, logits_.data(), in.labels, nullptr, loss_sum, B));
  dlogits_.resize(B);
  TS_RETURN_IF_ERROR(
      SigmoidBceBackward(ctx_, logits_.data(), in.labels, dlogits_.data(), B, loss_scale));
  for (int64_t b = 0; b < B; ++b) g[L.bias] += dlogits_[b];

  if (UsesLinearTable(c.kind)) {
    if (L.has_dense_w) {
      for (int64_t b = 0; b < B; ++b) {
        for (int j = 0; j < Nd; ++j) g[L.dense_w + j] += dlogits_[b] * in.dense[b * Nd + j];
      }
    }
    // d logit / d linear term of each bag = 1.
    std::vector<float>& dlin = scratch_b_;
    dlin.resize(bags);
    for (int64_t b = 0; b < B; ++b) std::fill_n(&dlin[b * F], F, dlogits_[b]);
    TS_RETURN_IF_ERROR(EmbeddingPoolBackward(ctx_, in.offsets, in.indices, in.weights, dlin.data(),
                                             grads->linear_rows.data(), in.num_rows, bags, 1));
  }
  if (!UsesEmbeddingTable(c.kind)) return OkStatus();

  // FmBackward overwrites demb_; without FM the MLP's gradient is added to zeros.
  if (UsesFm(c.kind)) {
    demb_.resize(bags * D);
    TS_RETURN_IF_ERROR(FmBackward(ctx_, emb_.data(), dlogits_.data(), demb_.data(), B, F, D));
  } else {
    demb_.assign(bags * D, 0.0f);
  }

  if (UsesMlp(c.kind)) {
    const int x0_dim = L.x0_dim;
    // Gradient arriving at the last hidden layer's output (every buffer below is overwritten
    // by the kernel that fills it, so none is zeroed first).
    const int m = L.mlp.back().out;
    std::vector<float>& dh = scratch_a_;
    dh.resize(B * m);
    if (c.kind != CtrModelKind::kDcnV2) {
      TS_RETURN_IF_ERROR(LinearBackward(ctx_, kNoCublas, hidden_.back().data(),
                                        params + L.mlp_out.w, dlogits_.data(), dh.data(),
                                        g + L.mlp_out.w, g + L.mlp_out.b, B, m, 1));
    } else {
      const int concat_dim = x0_dim + m;
      std::vector<float> dconcat(B * concat_dim);
      TS_RETURN_IF_ERROR(LinearBackward(ctx_, kNoCublas, concat_.data(), params + L.dcn_out.w,
                                        dlogits_.data(), dconcat.data(), g + L.dcn_out.w, nullptr,
                                        B, concat_dim, 1));
      std::vector<float> dx(B * x0_dim);
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(&dx[b * x0_dim], &dconcat[b * concat_dim], sizeof(float) * x0_dim);
        std::memcpy(&dh[b * m], &dconcat[b * concat_dim + x0_dim], sizeof(float) * m);
      }
      // Cross stack backwards; x0 feeds every layer, so its gradient accumulates in dx0_.
      dx0_.assign(B * x0_dim, 0.0f);
      std::vector<float> workspace(CrossBackwardWorkspaceFloats(B, x0_dim));
      std::vector<float> dxl(B * x0_dim);
      for (size_t l = L.cross.size(); l-- > 0;) {
        const auto& d = L.cross[l];
        const float* xl = l == 0 ? x0_.data() : cross_x_[l - 1].data();
        TS_RETURN_IF_ERROR(CrossBackward(ctx_, kNoCublas, x0_.data(), xl, params + d.w,
                                         cross_z_[l].data(), dx.data(), dx0_.data(), dxl.data(),
                                         g + d.w, g + d.b, workspace.data(), B, x0_dim));
        dx.swap(dxl);
      }
      for (int64_t i = 0; i < B * x0_dim; ++i) dx0_[i] += dx[i];  // layer 0's x_l is x0
    }
    // dx0_ collects what reaches x0 besides the MLP: the cross stack (DCN-v2) or nothing.
    const bool cross_into_x0 = c.kind == CtrModelKind::kDcnV2;
    // MLP backwards down to x0.
    std::vector<float>& dprev = scratch_b_;
    for (size_t l = L.mlp.size(); l-- > 0;) {
      const auto& d = L.mlp[l];
      TS_RETURN_IF_ERROR(ReluBackward(ctx_, hidden_[l].data(), dh.data(), dh.data(), B * d.out));
      const float* x = l == 0 ? x0_.data() : hidden_[l - 1].data();
      dprev.resize(B * d.in);
      TS_RETURN_IF_ERROR(LinearBackward(ctx_, kNoCublas, x, params + d.w, dh.data(), dprev.data(),
                                        g + d.w, g + d.b, B, d.in, d.out));
      dh.swap(dprev);
    }
    if (cross_into_x0) {
      for (int64_t i = 0; i < B * x0_dim; ++i) dx0_[i] += dh[i];
    }
    const float* dx0 = cross_into_x0 ? dx0_.data() : dh.data();
    for (int64_t b = 0; b < B; ++b) {
      float* __restrict__ dst = &demb_[b * F * D];
      const float* __restrict__ src = &dx0[b * x0_dim];
      for (int k = 0; k < F * D; ++k) dst[k] += src[k];
    }
  }
  return EmbeddingPoolBackward(ctx_, in.offsets, in.indices, in.weights, demb_.data(),
                               grads->emb_rows.data(), in.num_rows, bags, D);
}

}  // namespace tessera::worker
