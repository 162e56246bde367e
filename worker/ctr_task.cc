#include "worker/ctr_task.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <sstream>

#include "core/checkpoint.h"
#include "core/logging.h"
#include "kernels/finite.h"
#include "worker/data/ctr_metrics.h"
#include "worker/finite_check.h"

namespace tessera::worker {
namespace {

constexpr char kDenseFile[] = "dense.state";

}  // namespace

// One step's rows on their way through the parameter servers and the model.
struct CtrTask::Batch : ModelBatch {
  std::vector<float> labels, dense, weights;
  std::vector<uint64_t> keys;
  std::vector<int64_t> offsets;  // bags: row-major (row, field); one-hot bags hold one key
  std::vector<int32_t> indices;  // per key: its row among the unique keys
};

CtrTask::CtrTask(const CtrTrainerOptions& options, const kernels::DeviceContext& device)
    : options_(options), device_(device) {}

CtrTask::~CtrTask() = default;

std::vector<int> CtrTask::TableDims() const { return {options_.model.emb_dim, 1}; }

Status CtrTask::ReadData() {
  CtrReadOptions read = options_.read;
  read.partition = group_->rank();
  read.num_partitions = group_->size();
  TS_ASSIGN_OR_RETURN(train_, CtrReader::ReadAll(options_.train_path, read, &schema_));
  // The evaluated files must have the training file's fields.
  auto read_like_train = [&](const char* flag, const std::string& path) -> StatusOr<CtrBlock> {
    CtrSchema schema;
    TS_ASSIGN_OR_RETURN(CtrBlock block, CtrReader::ReadAll(path, read, &schema));
    TS_RETURN_IF_ERROR(
        CheckCtrSchema(schema_, schema)
            .WithContext(std::string(flag) + " " + path + " does not match --train"));
    return block;
  };
  if (!options_.test_path.empty()) {
    TS_ASSIGN_OR_RETURN(test_, read_like_train("--test", options_.test_path));
  }
  if (!options_.valid_path.empty()) {
    TS_ASSIGN_OR_RETURN(valid_, read_like_train("--valid", options_.valid_path));
  } else if (options_.valid_fraction > 0) {
    HoldOutCtrRows(options_.valid_fraction, options_.seed, schema_.multi_hot, &train_, &valid_);
  }
  return OkStatus();
}

Status CtrTask::Setup(WorkerGroup* group) {
  group_ = group;
  collective_ = group->collective();
  if (collective_ == nullptr && group->size() > 1) {
    return Status::Internal("a CTR model with several workers needs the dense collective");
  }
  TS_RETURN_IF_ERROR(ReadData());
  model_config_ = options_.model;
  model_config_.num_fields = schema_.num_fields;
  model_config_.num_dense = schema_.num_dense;
  TS_ASSIGN_OR_RETURN(model_, CtrModel::Create(model_config_, device_));
  std::vector<float> params(model_->num_params());
  model_->InitParams(params.data());
  TS_ASSIGN_OR_RETURN(dense_, CtrDenseReplica::Create(device_, options_.dense_optimizer, params));
  // The mean loss over a nominal global batch: every worker scales the same way.
  const size_t batch = static_cast<size_t>(options_.batch_size);
  loss_scale_ = 1.0f / static_cast<float>(batch * group->size());
  probs_.resize(test_.size());
  return OkStatus();
}

StatusOr<int64_t> CtrTask::Summarize() {
  TS_ASSIGN_OR_RETURN(auto sums, group_->Reduce({static_cast<double>(train_.size()),
                                                 static_cast<double>(test_.size()),
                                                 static_cast<double>(valid_.size())},
                                                proto::REDUCE_OP_SUM));
  TS_ASSIGN_OR_RETURN(auto maxima,
                      group_->Reduce({static_cast<double>(train_.size())}, proto::REDUCE_OP_MAX));
  total_rows_ = static_cast<int64_t>(sums[0]);
  total_test_rows_ = static_cast<int64_t>(sums[1]);
  total_valid_rows_ = static_cast<int64_t>(sums[2]);
  if (total_rows_ == 0) {
    return Status::InvalidArgument("no training rows in " + options_.train_path);
  }
  if (has_eval_data() && total_test_rows_ == 0) {
    return Status::InvalidArgument("--test " + options_.test_path +
                                   " holds no rows: nothing to evaluate");
  }
  if (has_valid_data() && total_valid_rows_ == 0) {
    return Status::InvalidArgument(
        options_.valid_path.empty()
            ? "--valid-fraction " + std::to_string(options_.valid_fraction) +
                  " held out no row of " + options_.train_path + ": nothing to validate on"
            : "--valid " + options_.valid_path + " holds no rows: nothing to validate on");
  }
  return static_cast<int64_t>(maxima[0]);
}

std::vector<std::string> CtrTask::StartupLines(const JobShape& shape) const {
  std::ostringstream data, model;
  data << "data: " << schema_.Describe() << "; " << total_rows_ << " training rows, "
       << total_test_rows_ << " test rows";
  if (has_valid_data()) {
    data << ", " << total_valid_rows_ << " validation rows"
         << (options_.valid_path.empty() ? " held out of the training file" : "");
  }
  model << "model: " << model_->Describe() << "; " << shape.num_workers << " worker(s) x "
        << shape.steps_per_epoch << " steps/epoch of " << shape.batch_size << " on "
        << shape.num_servers << " server(s)";
  return {data.str(), model.str()};
}

std::unique_ptr<ModelBatch> CtrTask::NewBatch() const { return std::make_unique<Batch>(); }

void CtrTask::Prepare(const CtrBlock& data, const uint32_t* order, size_t n, Batch* step) {
  const int F = schema_.num_fields, Nd = schema_.num_dense;
  step->num_samples = static_cast<int64_t>(n);
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
  step->unique_keys.resize(2);
  std::vector<uint64_t>& unique = step->unique_keys[kEmbeddingTable];
  dedup_.Deduplicate(step->keys.data(), step->keys.size(), &unique, step->indices.data());
  // Both tables are indexed by the same unique keys; a model pulls only the tables it uses.
  step->unique_keys[kLinearTable] =
      UsesLinearTable(model_config_.kind) ? unique : std::vector<uint64_t>();
  if (!UsesEmbeddingTable(model_config_.kind)) {
    step->unique_keys[kLinearTable].swap(step->unique_keys[kEmbeddingTable]);
    step->unique_keys[kEmbeddingTable].clear();
  }
}

void CtrTask::PrepareTrainBatch(const uint32_t* order, size_t n, ModelBatch* batch) {
  Prepare(train_, order, n, static_cast<Batch*>(batch));
}

void CtrTask::SelectEvalSet(EvalSet set) {
  eval_set_ = set;
  probs_.resize(EvalRows().size());
}

void CtrTask::PrepareEvalBatch(size_t begin, size_t n, ModelBatch* batch) {
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(begin + i);
  Prepare(EvalRows(), order.data(), n, static_cast<Batch*>(batch));
}

CtrBatchView CtrTask::View(const Batch& step, const std::vector<const float*>& rows) const {
  CtrBatchView v;
  v.batch_size = step.num_samples;
  v.labels = step.labels.data();
  v.dense = step.dense.data();
  v.offsets = step.offsets.data();
  v.indices = step.indices.data();
  v.weights = step.weights.data();
  v.num_rows = static_cast<int64_t>(
      std::max(step.unique_keys[kEmbeddingTable].size(), step.unique_keys[kLinearTable].size()));
  v.emb_rows = rows[kEmbeddingTable];
  v.linear_rows = rows[kLinearTable];
  return v;
}

Status CtrTask::ComputeGradients(const ModelBatch& model_batch,
                                 const std::vector<const float*>& rows,
                                 const std::vector<float*>& grads, double* loss_sum,
                                 bool* /*known_finite*/) {
  const Batch& batch = static_cast<const Batch&>(model_batch);
  // Sparse gradients straight into the push buffer, table after table as it lays them out; the
  // dense gradient stays in the replica (device memory on CUDA) for AfterPush.
  CtrGradients out;
  out.params = dense_->grads();
  if (!batch.unique_keys[kEmbeddingTable].empty()) out.emb_rows = grads[kEmbeddingTable];
  if (!batch.unique_keys[kLinearTable].empty()) out.linear_rows = grads[kLinearTable];
  return model_->ForwardBackward(dense_->params(), View(batch, rows), loss_scale_, out, loss_sum);
}

Status CtrTask::AfterPush() {
  // Synchronise and step the dense parameters (identical on every replica).
  TS_RETURN_IF_ERROR(dense_->AllReduceGrads(collective_));
  return dense_->ApplyUpdate();
}

Status CtrTask::WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                                proto::ModelDescription* model) {
  if (model == nullptr) return OkStatus();
  // Every replica holds the same dense state; worker 0 writes it (the same file from any device).
  std::vector<float> params, slots;
  int64_t step = 0;
  TS_RETURN_IF_ERROR(dense_->ToHost(&params, &slots, &step));
  TS_RETURN_IF_ERROR(CheckDenseFinite(params, slots).WithContext("checkpoint " + dir));
  proto::DenseCheckpoint dense;
  *dense.mutable_params() = {params.begin(), params.end()};
  *dense.mutable_optimizer_slots() = {slots.begin(), slots.end()};
  dense.set_optimizer_step(step);
  TS_ASSIGN_OR_RETURN(
      proto::CheckpointFile entry,
      checkpoint::WriteProtoFile(options_.recovery.env, dir + "/" + kDenseFile, dense));
  entry.set_kind(proto::CheckpointFile::KIND_DENSE);
  files->push_back(std::move(entry));
  model->set_type(CtrModelName(model_config_.kind));
  model->set_num_fields(model_config_.num_fields);
  model->set_num_dense(model_config_.num_dense);
  model->set_emb_dim(model_config_.emb_dim);
  model->set_num_dense_params(static_cast<int64_t>(dense_->size()));
  model->set_dense_optimizer(kernels::OptimizerName(options_.dense_optimizer.kind));
  model->set_summary(model_->Describe());
  for (const DenseBlock& b : model_->Blocks()) {
    proto::LayerShape* layer = model->add_layers();
    layer->set_name(b.name);
    layer->set_offset(static_cast<int64_t>(b.offset));
    for (int64_t d : b.shape) layer->add_shape(d);
  }
  return OkStatus();
}

Status CtrTask::CheckDenseFinite(const std::vector<float>& params,
                                 const std::vector<float>& slots) const {
  const int64_t n = static_cast<int64_t>(params.size());
  const int64_t bad = kernels::FindNonFinite(params.data(), n);
  if (bad < n) {
    std::string where = "parameter " + std::to_string(bad);
    for (const DenseBlock& b : model_->Blocks()) {
      const int64_t size =
          std::accumulate(b.shape.begin(), b.shape.end(), int64_t{1}, std::multiplies<int64_t>());
      const int64_t offset = static_cast<int64_t>(b.offset);
      if (bad >= offset && bad < offset + size) {
        where = b.name + "[" + std::to_string(bad - offset) + "]";
      }
    }
    return Status::NonFinite("non-finite model: dense " + where + " is " +
                             FormatNonFinite(params[bad]));
  }
  const int64_t m = static_cast<int64_t>(slots.size());
  const int64_t bad_slot = kernels::FindNonFinite(slots.data(), m);
  if (bad_slot < m) {
    return Status::NonFinite("non-finite model: dense optimizer state " + std::to_string(bad_slot) +
                             " is " + FormatNonFinite(slots[bad_slot]));
  }
  return OkStatus();
}

Status CtrTask::Restore(const proto::CheckpointManifest& manifest, const std::string& dir) {
  const proto::ModelDescription& m = manifest.model();
  if (m.num_dense_params() != static_cast<int64_t>(dense_->size()) ||
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
  TS_RETURN_IF_ERROR(checkpoint::ReadProtoFile(options_.recovery.env, dir, *entry, &dense));
  const std::vector<float> params(dense.params().begin(), dense.params().end());
  const std::vector<float> slots(dense.optimizer_slots().begin(), dense.optimizer_slots().end());
  TS_RETURN_IF_ERROR(CheckDenseFinite(params, slots).WithContext(dir + "/" + kDenseFile));
  Status loaded = dense_->Load(params, slots, dense.optimizer_step());
  if (!loaded.ok()) {
    return Status::DataLoss("checkpoint file " + dir + "/" + kDenseFile +
                            " does not match its manifest: " + loaded.message());
  }
  return OkStatus();
}

Status CtrTask::EvalBatch(size_t begin, const ModelBatch& batch,
                          const std::vector<const float*>& rows) {
  return model_->Predict(dense_->params(), View(static_cast<const Batch&>(batch), rows),
                         probs_.data() + begin);
}

StatusOr<EvalReport> CtrTask::EndEval(int64_t step) {
  std::vector<float> all_probs, all_labels;
  TS_RETURN_IF_ERROR(Gather(probs_, &all_probs));
  TS_RETURN_IF_ERROR(Gather(EvalRows().labels, &all_labels));
  const BinaryMetrics m =
      ComputeBinaryMetrics(all_probs.data(), all_labels.data(), all_probs.size());
  EvalReport report;
  report.metrics = {{"auc", m.auc}, {"logloss", m.logloss}};
  report.record_step = true;
  // The validation set's line is the training loop's, which says what early stopping made of it.
  if (options_.progress && eval_set_ == EvalSet::kTest) {
    char line[160];
    std::snprintf(line, sizeof(line), "step %lld: test AUC %.4f, logloss %.4f (%lld rows)",
                  static_cast<long long>(step), m.auc, m.logloss,
                  static_cast<long long>(all_probs.size()));
    report.log_line = line;
  }
  return report;
}

std::string CtrTask::ProgressLine(const JobShape& shape, const StepProgress& p) const {
  const size_t batch = static_cast<size_t>(options_.batch_size);
  char line[200];
  std::snprintf(
      line, sizeof(line), "epoch %d/%d step %lld/%lld, %.0f samples/s, loss %.4f, ETA %.0f s",
      p.epoch + 1, shape.epochs, static_cast<long long>(p.step),
      static_cast<long long>(shape.steps_per_epoch),
      static_cast<double>(p.done_steps) * batch * shape.num_workers / p.elapsed_seconds,
      p.samples > 0 ? p.loss_sum / static_cast<double>(p.samples) : 0.0,
      p.elapsed_seconds * (p.all_steps - p.done_steps) / std::max<int64_t>(p.done_steps, 1));
  return line;
}

std::string CtrTask::EpochLine(const JobShape& shape, const EpochStats& stats,
                               const std::string&) const {
  char line[200];
  std::snprintf(line, sizeof(line), "epoch %d/%d: train logloss %.4f, %.0f samples/s, %.1f s",
                stats.epoch + 1, shape.epochs, stats.train_loss, stats.samples_per_sec,
                stats.seconds);
  return line;
}

Status CtrTask::Gather(const std::vector<float>& local, std::vector<float>* all) {
  if (collective_ != nullptr) return collective_->AllGather(local, all);
  *all = local;
  return OkStatus();
}

StatusOr<bool> CtrTask::DenseParamsIdentical() {
  // An exact comparison: gather every replica's parameters and compare the bits.
  std::vector<float> params, all;
  TS_RETURN_IF_ERROR(dense_->ToHost(&params, nullptr, nullptr));
  TS_RETURN_IF_ERROR(Gather(params, &all));
  const size_t n = params.size();
  for (int w = 1; w < group_->size(); ++w) {
    if (std::memcmp(all.data(), all.data() + w * n, n * sizeof(float)) != 0) return false;
  }
  return true;
}

Status CtrTask::Finish(const EvalReport&, double, std::vector<std::string>* log_lines,
                       std::vector<JsonField>* done_fields) {
  TS_ASSIGN_OR_RETURN(const bool identical, DenseParamsIdentical());
  if (!identical) return Status::Internal("dense parameters differ between workers after training");
  log_lines->push_back("dense parameters bit-identical on all " + std::to_string(group_->size()) +
                       " worker(s)");
  done_fields->emplace_back("dense_params_identical", "true");
  return OkStatus();
}

}  // namespace tessera::worker
