#include "worker/mf_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <sstream>

#include "core/huge_pages.h"
#include "core/logging.h"
#include "core/splitmix64.h"
#include "worker/worker_node.h"

namespace tessera::worker {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string FormatRate(double per_sec) {
  char buf[32];
  if (per_sec >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", per_sec / 1e6);
  } else if (per_sec >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", per_sec / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", per_sec);
  }
  return buf;
}

}  // namespace

// One step's batch: the ratings and, per sample, its rows among the unique keys.
struct MfModel::Batch : ModelBatch {
  std::vector<uint64_t> user_keys, item_keys;
  std::vector<float> ratings;
  std::vector<int32_t> user_index, item_index;
  // CUDA: the batch in the workspace's pinned staging (null on the CPU, or when staging failed:
  // stage_status). Mutable: an evaluation hands it over to the model's pending evaluation.
  mutable std::unique_ptr<kernels::MfStagedStep> staged;
  Status stage_status;
};

void MfModel::HoldOut(double fraction, uint64_t seed, std::vector<Sample>* train,
                      std::vector<Sample>* held_out) {
  // A rating goes when the top 53 bits of its hash, as a fraction of 2^53, fall below `fraction`.
  const uint64_t threshold = static_cast<uint64_t>(fraction * 9007199254740992.0);
  size_t kept = 0;
  for (const Sample& s : *train) {
    const uint64_t h = SplitMix64(SplitMix64(s.user ^ SplitMix64(seed)) ^ s.item) >> 11;
    if (h < threshold) {
      held_out->push_back(s);
    } else {
      (*train)[kept++] = s;
    }
  }
  train->resize(kept);
}

std::vector<MfModel::Sample> MfModel::Pack(const RatingData& data) {
  std::vector<Sample> samples;
  ReserveHugePages(&samples, data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    samples.push_back({data.users[i], data.items[i], data.ratings[i]});
  }
  return samples;
}

MfModel::MfModel(const MfTrainerOptions& options) : options_(options), dedup_(options.direct_ids) {}

MfModel::~MfModel() = default;

StatusOr<std::unique_ptr<MfModel>> MfModel::Create(const MfTrainerOptions& options,
                                                   const kernels::DeviceContext& device) {
  std::unique_ptr<MfModel> model(new MfModel(options));
  TS_ASSIGN_OR_RETURN(model->workspace_, kernels::MfDeviceWorkspace::Create(device));
  return model;
}

std::vector<int> MfModel::TableDims() const { return {options_.dim + 1, options_.dim + 1}; }

Status MfModel::Setup(WorkerGroup* group) {
  group_ = group;
  RatingReadOptions read;
  read.format = options_.format;
  read.skip_bad_lines = options_.skip_bad_lines;
  read.num_threads = options_.reader_threads;
  read.partition = group->rank();
  read.num_partitions = group->size();
  auto start = Clock::now();
  // The reader logs skipped lines itself (with --skip-bad-lines).
  TS_ASSIGN_OR_RETURN(RatingReadResult train, ReadRatings(options_.train_path, read));
  train_ = Pack(train.data);
  TS_VLOG(1) << "read " << train_.size() << " ratings (" << RatingFormatName(train.format)
             << ") in " << Seconds(Clock::now() - start) << " s";
  if (!options_.test_path.empty()) {
    TS_ASSIGN_OR_RETURN(RatingReadResult test, ReadRatings(options_.test_path, read));
    test_ = Pack(test.data);
  }
  if (!options_.valid_path.empty()) {
    TS_ASSIGN_OR_RETURN(RatingReadResult valid, ReadRatings(options_.valid_path, read));
    valid_ = Pack(valid.data);
  } else if (options_.valid_fraction > 0) {
    HoldOut(options_.valid_fraction, options_.seed, &train_, &valid_);
  }
  BuildBlocks();
  return OkStatus();
}

void MfModel::BuildBlocks() {
  block_begin_.clear();
  if (!options_.blocked_order || train_.empty()) return;
  grid_ = MfGrid(EstimateDistinct(train_.size(), [&](size_t i) { return train_[i].user; }),
                 EstimateDistinct(train_.size(), [&](size_t i) { return train_[i].item; }),
                 static_cast<double>(train_.size()), options_.batch_size);
  const auto user_bands = static_cast<uint64_t>(grid_.user_bands);
  const auto item_bands = static_cast<uint64_t>(grid_.item_bands);
  const size_t blocks = user_bands * item_bands;
  if (blocks == 1) return;  // one block is the plain shuffle (Model::EpochOrder)
  auto block = [&](const Sample& s) {
    const uint64_t u = SplitMix64(s.user ^ 0x6A09E667F3BCC908ull) % user_bands;
    const uint64_t i = SplitMix64(s.item ^ 0xBB67AE8584CAA73Bull) % item_bands;
    return static_cast<size_t>(u * item_bands + i);
  };
  block_begin_.assign(blocks + 1, 0);
  for (const Sample& s : train_) ++block_begin_[block(s) + 1];
  for (size_t b = 0; b < blocks; ++b) block_begin_[b + 1] += block_begin_[b];
  // In place (no second copy of the ratings at the peak of memory): each sample is swapped into
  // the next free place of its block until the one in hand belongs where it was taken from (an
  // American flag sort; deterministic).
  std::vector<uint32_t> next(block_begin_.begin(), block_begin_.end() - 1);
  for (size_t b = 0; b < blocks; ++b) {
    while (next[b] < block_begin_[b + 1]) {
      Sample in_hand = train_[next[b]];
      for (size_t t = block(in_hand); t != b; t = block(in_hand)) {
        std::swap(in_hand, train_[next[t]++]);
      }
      train_[next[b]++] = in_hand;
    }
  }
}

void MfModel::EpochOrder(uint64_t seed, size_t batch_size, std::vector<uint32_t>* order,
                         std::vector<bool>* disjoint_next) const {
  if (block_begin_.empty()) return Model::EpochOrder(seed, batch_size, order, disjoint_next);
  BlockedEpochOrder(block_begin_, grid_, seed, batch_size, order, disjoint_next);
}

StatusOr<int64_t> MfModel::Summarize() {
  // Global statistics: mean rating, range (for clipping predictions), steps per epoch.
  double local_sum = 0;
  float local_min = INFINITY, local_max = -INFINITY;
  for (const Sample& sample : train_) {
    const float r = sample.rating;
    local_sum += r;
    local_min = std::min(local_min, r);
    local_max = std::max(local_max, r);
  }
  TS_ASSIGN_OR_RETURN(auto sums, group_->Reduce({local_sum, static_cast<double>(train_.size()),
                                                 static_cast<double>(test_.size()),
                                                 static_cast<double>(valid_.size())},
                                                proto::REDUCE_OP_SUM));
  TS_ASSIGN_OR_RETURN(auto maxima, group_->Reduce({static_cast<double>(train_.size()), local_max,
                                                   -static_cast<double>(local_min)},
                                                  proto::REDUCE_OP_MAX));
  total_train_ratings_ = static_cast<int64_t>(sums[1]);
  total_test_ratings_ = static_cast<int64_t>(sums[2]);
  total_valid_ratings_ = static_cast<int64_t>(sums[3]);
  if (total_train_ratings_ == 0) {
    return Status::InvalidArgument("no training ratings in " + options_.train_path);
  }
  if (has_eval_data() && total_test_ratings_ == 0) {
    return Status::InvalidArgument("--test " + options_.test_path +
                                   " holds no ratings: nothing to evaluate");
  }
  if (has_valid_data() && total_valid_ratings_ == 0) {
    return Status::InvalidArgument(
        options_.valid_path.empty()
            ? "--valid-fraction " + std::to_string(options_.valid_fraction) +
                  " held out no rating of " + options_.train_path + ": nothing to validate on"
            : "--valid " + options_.valid_path + " holds no ratings: nothing to validate on");
  }
  global_mean_ = static_cast<float>(sums[0] / sums[1]);
  max_rating_ = static_cast<float>(maxima[1]);
  min_rating_ = static_cast<float>(-maxima[2]);
  return static_cast<int64_t>(maxima[0]);
}

std::vector<std::string> MfModel::StartupLines(const JobShape& shape) const {
  std::ostringstream line;
  line << "training MF dim " << options_.dim << " on " << total_train_ratings_ << " ratings (mean "
       << global_mean_ << ", range [" << min_rating_ << ", " << max_rating_ << "]), "
       << total_test_ratings_ << " test ratings";
  if (has_valid_data()) {
    line << ", " << total_valid_ratings_ << " validation ratings"
         << (options_.valid_path.empty() ? " held out of the training file" : "");
  }
  line << "; " << shape.num_workers << " worker(s) x " << shape.steps_per_epoch
       << " steps/epoch of " << shape.batch_size << " on " << shape.num_servers << " server(s)";
  if (!block_begin_.empty()) {
    line << "; blocked order: " << grid_.user_bands << " user x " << grid_.item_bands
         << " item bands (worker 0)";
  }
  return {line.str()};
}

Status MfModel::Restore(const proto::CheckpointManifest& manifest, const std::string&) {
  if (manifest.model().global_bias() != static_cast<double>(global_mean_)) {
    return Status::InvalidArgument("the training data differ from the checkpoint's: mean rating " +
                                   std::to_string(global_mean_) + ", the checkpoint has " +
                                   std::to_string(manifest.model().global_bias()));
  }
  return OkStatus();
}

Status MfModel::WriteCheckpoint(const std::string&, std::vector<proto::CheckpointFile>*,
                                proto::ModelDescription* description) {
  // MF has no state outside the servers; worker 0 describes the model.
  if (description == nullptr) return OkStatus();
  description->set_type("mf");
  description->set_dim(options_.dim);
  description->set_global_bias(global_mean_);
  description->set_summary("biased MF, dim " + std::to_string(options_.dim) + ", mean rating " +
                           std::to_string(global_mean_));
  return OkStatus();
}

std::unique_ptr<ModelBatch> MfModel::NewBatch() const { return std::make_unique<Batch>(); }

void MfModel::Prepare(const std::vector<Sample>& data, const uint32_t* order, size_t n,
                      Batch* batch) {
  batch->num_samples = static_cast<int64_t>(n);
  batch->user_keys.resize(n);
  batch->item_keys.resize(n);
  batch->ratings.resize(n);
  batch->user_index.resize(n);
  batch->item_index.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t r = order != nullptr ? order[i] : static_cast<uint32_t>(i);
    constexpr size_t kAhead = 8;  // shuffled order: fetch the record a few samples early
    if (order != nullptr && i + kAhead < n) __builtin_prefetch(&data[order[i + kAhead]]);
    const Sample& sample = data[r];
    batch->user_keys[i] = sample.user;
    batch->item_keys[i] = sample.item;
    batch->ratings[i] = sample.rating;
  }
  batch->unique_keys.resize(2);
  dedup_.Deduplicate(batch->user_keys.data(), n, &batch->unique_keys[kUserTable],
                     batch->user_index.data());
  dedup_.Deduplicate(batch->item_keys.data(), n, &batch->unique_keys[kItemTable],
                     batch->item_index.data());
  if (workspace_->device() == kernels::Device::kCuda) Stage(batch);
}

void MfModel::Stage(Batch* batch) {
  // The slot of this batch object's previous step goes back first (the loop prepares a batch
  // object again only after its push was acknowledged, so the step computing or pushing now keeps
  // its own slot).
  batch->staged.reset();
  kernels::MfStageShape shape;
  shape.num_samples = batch->num_samples;
  shape.dim = options_.dim;
  shape.num_users = static_cast<int64_t>(batch->unique_keys[kUserTable].size());
  shape.num_items = static_cast<int64_t>(batch->unique_keys[kItemTable].size());
  auto staged = workspace_->Stage(shape);
  batch->stage_status = staged.status().WithContext(
      "MF batch of " + std::to_string(shape.num_samples) + " ratings (--batch-size), " +
      std::to_string(shape.num_users) + " users and " + std::to_string(shape.num_items) +
      " items of dim " + std::to_string(shape.dim));
  if (!staged.ok()) return;
  batch->staged = std::move(*staged);
  const size_t n = static_cast<size_t>(batch->num_samples);
  if (n == 0) return;
  std::memcpy(batch->staged->user_index(), batch->user_index.data(), n * sizeof(int32_t));
  std::memcpy(batch->staged->item_index(), batch->item_index.data(), n * sizeof(int32_t));
  std::memcpy(batch->staged->ratings(), batch->ratings.data(), n * sizeof(float));
}

void MfModel::PrepareTrainBatch(const uint32_t* order, size_t n, ModelBatch* batch) {
  Prepare(train_, order, n, static_cast<Batch*>(batch));
}

void MfModel::PrepareEvalBatch(size_t begin, size_t n, ModelBatch* batch) {
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(begin + i);
  Prepare(EvalSamples(), order.data(), n, static_cast<Batch*>(batch));
}

kernels::MfBatch MfModel::MakeKernelBatch(const Batch& b,
                                          const std::vector<const float*>& rows) const {
  kernels::MfBatch k;
  k.num_samples = static_cast<int64_t>(b.ratings.size());
  k.user_index = b.user_index.data();
  k.item_index = b.item_index.data();
  k.ratings = b.ratings.data();
  k.dim = options_.dim;
  k.user_rows = rows[kUserTable];
  k.num_users = static_cast<int64_t>(b.unique_keys[kUserTable].size());
  k.item_rows = rows[kItemTable];
  k.num_items = static_cast<int64_t>(b.unique_keys[kItemTable].size());
  k.global_mean = global_mean_;
  k.l2 = options_.l2;
  k.l2_bias = options_.l2_bias;
  return k;
}

kernels::MfStepScalars MfModel::Scalars() const {
  return {global_mean_, options_.l2, options_.l2_bias};
}

float* MfModel::PullDestination(const ModelBatch& model_batch, uint64_t total_floats) {
  const Batch& batch = static_cast<const Batch&>(model_batch);
  if (batch.staged == nullptr ||
      total_floats != static_cast<uint64_t>(batch.staged->num_row_floats())) {
    return nullptr;
  }
  return batch.staged->rows();
}

Frame MfModel::GradientFrame(const ModelBatch& model_batch, uint64_t total_floats,
                             float** writable) {
  const Batch& batch = static_cast<const Batch&>(model_batch);
  if (batch.staged == nullptr ||
      total_floats != static_cast<uint64_t>(batch.staged->num_row_floats())) {
    return Frame();
  }
  // The pinned gradients become the push: the frame holds the workspace's slot until the
  // transport is done with it, so a later step never overwrites them while they are sent.
  *writable = batch.staged->gradients();
  return Frame::Wrap(batch.staged->gradients_owner(), batch.staged->gradients(),
                     total_floats * sizeof(float));
}

StatusOr<kernels::MfStagedStep*> MfModel::StagedWithRows(
    const Batch& batch, const std::vector<const float*>& rows) const {
  if (batch.staged == nullptr) {
    if (workspace_->device() == kernels::Device::kCuda) return batch.stage_status;
    return nullptr;
  }
  kernels::MfStagedStep* staged = batch.staged.get();
  // The loop decodes into rows() when it honours PullDestination; otherwise copy them in.
  const size_t user_floats = static_cast<size_t>(staged->num_user_floats());
  const size_t item_floats = static_cast<size_t>(staged->num_row_floats()) - user_floats;
  if (user_floats > 0 && rows[kUserTable] != staged->user_rows()) {
    std::memcpy(staged->user_rows(), rows[kUserTable], user_floats * sizeof(float));
  }
  if (item_floats > 0 && rows[kItemTable] != staged->item_rows()) {
    std::memcpy(staged->item_rows(), rows[kItemTable], item_floats * sizeof(float));
  }
  return staged;
}

Status MfModel::ComputeGradients(const ModelBatch& model_batch,
                                 const std::vector<const float*>& rows,
                                 const std::vector<float*>& grads, double* loss_sum,
                                 bool* known_finite) {
  const Batch& batch = static_cast<const Batch&>(model_batch);
  TS_ASSIGN_OR_RETURN(kernels::MfStagedStep * staged, StagedWithRows(batch, rows));
  if (staged == nullptr) {  // CPU: the kernels run on the loop's buffers and flag non-finites
    const kernels::MfBatch kb = MakeKernelBatch(batch, rows);
    return workspace_->BatchGradient(kb, grads[kUserTable], grads[kItemTable], loss_sum,
                                     known_finite);
  }
  TS_RETURN_IF_ERROR(workspace_->EnqueueGradient(staged, Scalars()));
  TS_RETURN_IF_ERROR(workspace_->FinishGradient(staged, loss_sum));
  // The gradients are in place when the push frame is the staged one (GradientFrame).
  const size_t user_floats = static_cast<size_t>(staged->num_user_floats());
  const size_t item_floats = static_cast<size_t>(staged->num_row_floats()) - user_floats;
  if (user_floats > 0 && grads[kUserTable] != staged->gradients()) {
    std::memcpy(grads[kUserTable], staged->gradients(), user_floats * sizeof(float));
  }
  if (item_floats > 0 && grads[kItemTable] != staged->gradients() + user_floats) {
    std::memcpy(grads[kItemTable], staged->gradients() + user_floats, item_floats * sizeof(float));
  }
  return OkStatus();
}

void MfModel::AddEvalErrors(const float* ratings, const float* predictions, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double p = std::clamp(predictions[i], min_rating_, max_rating_);
    const double e = static_cast<double>(ratings[i]) - p;
    eval_sse_ += e * e;
    eval_sae_ += std::abs(e);
  }
  eval_count_ += static_cast<int64_t>(n);
}

Status MfModel::DrainEval() {
  if (pending_eval_ == nullptr) return OkStatus();
  std::unique_ptr<kernels::MfStagedStep> step = std::move(pending_eval_);
  TS_RETURN_IF_ERROR(workspace_->FinishPredict(step.get()));
  AddEvalErrors(step->ratings(), step->predictions(),
                static_cast<size_t>(step->shape().num_samples));
  return OkStatus();
}

Status MfModel::EvalBatch(size_t, const ModelBatch& model_batch,
                          const std::vector<const float*>& rows) {
  const Batch& batch = static_cast<const Batch&>(model_batch);
  TS_ASSIGN_OR_RETURN(kernels::MfStagedStep * staged, StagedWithRows(batch, rows));
  if (staged == nullptr) {  // CPU
    const size_t n = batch.ratings.size();
    predictions_.resize(n);
    TS_RETURN_IF_ERROR(workspace_->Predict(MakeKernelBatch(batch, rows), predictions_.data()));
    AddEvalErrors(batch.ratings.data(), predictions_.data(), n);
    return OkStatus();
  }
  // CUDA: queue this batch, then read the previous one's predictions while it runs (and while
  // the loop pulls the next batch's rows). The batch object is reused for the next batch, so the
  // staged step moves to pending_eval_.
  std::unique_ptr<kernels::MfStagedStep> step = std::move(batch.staged);
  TS_RETURN_IF_ERROR(workspace_->EnqueuePredict(step.get(), Scalars()));
  TS_RETURN_IF_ERROR(DrainEval());
  pending_eval_ = std::move(step);
  return OkStatus();
}

StatusOr<EvalReport> MfModel::EndEval(int64_t) {
  TS_RETURN_IF_ERROR(DrainEval());
  const double sse = eval_sse_, sae = eval_sae_;
  const int64_t count = eval_count_;
  eval_sse_ = eval_sae_ = 0;
  eval_count_ = 0;
  TS_ASSIGN_OR_RETURN(auto eval,
                      group_->Reduce({sse, sae, static_cast<double>(count)}, proto::REDUCE_OP_SUM));
  const double n = std::max(eval[2], 1.0);
  const double rmse = std::sqrt(eval[0] / n);
  const double mae = eval[1] / n;
  EvalReport report;
  report.metrics = {{"rmse", rmse}, {"mae", mae}};
  char buf[96];
  std::snprintf(buf, sizeof(buf), ", %s RMSE %.4f MAE %.4f", EvalSetName(eval_set_), rmse, mae);
  report.epoch_text = buf;
  return report;
}

std::string MfModel::ProgressLine(const JobShape& shape, const StepProgress& p) const {
  const double elapsed = p.elapsed_seconds;
  const double rate =
      elapsed > 0 ? static_cast<double>(p.samples_done + p.samples) * shape.num_workers / elapsed
                  : 0;
  const double eta = p.done_steps > 0 ? elapsed * (p.all_steps - p.done_steps) / p.done_steps : 0;
  char line[256];
  std::snprintf(line, sizeof(line),
                "epoch %d/%d step %lld/%lld (%.0f%%), %s ratings/s, loss %.4f, ETA %.0f s",
                p.epoch + 1, shape.epochs, static_cast<long long>(p.step),
                static_cast<long long>(shape.steps_per_epoch),
                100.0 * static_cast<double>(p.done_steps) / std::max<int64_t>(p.all_steps, 1),
                FormatRate(rate).c_str(),
                p.samples > 0 ? p.loss_sum / static_cast<double>(p.samples) : 0.0, eta);
  return line;
}

std::string MfModel::EpochLine(const JobShape& shape, const EpochStats& stats,
                               const std::string& eval_text) const {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "epoch %d/%d: train MSE %.4f%s, %s ratings/s, %.2f s",
                stats.epoch + 1, shape.epochs, stats.train_loss, eval_text.c_str(),
                FormatRate(stats.samples_per_sec).c_str(), stats.seconds);
  return buf;
}

Status MfModel::Finish(const EvalReport& last_eval, double train_seconds,
                       std::vector<std::string>* log_lines, std::vector<JsonField>*) {
  if (!options_.progress || options_.test_path.empty()) return OkStatus();
  const double rmse = last_eval.metrics[0].second, mae = last_eval.metrics[1].second;
  char buf[200];
  if (std::isnan(options_.noise_floor)) {
    std::snprintf(buf, sizeof(buf), "final test RMSE %.4f, MAE %.4f, %.1f s of training", rmse, mae,
                  train_seconds);
  } else {
    std::snprintf(buf, sizeof(buf),
                  "final test RMSE %.4f next to the noise floor %.4f (σ of the planted noise): "
                  "%.3f x σ; MAE %.4f; %.1f s",
                  rmse, options_.noise_floor, rmse / options_.noise_floor, mae, train_seconds);
  }
  log_lines->push_back(buf);
  return OkStatus();
}

}  // namespace tessera::worker
