// The CTR models (worker/ctr_model.h) in the training loop (worker/train_loop.h), with the hybrid
// synchronisation of DESIGN.md: embedding rows are pulled from and pushed to the parameter servers
// every step (BSP, the same PsClient and server path as MF), and the gradient of the replicated
// dense parameters is all-reduced across workers as one fused buffer (Collective) before each
// replica applies the same dense optimizer step, so every replica keeps bit-identical weights.
//
// Worker w of W reads its partition of the training and test files (worker/data/ctr_reader.h); the
// loop shuffles it every epoch and runs as many steps as the largest partition needs. Evaluation
// (every --eval-every steps and at the end of each epoch) gathers every worker's test
// predictions, so AUC is exact.
#pragma once

#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dense_optimizer.h"
#include "kernels/sparse_optimizer.h"
#include "worker/collective.h"
#include "worker/ctr_dense.h"
#include "worker/ctr_model.h"
#include "worker/data/ctr_reader.h"
#include "worker/model.h"
#include "worker/ps_client.h"
#include "worker/recovery.h"

namespace tessera::worker {

struct CtrTrainerOptions {
  std::string train_path;
  std::string test_path;  // "" = no evaluation
  // The validation set of early stopping: a file in the training file's format, or this fraction
  // of the training rows held out (worker/data/ctr_schema.h HoldOutCtrRows). Neither: none.
  std::string valid_path;
  double valid_fraction = 0;
  CtrReadOptions read;   // format, threads, hash seed, bucketised integers, skip_bad_lines
  CtrModelConfig model;  // num_fields / num_dense are filled in from the data
  int epochs = 1;
  int batch_size = 4096;   // rows per worker per step
  int64_t eval_every = 0;  // steps between evaluations; 0: only at the end of each epoch
  int early_stop = 0;      // TrainLoopOptions::early_stop, on the validation logloss
  kernels::OptimizerParams dense_optimizer;  // for the replicated dense parameters
  // --device cuda: let cuBLAS use TF32 tensor cores for the dense layers (--allow-tf32); the
  // worker's DeviceResources sets the math mode (run_worker.cc).
  bool allow_tf32 = false;
  uint64_t seed = 1;        // shuffling
  std::string metrics_out;  // JSON lines, written by worker 0
  bool progress = true;
  std::chrono::milliseconds timeout{600000};
  RecoveryOptions recovery;  // checkpoints, resume, heartbeats
};

// The CTR models (worker/ctr_model.h) as a Model of the training loop: the embedding and
// first-order rows through the servers, the dense parameters replicated on every worker
// (worker/ctr_dense.h, in the memory of the worker's device) with their gradient all-reduced
// through the job's Collective (WorkerGroup::collective(); required with more than one worker)
// after each push. Borrows `options`.
class CtrTask : public Model {
 public:
  // Borrows `options` and `device` (the worker's device context), which must outlive the task.
  CtrTask(const CtrTrainerOptions& options, const kernels::DeviceContext& device);
  ~CtrTask() override;

  std::vector<int> TableDims() const override;
  Status Setup(WorkerGroup* group) override;
  StatusOr<int64_t> Summarize() override;
  std::vector<std::string> StartupLines(const JobShape& shape) const override;
  Status Restore(const proto::CheckpointManifest& manifest, const std::string& dir) override;
  Status WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                         proto::ModelDescription* description) override;
  int64_t num_train_samples() const override { return static_cast<int64_t>(train_.size()); }
  std::unique_ptr<ModelBatch> NewBatch() const override;
  void PrepareTrainBatch(const uint32_t* order, size_t n, ModelBatch* batch) override;
  Status ComputeGradients(const ModelBatch& batch, const std::vector<const float*>& rows,
                          const std::vector<float*>& grads, double* loss_sum,
                          bool* known_finite) override;
  Status AfterPush() override;
  bool has_valid_data() const override {
    return !options_.valid_path.empty() || options_.valid_fraction > 0;
  }
  void SelectEvalSet(EvalSet set) override;
  size_t early_stop_metric() const override { return 1; }  // logloss
  bool has_eval_data() const override { return !options_.test_path.empty(); }
  int64_t num_eval_samples() const override { return static_cast<int64_t>(EvalRows().size()); }
  int64_t eval_batch_size() const override { return 8192; }
  void PrepareEvalBatch(size_t begin, size_t n, ModelBatch* batch) override;
  Status EvalBatch(size_t begin, const ModelBatch& batch,
                   const std::vector<const float*>& rows) override;
  StatusOr<EvalReport> EndEval(int64_t step) override;
  std::vector<std::string> MetricNames() const override { return {"auc", "logloss"}; }
  std::string ProgressLine(const JobShape& shape, const StepProgress& progress) const override;
  std::string EpochLine(const JobShape& shape, const EpochStats& stats,
                        const std::string& eval_text) const override;
  Status Finish(const EvalReport& last_eval, double train_seconds,
                std::vector<std::string>* log_lines, std::vector<JsonField>* done_fields) override;

 private:
  struct Batch;
  Status ReadData();
  const CtrBlock& EvalRows() const { return eval_set_ == EvalSet::kTest ? test_ : valid_; }
  void Prepare(const CtrBlock& data, const uint32_t* order, size_t n, Batch* batch);
  CtrBatchView View(const Batch& batch, const std::vector<const float*>& rows) const;
  StatusOr<bool> DenseParamsIdentical();
  // OK, or NonFinite naming the first non-finite dense parameter (its block and index) or
  // optimizer slot: a checkpoint never holds one.
  Status CheckDenseFinite(const std::vector<float>& params, const std::vector<float>& slots) const;
  // Every worker's `local` in rank order (AllGather; a job without a collective has one worker).
  Status Gather(const std::vector<float>& local, std::vector<float>* all);

  const CtrTrainerOptions& options_;
  const kernels::DeviceContext& device_;  // the model's kernels and the dense optimizer run here
  WorkerGroup* group_ = nullptr;
  Collective* collective_ = nullptr;
  CtrSchema schema_;
  CtrBlock train_, test_, valid_;
  EvalSet eval_set_ = EvalSet::kTest;
  CtrModelConfig model_config_;
  std::unique_ptr<CtrModel> model_;
  std::unique_ptr<CtrDenseReplica> dense_;
  KeyDeduper dedup_;
  float loss_scale_ = 1;  // the mean loss over a nominal global batch
  int64_t total_rows_ = 0;
  int64_t total_test_rows_ = 0;
  int64_t total_valid_rows_ = 0;
  std::vector<float> probs_;  // this worker's predictions of the evaluated set
};

}  // namespace tessera::worker
