// Biased matrix factorisation, r̂(u,i) = mu + b_u + b_i + p_u·q_i, trained with squared loss
// and L2 through the parameter servers under BSP: the MF model of the training loop
// (worker/train_loop.h).
//
// Tables: 0 = users, 1 = items; a row is [factors(dim) | bias]. Worker w of W reads its own
// byte-range partition of the training and test files; the loop shuffles it every epoch.
// Evaluation: RMSE and MAE of the clipped predictions over every worker's test ratings.
#pragma once

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "worker/data/rating_reader.h"
#include "worker/mf_order.h"
#include "worker/model.h"
#include "worker/ps_client.h"
#include "worker/recovery.h"

namespace tessera::worker {

inline constexpr uint32_t kUserTable = 0;
inline constexpr uint32_t kItemTable = 1;

// The MF batch size of --device cuda when the user gives none. The CUDA gradient runs one warp
// per sample, so 8192 samples are 1024 blocks of 256 threads: one full wave on an H100 (132 SMs x
// 8 resident blocks) or an A100, where the default CPU batch (64) would leave 98% of the GPU idle
// and pay a launch and two copies per 64 samples. A constant rather than a figure read from the
// device: every worker of a job must take the same batch size (BSP counts the same steps on
// each), whatever GPU it got.
inline constexpr int kMfCudaDefaultBatchSize = 8192;

struct MfTrainerOptions {
  std::string train_path;
  std::string test_path;  // "" = no evaluation
  // Validation data for early stopping: a file, or (without one) this fraction of the training
  // ratings held out by a hash of (user, item, seed), so the same ratings are held out whatever
  // the number of workers. Neither: no validation.
  std::string valid_path;
  double valid_fraction = 0;
  int early_stop = 0;  // TrainLoopOptions::early_stop
  // The epoch's order (MfModel::EpochOrder): blocked, or every sample shuffled (--order).
  bool blocked_order = true;
  // Ids below KeyDeduper::kMaxDirectKeys deduplicated through a directly indexed array; false:
  // through the hash, the general path (the servers' tables have the same switch).
  bool direct_ids = true;
  RatingFormat format = RatingFormat::kAuto;
  bool skip_bad_lines = false;
  int reader_threads = 2;
  // Threads for a step's gradient on CPU: 1, or 2 (the batch split over two cores, same bits).
  int compute_threads = 2;
  int dim = 32;  // factors per row (the row also holds the bias)
  int epochs = 80;
  int batch_size = 64;    // ratings per worker per step
  float l2 = 0.09f;       // L2 on the factors, per rating
  float l2_bias = 0.01f;  // L2 on the biases, per rating
  uint64_t seed = 1;      // shuffling (row initialisation is seeded on the servers)
  kernels::Device device = kernels::Device::kCpu;
  std::string metrics_out;                    // JSON lines, written by worker 0
  double noise_floor = NAN;                   // σ of planted data, printed next to the final RMSE
  bool progress = true;                       // worker 0 logs progress lines
  std::chrono::milliseconds timeout{600000};  // bound on any single wait for a peer
  RecoveryOptions recovery;                   // checkpoints, resume, heartbeats
};

// Biased MF as a Model of the training loop. Create makes the device workspace the kernels run in
// on the worker's device context (whose kernels split a CPU step over its compute threads).
// Borrows `options` and `device`, which must outlive the model.
//
// On CUDA each batch is staged in the workspace's pinned memory when it is prepared (indices and
// ratings written there), the loop decodes the pulled rows straight into it (PullDestination),
// the gradients come back into pinned memory that becomes the push frame (GradientFrame): one
// upload and one download per step, no other copy. Evaluation batches are pipelined: a batch's
// predictions are queued and read while the next batch is pulled. On the CPU nothing is staged
// and the kernels run on the loop's buffers as before (the same bits).
class MfModel : public Model {
 public:
  static StatusOr<std::unique_ptr<MfModel>> Create(const MfTrainerOptions& options,
                                                   const kernels::DeviceContext& device);
  ~MfModel() override;

  std::vector<int> TableDims() const override;
  Status Setup(WorkerGroup* group) override;
  StatusOr<int64_t> Summarize() override;
  std::vector<std::string> StartupLines(const JobShape& shape) const override;
  Status Restore(const proto::CheckpointManifest& manifest, const std::string& dir) override;
  Status WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                         proto::ModelDescription* description) override;
  int64_t num_train_samples() const override { return static_cast<int64_t>(train_.size()); }
  void EpochOrder(uint64_t seed, size_t batch_size, std::vector<uint32_t>* order,
                  std::vector<bool>* disjoint_next) const override;
  std::unique_ptr<ModelBatch> NewBatch() const override;
  void PrepareTrainBatch(const uint32_t* order, size_t n, ModelBatch* batch) override;
  float* PullDestination(const ModelBatch& batch, uint64_t total_floats) override;
  Frame GradientFrame(const ModelBatch& batch, uint64_t total_floats, float** writable) override;
  Status ComputeGradients(const ModelBatch& batch, const std::vector<const float*>& rows,
                          const std::vector<float*>& grads, double* loss_sum,
                          bool* known_finite) override;
  bool has_valid_data() const override {
    return !options_.valid_path.empty() || options_.valid_fraction > 0;
  }
  void SelectEvalSet(EvalSet set) override { eval_set_ = set; }
  bool has_eval_data() const override { return !options_.test_path.empty(); }
  int64_t num_eval_samples() const override { return static_cast<int64_t>(EvalSamples().size()); }
  int64_t eval_batch_size() const override { return 16384; }
  void PrepareEvalBatch(size_t begin, size_t n, ModelBatch* batch) override;
  Status EvalBatch(size_t begin, const ModelBatch& batch,
                   const std::vector<const float*>& rows) override;
  StatusOr<EvalReport> EndEval(int64_t step) override;
  std::vector<std::string> MetricNames() const override { return {"rmse", "mae"}; }
  std::string ProgressLine(const JobShape& shape, const StepProgress& progress) const override;
  std::string EpochLine(const JobShape& shape, const EpochStats& stats,
                        const std::string& eval_text) const override;
  Status Finish(const EvalReport& last_eval, double train_seconds,
                std::vector<std::string>* log_lines, std::vector<JsonField>* done_fields) override;

 private:
  // A rating packed in one 24-byte record: a shuffled batch gathers one cache line per rating
  // instead of one from each of three arrays.
  struct Sample {
    uint64_t user;
    uint64_t item;
    float rating;
  };
  struct Batch;
  static std::vector<Sample> Pack(const RatingData& data);
  // Moves the ratings whose hash of (user, item, seed) falls in `fraction` from *train to
  // *held_out, both in their order.
  static void HoldOut(double fraction, uint64_t seed, std::vector<Sample>* train,
                      std::vector<Sample>* held_out);
  explicit MfModel(const MfTrainerOptions& options);
  // Sorts train_ by block (blocked_order) and sets block_begin_ and grid_.
  void BuildBlocks();
  void Prepare(const std::vector<Sample>& data, const uint32_t* order, size_t n, Batch* batch);
  kernels::MfBatch MakeKernelBatch(const Batch& b, const std::vector<const float*>& rows) const;
  kernels::MfStepScalars Scalars() const;
  // CUDA: stages `batch` (indices and ratings) in the workspace; a failure is kept in the batch.
  void Stage(Batch* batch);
  // The staged step of `batch` with the pulled rows in place (copied when the loop decoded them
  // elsewhere), or null when the batch is not staged.
  StatusOr<kernels::MfStagedStep*> StagedWithRows(const Batch& batch,
                                                  const std::vector<const float*>& rows) const;
  // Adds an evaluated batch's errors to the evaluation's sums.
  void AddEvalErrors(const float* ratings, const float* predictions, size_t n);
  // CUDA evaluation: waits for the queued batch's predictions and adds them.
  Status DrainEval();

  const MfTrainerOptions& options_;
  WorkerGroup* group_ = nullptr;
  // Runs the MF kernels on the host batches through the worker's context: a pass-through on CPU,
  // staging through device buffers on CUDA.
  std::unique_ptr<kernels::MfDeviceWorkspace> workspace_;
  const std::vector<Sample>& EvalSamples() const {
    return eval_set_ == EvalSet::kTest ? test_ : valid_;
  }

  std::vector<Sample> train_, test_, valid_;
  // The blocked order (worker/mf_order.h): train_ sorted by block (user band x item band of
  // grid_), block b holding train_[block_begin_[b], block_begin_[b + 1]); empty for the plain
  // shuffle (--order shuffled, or a single block).
  std::vector<uint32_t> block_begin_;
  MfBlockGrid grid_;
  EvalSet eval_set_ = EvalSet::kTest;
  KeyDeduper dedup_;
  float global_mean_ = 0;
  float min_rating_ = 0, max_rating_ = 0;
  int64_t total_train_ratings_ = 0;
  int64_t total_test_ratings_ = 0;
  int64_t total_valid_ratings_ = 0;
  // An evaluation's sums so far (this worker).
  double eval_sse_ = 0, eval_sae_ = 0;
  int64_t eval_count_ = 0;
  std::vector<float> predictions_;
  // CUDA: the evaluation batch whose predictions are queued (declared after workspace_, so it is
  // released before the workspace).
  std::unique_ptr<kernels::MfStagedStep> pending_eval_;
};

}  // namespace tessera::worker
