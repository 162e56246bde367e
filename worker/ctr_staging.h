// CtrStaging: moves one batch of a CTR model (worker/ctr_model.h) between the host, where the
// training loop keeps it, and the memory of the model's DeviceContext, where its kernels run.
//
// kCpu: no copies; the host pointers pass through and the outputs are written where the caller
// asked. kCuda: Upload packs the batch's inputs (labels, dense features, bag offsets, indices,
// weights, pulled embedding and first-order rows) into one pinned staging buffer and copies it to
// the device with one cudaMemcpyAsync; the per-row gradients and the loss sum (or the predicted
// probabilities) are written by the kernels into one device area, which Finish copies back with
// one cudaMemcpyAsync into pinned memory, then synchronises the stream and hands each output to
// its host destination. Buffers only grow (kernels/device_memory.h).
//
// Ordering: every Upload follows the previous call's Finish (the CtrModel does both in each of
// its calls), so the staging buffers are never rewritten while a copy reads them.
// Thread-compatible: owned by one CtrModel.
#pragma once

#include <cstdint>

#include "core/status.h"
#include "kernels/device.h"
#include "kernels/device_memory.h"
#include "worker/ctr_model.h"

namespace tessera::worker {

class CtrStaging {
 public:
  CtrStaging(const kernels::DeviceContext& ctx, int num_fields, int num_dense, int emb_dim);

  // The batch in the context's memory (kCpu: `host` itself). `host.emb_rows` is read only when
  // with_emb, `host.linear_rows` only when with_linear and `host.labels` only when with_labels;
  // the other pointers of the result are then null. The result stays valid until the next
  // Upload.
  StatusOr<CtrBatchView> Upload(const CtrBatchView& host, bool with_labels, bool with_emb,
                                bool with_linear);

  // Where a backward writes, in the context's memory: num_rows x emb_dim row gradients (with_emb),
  // num_rows first-order row gradients (with_linear) and the loss sum. Finish then delivers them
  // to the host pointers given here (kCpu: they ARE those pointers).
  struct GradientOutputs {
    float* emb_rows = nullptr;
    float* linear_rows = nullptr;
    double* loss_sum = nullptr;
  };
  StatusOr<GradientOutputs> PrepareGradients(int64_t num_rows, bool with_emb, bool with_linear,
                                             float* host_emb_rows, float* host_linear_rows,
                                             double* host_loss_sum);
  // Where a forward writes batch_size probabilities; Finish delivers them to host_probs.
  StatusOr<float*> PrepareProbs(int64_t batch_size, float* host_probs);
  // kCuda: downloads what the last Prepare* asked for and waits for the stream. kCpu: OK.
  Status Finish();

 private:
  struct Pending {  // host destinations of the last Prepare*, with their offsets in the area
    void* host = nullptr;
    size_t offset = 0;
    size_t bytes = 0;
  };

  const kernels::DeviceContext ctx_;
  const int num_fields_, num_dense_, emb_dim_;
  kernels::PinnedBuffer h_in_, h_out_;
  kernels::DeviceBuffer d_in_, d_out_;
  Pending pending_[3];
  int num_pending_ = 0;
  size_t out_bytes_ = 0;
};

}  // namespace tessera::worker
