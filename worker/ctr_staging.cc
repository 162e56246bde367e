#include "worker/ctr_staging.h"

#include <cstring>

namespace tessera::worker {
namespace {

using kernels::Device;

// Sections of the packed buffers start on this boundary (int64 offsets, coalesced reads).
constexpr size_t kAlign = 64;

size_t AlignUp(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// One array of a packed buffer: its host source and its offset in the pack.
struct Section {
  const void* host = nullptr;
  size_t bytes = 0;
  size_t offset = 0;
};

}  // namespace

CtrStaging::CtrStaging(const kernels::DeviceContext& ctx, int num_fields, int num_dense,
                       int emb_dim)
    : ctx_(ctx),
      num_fields_(num_fields),
      num_dense_(num_dense),
      emb_dim_(emb_dim),
      h_in_(ctx.device, "CTR batch upload staging"),
      h_out_(ctx.device, "CTR gradient download staging"),
      d_in_(ctx.device, "CTR batch inputs"),
      d_out_(ctx.device, "CTR row gradients") {}

StatusOr<CtrBatchView> CtrStaging::Upload(const CtrBatchView& host, bool with_labels, bool with_emb,
                                          bool with_linear) {
  if (ctx_.device == Device::kCpu) return host;
  const int64_t B = host.batch_size;
  const int64_t bags = B * num_fields_;
  if (B < 0 || host.num_rows < 0) return Status::InvalidArgument("negative batch or row count");
  if (B == 0) {
    CtrBatchView empty;
    empty.num_rows = host.num_rows;
    return empty;
  }
  // Positions [offsets[0], offsets[bags]) of indices and weights are read (embedding.h).
  const int64_t positions = host.offsets[bags];
  if (host.offsets[0] < 0 || positions < host.offsets[0]) {
    return Status::InvalidArgument("CTR batch: bad bag offsets");
  }
  enum { kLabels, kDense, kOffsets, kIndices, kWeights, kEmb, kLinear, kCount };
  Section s[kCount];
  // An array the batch has gets a device pointer even when it is empty (the pool kernels want
  // non-null indices with every bag empty); one it lacks stays null.
  auto set = [&](int i, const void* p, size_t bytes) {
    s[i].host = p;
    s[i].bytes = p != nullptr ? bytes : 0;
  };
  if (with_labels) set(kLabels, host.labels, sizeof(float) * B);
  set(kDense, host.dense, sizeof(float) * B * num_dense_);
  set(kOffsets, host.offsets, sizeof(int64_t) * (bags + 1));
  set(kIndices, host.indices, sizeof(int32_t) * positions);
  set(kWeights, host.weights, sizeof(float) * positions);
  if (with_emb) set(kEmb, host.emb_rows, sizeof(float) * host.num_rows * emb_dim_);
  if (with_linear) set(kLinear, host.linear_rows, sizeof(float) * host.num_rows);
  size_t total = 0;
  for (Section& section : s) {
    section.offset = total;
    total += AlignUp(section.bytes);
  }
  TS_RETURN_IF_ERROR(h_in_.Reserve(total));
  TS_RETURN_IF_ERROR(d_in_.Reserve(total));
  char* pinned = h_in_.data<char>();
  for (const Section& section : s) {
    if (section.bytes > 0) std::memcpy(pinned + section.offset, section.host, section.bytes);
  }
  TS_RETURN_IF_ERROR(kernels::CopyToDevice(ctx_, d_in_.data<char>(), pinned, total));
  char* device = d_in_.data<char>();
  auto at = [&](int i) -> void* { return s[i].host != nullptr ? device + s[i].offset : nullptr; };
  CtrBatchView v;
  v.batch_size = B;
  v.num_rows = host.num_rows;
  v.labels = static_cast<const float*>(at(kLabels));
  v.dense = static_cast<const float*>(at(kDense));
  v.offsets = static_cast<const int64_t*>(at(kOffsets));
  // The device pointers keep the host's absolute positions: offsets[0] may be non-zero.
  v.indices = static_cast<const int32_t*>(at(kIndices));
  v.weights = static_cast<const float*>(at(kWeights));
  v.emb_rows = static_cast<const float*>(at(kEmb));
  v.linear_rows = static_cast<const float*>(at(kLinear));
  return v;
}

StatusOr<CtrStaging::GradientOutputs> CtrStaging::PrepareGradients(int64_t num_rows, bool with_emb,
                                                                   bool with_linear,
                                                                   float* host_emb_rows,
                                                                   float* host_linear_rows,
                                                                   double* host_loss_sum) {
  GradientOutputs out;
  if (ctx_.device == Device::kCpu) {
    out.emb_rows = with_emb ? host_emb_rows : nullptr;
    out.linear_rows = with_linear ? host_linear_rows : nullptr;
    out.loss_sum = host_loss_sum;
    num_pending_ = 0;
    return out;
  }
  const size_t loss_bytes = AlignUp(sizeof(double));
  const size_t emb_bytes = with_emb ? sizeof(float) * num_rows * emb_dim_ : 0;
  const size_t linear_bytes = with_linear ? sizeof(float) * num_rows : 0;
  out_bytes_ = loss_bytes + AlignUp(emb_bytes) + linear_bytes;
  TS_RETURN_IF_ERROR(d_out_.Reserve(out_bytes_));
  char* area = d_out_.data<char>();
  out.loss_sum = reinterpret_cast<double*>(area);
  pending_[0] = {host_loss_sum, 0, sizeof(double)};
  num_pending_ = 1;
  if (emb_bytes > 0) {
    out.emb_rows = reinterpret_cast<float*>(area + loss_bytes);
    pending_[num_pending_++] = {host_emb_rows, loss_bytes, emb_bytes};
  }
  if (linear_bytes > 0) {
    const size_t offset = loss_bytes + AlignUp(emb_bytes);
    out.linear_rows = reinterpret_cast<float*>(area + offset);
    pending_[num_pending_++] = {host_linear_rows, offset, linear_bytes};
  }
  return out;
}

StatusOr<float*> CtrStaging::PrepareProbs(int64_t batch_size, float* host_probs) {
  if (ctx_.device == Device::kCpu) {
    num_pending_ = 0;
    return host_probs;
  }
  out_bytes_ = sizeof(float) * batch_size;
  TS_RETURN_IF_ERROR(d_out_.Reserve(out_bytes_));
  pending_[0] = {host_probs, 0, out_bytes_};
  num_pending_ = 1;
  return d_out_.data<float>();
}

Status CtrStaging::Finish() {
  if (ctx_.device == Device::kCpu) return OkStatus();
  TS_RETURN_IF_ERROR(h_out_.Reserve(out_bytes_));
  TS_RETURN_IF_ERROR(
      kernels::CopyToHost(ctx_, h_out_.data<char>(), d_out_.data<char>(), out_bytes_));
  TS_RETURN_IF_ERROR(kernels::SyncDevice(ctx_));
  for (int i = 0; i < num_pending_; ++i) {
    const Pending& p = pending_[i];
    if (p.host != nullptr && p.bytes > 0) {
      std::memcpy(p.host, h_out_.data<char>() + p.offset, p.bytes);
    }
  }
  num_pending_ = 0;
  return OkStatus();
}

}  // namespace tessera::worker
