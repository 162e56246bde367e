#include "worker/ctr_trainer.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "core/checkpoint.h"
#include "core/cluster.h"
#include "core/logging.h"
#include "kernels/dense_optimizer.h"
#include "kernels/device_resources.h"
#include "kernels/random_math.h"
#include "worker/ctr_metrics.h"
#include "worker/metrics_writer.h"
#include "worker/ps_client.h"
#include "worker/worker_node.h"

namespace tessera::worker {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One step's rows on their way through the parameter servers and the model.
struct CtrStep {
  std::vector<float> labels, dense, weights;
  std::vector<uint64_t> keys;
  std::vector<int64_t> offsets;  // bags: row-major (row, field); one-hot bags hold one key
  std::vector<int32_t> indices;  // per key: its row among the unique keys
  std::vector<std::vector<uint64_t>> unique{2};
  BatchPlan plan;
  PsClient::PendingPull pull;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

class CtrTrainer {
 public:
  CtrTrainer(const CtrTrainerOptions& options, RpcNode* rpc, Collective* collective)
      : options_(options), rpc_(rpc), collective_(collective) {}

  StatusOr<CtrResult> Run(std::chrono::milliseconds register_timeout);

 private:
  bool IsReporter() const { return rpc_->self().rank == 0; }
  Status ReadData();
  StatusOr<std::vector<double>> Reduce(std::vector<double> values, proto::ReduceOp op);
  void Prepare(const CtrBlock& data, const uint32_t* order, size_t n, CtrStep* step);
  CtrBatchView View(const CtrStep& step, const std::vector<const float*>& rows) const;
  Status TrainStep(CtrStep* current, std::vector<const float*>* rows, double* loss_sum);
  // Trains steps [start_step, steps_per_epoch_) of `epoch`, adding to *loss_sum / *samples;
  // true when a signal stopped training after a checkpoint.
  StatusOr<bool> TrainEpoch(int epoch, int64_t start_step, double* loss_sum, int64_t* samples);
  // The trainer's part of a checkpoint (WorkerCheckpointer::WriteFn): worker 0 writes the
  // dense parameters and their optimizer state, identical on every replica.
  Status WriteCheckpointFiles(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                              proto::ModelDescription* model);
  Status RestoreDense(const proto::CheckpointManifest& manifest, const std::string& dir);
  Status Evaluate(int epoch, CtrResult* result);
  StatusOr<bool> DenseParamsIdentical();

  const CtrTrainerOptions& options_;
  RpcNode* rpc_;
  Collective* collective_;
  CtrSchema schema_;
  CtrBlock train_, test_;
  CtrModelConfig model_config_;
  // The worker's compute resources (CPU, one thread), created at the start of Run; the model and
  // the dense optimizer run their kernels through its context. Declared before model_, which
  // borrows it.
  std::unique_ptr<kernels::DeviceResources> device_;
  std::unique_ptr<CtrModel> model_;
  std::vector<float> params_;
  kernels::DenseOptimizerState dense_state_;
  CtrGradients grads_;
  std::unique_ptr<PsClient> ps_;
  KeyDeduper dedup_;
  MetricsWriter metrics_;
  int num_workers_ = 1;
  uint64_t reduce_round_ = 0;
  int64_t steps_per_epoch_ = 0;
  int64_t clock_ = 0;
  int64_t total_rows_ = 0;
  Clock::time_point train_start_, last_progress_;
  double train_seconds_ = 0;
  std::unique_ptr<WorkerCheckpointer> checkpointer_;
};

constexpr char kDenseFile[] = "dense.state";

Status CtrTrainer::ReadData() {
  CtrReadOptions read = options_.read;
  read.partition = rpc_->self().rank;
  read.num_partitions = num_workers_;
  TS_ASSIGN_OR_RETURN(train_, CtrReader::ReadAll(options_.train_path, read, &schema_));
  if (!options_.test_path.empty()) {
    CtrSchema test_schema;
    TS_ASSIGN_OR_RETURN(test_, CtrReader::ReadAll(options_.test_path, read, &test_schema));
    TS_RETURN_IF_ERROR(
        CheckCtrSchema(schema_, test_schema)
            .WithContext("--test " + options_.test_path + " does not match --train"));
  }
  return OkStatus();
}

StatusOr<std::vector<double>> CtrTrainer::Reduce(std::vector<double> values, proto::ReduceOp op) {
  return ReduceAcrossWorkers(*rpc_, reduce_round_++, values, op, options_.timeout);
}

void CtrTrainer::Prepare(const CtrBlock& data, const uint32_t* order, size_t n, CtrStep* step) {
  const int F = schema_.num_fields, Nd = schema_.num_dense;
  step->labels.resize(n);
  step->dense.resize(n * Nd);
  step->keys.clear();
  step->weights.clear();
  step->offsets.assign(1, 0);
  for (size_t i = 0; i < n; ++i) {
    const size_t r = order != nullptr ? order[i] : i;
    step->labels[i] = data.labels[r];
    if (Nd > 0) std::memcpy(&step->dense[i * Nd], &data.dense[r * Nd], sizeof(float) * Nd);
    size_t begin, end;
    if (schema_.multi_hot) {
      begin = data.offsets[r];
      end = data.offsets[r + 1];
    } else {
      begin = r * F;
      end = begin + F;
    }
    for (size_t k = begin; k < end; ++k) {
      step->keys.push_back(data.keys[k]);
      step->weights.push_back(data.values[k]);
      if (!schema_.multi_hot) step->offsets.push_back(static_cast<int64_t>(step->keys.size()));
    }
    if (schema_.multi_hot) step->offsets.push_back(static_cast<int64_t>(step->keys.size()));
  }
  step->indices.resize(step->keys.size());
  std::vector<uint64_t>& unique = step->unique[kEmbeddingTable];
  dedup_.Deduplicate(step->keys.data(), step->keys.size(), &unique, step->indices.data());
  // Both tables are indexed by the same unique keys; a model pulls only the tables it uses.
  step->unique[kLinearTable] =
      UsesLinearTable(model_config_.kind) ? unique : std::vector<uint64_t>();
  if (!UsesEmbeddingTable(model_config_.kind)) {
    step->unique[kLinearTable].swap(step->unique[kEmbeddingTable]);
    step->unique[kEmbeddingTable].clear();
  }
  step->plan = ps_->Plan(step->unique);
}

CtrBatchView CtrTrainer::View(const CtrStep& step, const std::vector<const float*>& rows) const {
  CtrBatchView v;
  v.batch_size = step.size();
  v.labels = step.labels.data();
  v.dense = step.dense.data();
  v.offsets = step.offsets.data();
  v.indices = step.indices.data();
  v.weights = step.weights.data();
  v.num_rows = static_cast<int64_t>(
      std::max(step.unique[kEmbeddingTable].size(), step.unique[kLinearTable].size()));
  v.emb_rows = rows[kEmbeddingTable];
  v.linear_rows = rows[kLinearTable];
  return v;
}

Status CtrTrainer::WriteCheckpointFiles(const std::string& dir,
                                        std::vector<proto::CheckpointFile>* files,
                                        proto::ModelDescription* model) {
  TS_RETURN_IF_ERROR(ps_->WaitPushes());
  if (model == nullptr) return OkStatus();
  // Every replica holds the same dense state; worker 0 writes it.
  proto::DenseCheckpoint dense;
  *dense.mutable_params() = {params_.begin(), params_.end()};
  *dense.mutable_optimizer_slots() = {dense_state_.slots.begin(), dense_state_.slots.end()};
  dense.set_optimizer_step(dense_state_.step);
  TS_ASSIGN_OR_RETURN(proto::CheckpointFile entry,
                      checkpoint::WriteProtoFile(dir + "/" + kDenseFile, dense));
  entry.set_kind(proto::CheckpointFile::KIND_DENSE);
  files->push_back(std::move(entry));
  model->set_type(CtrModelName(model_config_.kind));
  model->set_num_fields(model_config_.num_fields);
  model->set_num_dense(model_config_.num_dense);
  model->set_emb_dim(model_config_.emb_dim);
  model->set_num_dense_params(static_cast<int64_t>(params_.size()));
  model->set_dense_optimizer(kernels::OptimizerName(options_.dense_optimizer.kind));
  model->set_num_workers(num_workers_);
  model->set_summary(model_->Describe());
  for (const auto& t : options_.recovery.tables) *model->add_tables() = t;
  for (const DenseBlock& b : model_->Blocks()) {
    proto::LayerShape* layer = model->add_layers();
    layer->set_name(b.name);
    layer->set_offset(static_cast<int64_t>(b.offset));
    for (int64_t d : b.shape) layer->add_shape(d);
  }
  return OkStatus();
}

Status CtrTrainer::RestoreDense(const proto::CheckpointManifest& manifest, const std::string& dir) {
  const proto::ModelDescription& m = manifest.model();
  if (m.num_dense_params() != static_cast<int64_t>(params_.size()) ||
      m.num_fields() != model_config_.num_fields || m.num_dense() != model_config_.num_dense) {
    return Status::InvalidArgument(
        "checkpoint " + dir + " holds " + m.summary() + "; this job built " + model_->Describe() +
        " (different --model, --mlp, --emb-dim, --cross-layers or data fields)");
  }
  if (m.dense_optimizer() != kernels::OptimizerName(options_.dense_optimizer.kind)) {
    return Status::InvalidArgument("checkpoint " + dir + " was trained with --dense-optimizer " +
                                   m.dense_optimizer() + ", this job uses " +
                                   kernels::OptimizerName(options_.dense_optimizer.kind));
  }
  const proto::CheckpointFile* entry = checkpoint::FindFile(manifest, kDenseFile);
  if (entry == nullptr) return Status::InvalidArgument("checkpoint " + dir + " has no dense state");
  proto::DenseCheckpoint dense;
  TS_RETURN_IF_ERROR(checkpoint::ReadProtoFile(dir, *entry, &dense));
  if (dense.params_size() != static_cast<int>(params_.size()) ||
      dense.optimizer_slots_size() != static_cast<int>(dense_state_.slots.size())) {
    return Status::DataLoss("checkpoint file " + dir + "/" + kDenseFile +
                            " does not match its manifest (parameter or optimizer sizes)");
  }
  std::copy(dense.params().begin(), dense.params().end(), params_.begin());
  std::copy(dense.optimizer_slots().begin(), dense.optimizer_slots().end(),
            dense_state_.slots.begin());
  dense_state_.step = dense.optimizer_step();
  return OkStatus();
}

StatusOr<bool> CtrTrainer::TrainEpoch(int epoch, int64_t start_step, double* loss_sum,
                                      int64_t* samples) {
  std::vector<uint32_t> order(train_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  ShuffleIndices(&order, EpochSeed(options_.seed, epoch, rpc_->self().rank));
  const size_t batch = static_cast<size_t>(options_.batch_size);
  auto range = [&](int64_t step, size_t* begin) {
    *begin = std::min(order.size(), static_cast<size_t>(step) * batch);
    return std::min(order.size(), *begin + batch) - *begin;
  };
  // The mean loss over a nominal global batch: every worker scales the same way.
  const float loss_scale = 1.0f / static_cast<float>(batch * num_workers_);
  auto current = std::make_unique<CtrStep>(), next = std::make_unique<CtrStep>();
  size_t begin = 0;
  size_t n = range(start_step, &begin);
  Prepare(train_, order.data() + begin, n, current.get());
  current->pull = ps_->StartPull(current->plan, clock_, proto::FLAG_NONE);
  std::vector<const float*> rows;
  for (int64_t step = start_step; step < steps_per_epoch_; ++step) {
    TS_RETURN_IF_ERROR(ps_->FinishPull(current->plan, current->pull, &rows));
    double sse = 0;
    TS_RETURN_IF_ERROR(
        model_->ForwardBackward(params_.data(), View(*current, rows), loss_scale, &grads_, &sse));
    *loss_sum += sse;
    *samples += current->size();
    // Sparse gradients to the servers, table after table as the plan lays them out.
    float* out = nullptr;
    Frame grad_frame = PsClient::AllocateGradients(current->plan, &out);
    const auto& plan = current->plan;
    if (!current->unique[kEmbeddingTable].empty()) {
      std::memcpy(out + plan.value_offset[kEmbeddingTable], grads_.emb_rows.data(),
                  grads_.emb_rows.size() * sizeof(float));
    }
    if (!current->unique[kLinearTable].empty()) {
      std::memcpy(out + plan.value_offset[kLinearTable], grads_.linear_rows.data(),
                  grads_.linear_rows.size() * sizeof(float));
    }
    TS_RETURN_IF_ERROR(ps_->WaitPushes());
    TS_RETURN_IF_ERROR(ps_->StartPush(current->plan, std::move(grad_frame), clock_));
    ++clock_;
    // While the servers apply the push: ask for the next batch's rows, then synchronise and
    // step the dense parameters (identical on every replica).
    if (step + 1 < steps_per_epoch_) {
      n = range(step + 1, &begin);
      Prepare(train_, order.data() + begin, n, next.get());
      next->pull = ps_->StartPull(next->plan, clock_, proto::FLAG_NONE);
    }
    TS_RETURN_IF_ERROR(collective_->AllReduceSum(grads_.params.data(), grads_.params.size()));
    TS_RETURN_IF_ERROR(kernels::ApplyDenseUpdate(
        device_->context(), options_.dense_optimizer, params_.data(), grads_.params.data(),
        static_cast<int64_t>(params_.size()), &dense_state_));
    std::swap(current, next);
    if (options_.eval_every > 0 && clock_ % options_.eval_every == 0 &&
        step + 1 < steps_per_epoch_ && !options_.test_path.empty()) {
      // Evaluation pulls at the current clock: wait for this step's push to be applied first.
      TS_RETURN_IF_ERROR(ps_->WaitPushes());
      CtrResult ignored;
      TS_RETURN_IF_ERROR(Evaluate(epoch, &ignored));
    }
    if (IsReporter() && options_.progress && Seconds(Clock::now() - last_progress_) >= 2.0) {
      last_progress_ = Clock::now();
      const double elapsed = Seconds(last_progress_ - train_start_);
      const int64_t done = static_cast<int64_t>(epoch) * steps_per_epoch_ + step + 1;
      const int64_t all = static_cast<int64_t>(options_.epochs) * steps_per_epoch_;
      char line[200];
      std::snprintf(line, sizeof(line),
                    "epoch %d/%d step %lld/%lld, %.0f samples/s, loss %.4f, ETA %.0f s", epoch + 1,
                    options_.epochs, static_cast<long long>(step + 1),
                    static_cast<long long>(steps_per_epoch_),
                    static_cast<double>(done) * batch * num_workers_ / elapsed,
                    *samples > 0 ? *loss_sum / static_cast<double>(*samples) : 0.0,
                    elapsed * (all - done) / std::max<int64_t>(done, 1));
      TS_LOG(INFO) << line;
    }
    // The epoch's last boundary is taken after its evaluation (Run).
    if (step + 1 < steps_per_epoch_) {
      TS_ASSIGN_OR_RETURN(bool stop,
                          checkpointer_->AtBoundary(MakePosition(clock_, epoch, step + 1, *loss_sum,
                                                                 *samples, 0, train_seconds_),
                                                    false, false));
      if (stop) {
        TS_RETURN_IF_ERROR(ps_->FinishPull(current->plan, current->pull, &rows));
        TS_RETURN_IF_ERROR(ps_->WaitPushes());
        return true;
      }
    }
  }
  TS_RETURN_IF_ERROR(ps_->WaitPushes());
  return false;
}

Status CtrTrainer::Evaluate(int epoch, CtrResult* result) {
  constexpr size_t kEvalBatch = 8192;
  CtrStep step;
  std::vector<const float*> rows;
  std::vector<float> probs(test_.size());
  for (size_t begin = 0; begin < test_.size(); begin += kEvalBatch) {
    const size_t n = std::min(kEvalBatch, test_.size() - begin);
    std::vector<uint32_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(begin + i);
    Prepare(test_, order.data(), n, &step);
    step.pull = ps_->StartPull(step.plan, clock_, proto::FLAG_NO_CREATE);
    TS_RETURN_IF_ERROR(ps_->FinishPull(step.plan, step.pull, &rows));
    TS_RETURN_IF_ERROR(model_->Predict(params_.data(), View(step, rows), probs.data() + begin));
  }
  std::vector<float> all_probs, all_labels;
  TS_RETURN_IF_ERROR(collective_->AllGather(probs, &all_probs));
  TS_RETURN_IF_ERROR(collective_->AllGather(test_.labels, &all_labels));
  const BinaryMetrics m =
      ComputeBinaryMetrics(all_probs.data(), all_labels.data(), all_probs.size());
  result->test_auc = m.auc;
  result->test_logloss = m.logloss;
  if (IsReporter()) {
    metrics_.EvalCtr(epoch + 1, clock_, "test", m.auc, m.logloss);
    if (options_.progress) {
      char line[160];
      std::snprintf(line, sizeof(line), "step %lld: test AUC %.4f, logloss %.4f (%lld rows)",
                    static_cast<long long>(clock_), m.auc, m.logloss,
                    static_cast<long long>(all_probs.size()));
      TS_LOG(INFO) << line;
    }
  }
  return OkStatus();
}

StatusOr<bool> CtrTrainer::DenseParamsIdentical() {
  // An exact comparison: gather every replica's parameters and compare the bits.
  std::vector<float> all;
  TS_RETURN_IF_ERROR(collective_->AllGather(params_, &all));
  const size_t n = params_.size();
  for (int w = 1; w < num_workers_; ++w) {
    if (std::memcmp(all.data(), all.data() + w * n, n * sizeof(float)) != 0) return false;
  }
  return true;
}

StatusOr<CtrResult> CtrTrainer::Run(std::chrono::milliseconds register_timeout) {
  TS_ASSIGN_OR_RETURN(ClusterView view, RegisterWithScheduler(*rpc_, register_timeout));
  num_workers_ = view.num_workers;
  if (collective_->size() != num_workers_ || collective_->rank() != rpc_->self().rank) {
    return Status::Internal("the dense collective does not match the job's workers");
  }
  TS_RETURN_IF_ERROR(ReadData());
  model_config_ = options_.model;
  model_config_.num_fields = schema_.num_fields;
  model_config_.num_dense = schema_.num_dense;
  TS_ASSIGN_OR_RETURN(device_, kernels::DeviceResources::Create(kernels::DeviceOptions{}));
  TS_ASSIGN_OR_RETURN(model_, CtrModel::Create(model_config_, device_->context()));
  params_.resize(model_->num_params());
  model_->InitParams(params_.data());
  TS_RETURN_IF_ERROR(kernels::InitDenseOptimizerState(
      options_.dense_optimizer, static_cast<int64_t>(params_.size()), &dense_state_));
  const RecoveryOptions& recovery = options_.recovery;
  const bool resuming = !recovery.resume_dir.empty();
  if (IsReporter() && !options_.metrics_out.empty()) {
    TS_RETURN_IF_ERROR(metrics_.Open(options_.metrics_out, /*append=*/resuming));
  }
  TableLayout layout;
  layout.dims = {model_config_.emb_dim, 1};
  ps_ = std::make_unique<PsClient>(rpc_, view.shard_map, layout, options_.timeout);

  TS_ASSIGN_OR_RETURN(
      auto sums, Reduce({static_cast<double>(train_.size()), static_cast<double>(test_.size())},
                        proto::REDUCE_OP_SUM));
  TS_ASSIGN_OR_RETURN(auto maxima,
                      Reduce({static_cast<double>(train_.size())}, proto::REDUCE_OP_MAX));
  total_rows_ = static_cast<int64_t>(sums[0]);
  if (total_rows_ == 0)
    return Status::InvalidArgument("no training rows in " + options_.train_path);
  steps_per_epoch_ =
      (static_cast<int64_t>(maxima[0]) + options_.batch_size - 1) / options_.batch_size;
  if (IsReporter()) {
    TS_LOG(INFO) << "data: " << schema_.Describe() << "; " << total_rows_ << " training rows, "
                 << static_cast<int64_t>(sums[1]) << " test rows";
    TS_LOG(INFO) << "model: " << model_->Describe() << "; " << num_workers_ << " worker(s) x "
                 << steps_per_epoch_ << " steps/epoch of " << options_.batch_size << " on "
                 << view.num_servers << " server(s)";
  }
  // Checkpoints: poll for signals about every 16k rows per worker.
  checkpointer_ = std::make_unique<WorkerCheckpointer>(
      recovery, rpc_, std::max<int64_t>(1, 16384 / options_.batch_size), options_.timeout,
      [this](const std::string& dir, std::vector<proto::CheckpointFile>* files,
             proto::ModelDescription* model) { return WriteCheckpointFiles(dir, files, model); });
  if (resuming) TS_RETURN_IF_ERROR(RestoreDense(recovery.resume_manifest, recovery.resume_dir));
  TS_ASSIGN_OR_RETURN(const proto::WorkerCheckpoint from,
                      StartPosition(recovery, *rpc_, steps_per_epoch_));
  clock_ = from.step();
  train_seconds_ = from.train_seconds();
  CtrResult result;
  train_start_ = last_progress_ = Clock::now();
  for (int epoch = from.epoch(); epoch < options_.epochs; ++epoch) {
    const auto start = Clock::now();
    const bool first = epoch == from.epoch();
    double loss_sum = first ? from.loss_sum() : 0;
    int64_t samples = first ? from.samples() : 0;
    TS_ASSIGN_OR_RETURN(bool stop,
                        TrainEpoch(epoch, first ? from.step_in_epoch() : 0, &loss_sum, &samples));
    if (stop) {
      result.stopped = true;
      break;
    }
    const double seconds = Seconds(Clock::now() - start);
    train_seconds_ += seconds;
    TS_ASSIGN_OR_RETURN(auto train_sums,
                        Reduce({loss_sum, static_cast<double>(samples)}, proto::REDUCE_OP_SUM));
    TS_ASSIGN_OR_RETURN(auto slowest, Reduce({seconds}, proto::REDUCE_OP_MAX));
    result.train_loss = train_sums[0] / std::max(train_sums[1], 1.0);
    result.samples_per_sec = train_sums[1] / std::max(slowest[0], 1e-9);
    if (IsReporter()) metrics_.Train(epoch + 1, result.train_loss, result.samples_per_sec);
    if (!options_.test_path.empty()) TS_RETURN_IF_ERROR(Evaluate(epoch, &result));
    if (IsReporter() && options_.progress) {
      char line[200];
      std::snprintf(line, sizeof(line), "epoch %d/%d: train logloss %.4f, %.0f samples/s, %.1f s",
                    epoch + 1, options_.epochs, result.train_loss, result.samples_per_sec, seconds);
      TS_LOG(INFO) << line;
    }
    TS_ASSIGN_OR_RETURN(
        bool stop_now,
        checkpointer_->AtBoundary(MakePosition(clock_, epoch + 1, 0, 0, 0, 0, train_seconds_), true,
                                  epoch + 1 == options_.epochs));
    if (stop_now) {
      result.stopped = true;
      break;
    }
  }
  if (result.stopped) {
    TS_RETURN_IF_ERROR(FinishWorker(rpc_, options_.timeout));
    return result;
  }
  TS_ASSIGN_OR_RETURN(result.dense_identical, DenseParamsIdentical());
  if (!result.dense_identical) {
    return Status::Internal("dense parameters differ between workers after training");
  }
  if (IsReporter()) {
    TS_LOG(INFO) << "dense parameters bit-identical on all " << num_workers_ << " worker(s)";
    metrics_.DoneCtr(options_.epochs, result.test_auc, result.test_logloss, train_seconds_,
                     result.samples_per_sec, result.dense_identical);
    TS_RETURN_IF_ERROR(metrics_.Close());
  }
  TS_RETURN_IF_ERROR(FinishWorker(rpc_, options_.timeout));
  return result;
}

}  // namespace

StatusOr<CtrResult> RunCtrWorkerNode(const CtrTrainerOptions& options, RpcNode* rpc,
                                     Collective* collective,
                                     std::chrono::milliseconds register_timeout) {
  return RunWorkerNode<CtrResult>(rpc, options.recovery, [&]() -> StatusOr<CtrResult> {
    CtrTrainer trainer(options, rpc, collective);
    return trainer.Run(register_timeout);
  });
}

}  // namespace tessera::worker
