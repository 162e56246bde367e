#include "worker/mf_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>

#include "core/cluster.h"
#include "core/logging.h"
#include "kernels/device_resources.h"
#include "kernels/mf.h"
#include "kernels/mf_device.h"
#include "kernels/random_math.h"
#include "worker/metrics_writer.h"
#include "worker/ps_client.h"
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

// A rating packed in one 24-byte record: a shuffled batch gathers one cache line per rating
// instead of one from each of three arrays.
struct Sample {
  uint64_t user;
  uint64_t item;
  float rating;
};

std::vector<Sample> Pack(const RatingData& data) {
  std::vector<Sample> samples(data.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    samples[i] = {data.users[i], data.items[i], data.ratings[i]};
  }
  return samples;
}

// One step's batch on its way through the parameter servers.
struct StepBatch {
  std::vector<uint64_t> user_keys, item_keys;
  std::vector<float> ratings;
  std::vector<int32_t> user_index, item_index;
  std::vector<std::vector<uint64_t>> unique{2};
  BatchPlan plan;
  PsClient::PendingPull pull;
};

class MfTrainer {
 public:
  MfTrainer(const MfTrainerOptions& options, RpcNode* rpc) : options_(options), rpc_(rpc) {}

  StatusOr<MfResult> Run(std::chrono::milliseconds register_timeout);

 private:
  bool IsReporter() const { return rpc_->self().rank == 0; }
  Status ReadData();
  StatusOr<std::vector<double>> Reduce(std::vector<double> values, proto::ReduceOp op);
  void Prepare(const std::vector<Sample>& data, const uint32_t* order, size_t n, StepBatch* batch);
  // Trains steps [start_step, steps_per_epoch_) of `epoch`, adding to *loss_sum / *samples.
  // Returns true when a signal stopped training after a checkpoint.
  StatusOr<bool> TrainEpoch(int epoch, int64_t start_step, double* loss_sum, int64_t* samples);
  // The trainer's part of a checkpoint (WorkerCheckpointer::WriteFn): MF has no dense state.
  Status WriteCheckpointFiles(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                              proto::ModelDescription* model);
  Status Evaluate(double* sse, double* sae, int64_t* count);
  kernels::MfBatch MakeKernelBatch(const StepBatch& b, const std::vector<const float*>& rows) const;
  // MfBatchGradient of one step; on CPU with two compute threads, split over both (same bits).
  Status BatchGradient(const kernels::MfBatch& b, float* user_grads, float* item_grads,
                       double* sq_error_sum);
  void LogProgress(int epoch, int64_t step, int64_t local_samples, double loss_sum, bool force);

  const MfTrainerOptions& options_;
  RpcNode* rpc_;
  // The worker's compute resources: the device and, on CPU with compute_threads 2, the second
  // compute thread over which the kernels split a step. Created at the start of Run.
  std::unique_ptr<kernels::DeviceResources> device_;
  // Runs the MF kernels on the host batches through device_'s context: a pass-through on CPU,
  // staging through device buffers on CUDA. Created at the start of Run.
  std::unique_ptr<kernels::MfDeviceWorkspace> workspace_;
  std::vector<Sample> train_, test_;
  std::unique_ptr<PsClient> ps_;
  KeyDeduper dedup_;
  int num_workers_ = 1;
  uint64_t reduce_round_ = 0;
  float global_mean_ = 0;
  float min_rating_ = 0, max_rating_ = 0;
  int64_t steps_per_epoch_ = 0;
  int64_t clock_ = 0;  // global step counter, the BSP clock
  int64_t total_train_ratings_ = 0;
  int64_t samples_done_ = 0;  // local training samples of finished epochs
  Clock::time_point train_start_, last_progress_;
  double train_seconds_ = 0;
  std::unique_ptr<WorkerCheckpointer> checkpointer_;
};

Status MfTrainer::ReadData() {
  RatingReadOptions read;
  read.format = options_.format;
  read.skip_bad_lines = options_.skip_bad_lines;
  read.num_threads = options_.reader_threads;
  read.partition = rpc_->self().rank;
  read.num_partitions = num_workers_;
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
  return OkStatus();
}

StatusOr<std::vector<double>> MfTrainer::Reduce(std::vector<double> values, proto::ReduceOp op) {
  return ReduceAcrossWorkers(*rpc_, reduce_round_++, values, op, options_.timeout);
}

void MfTrainer::Prepare(const std::vector<Sample>& data, const uint32_t* order, size_t n,
                        StepBatch* batch) {
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
  dedup_.Deduplicate(batch->user_keys.data(), n, &batch->unique[kUserTable],
                     batch->user_index.data());
  dedup_.Deduplicate(batch->item_keys.data(), n, &batch->unique[kItemTable],
                     batch->item_index.data());
  batch->plan = ps_->Plan(batch->unique);
}

kernels::MfBatch MfTrainer::MakeKernelBatch(const StepBatch& b,
                                            const std::vector<const float*>& rows) const {
  kernels::MfBatch k;
  k.num_samples = static_cast<int64_t>(b.ratings.size());
  k.user_index = b.user_index.data();
  k.item_index = b.item_index.data();
  k.ratings = b.ratings.data();
  k.dim = options_.dim;
  k.user_rows = rows[kUserTable];
  k.num_users = static_cast<int64_t>(b.unique[kUserTable].size());
  k.item_rows = rows[kItemTable];
  k.num_items = static_cast<int64_t>(b.unique[kItemTable].size());
  k.global_mean = global_mean_;
  k.l2 = options_.l2;
  k.l2_bias = options_.l2_bias;
  return k;
}

Status MfTrainer::BatchGradient(const kernels::MfBatch& b, float* user_grads, float* item_grads,
                                double* sq_error_sum) {
  return workspace_->BatchGradient(b, user_grads, item_grads, sq_error_sum);
}

void MfTrainer::LogProgress(int epoch, int64_t step, int64_t local_samples, double loss_sum,
                            bool force) {
  if (!IsReporter() || !options_.progress) return;
  auto now = Clock::now();
  if (!force && Seconds(now - last_progress_) < 2.0) return;
  last_progress_ = now;
  const double elapsed = Seconds(now - train_start_);
  const int64_t done_steps = static_cast<int64_t>(epoch) * steps_per_epoch_ + step;
  const int64_t all_steps = static_cast<int64_t>(options_.epochs) * steps_per_epoch_;
  const double rate =
      elapsed > 0 ? static_cast<double>(samples_done_ + local_samples) * num_workers_ / elapsed : 0;
  const double eta = done_steps > 0 ? elapsed * (all_steps - done_steps) / done_steps : 0;
  char line[256];
  std::snprintf(line, sizeof(line),
                "epoch %d/%d step %lld/%lld (%.0f%%), %s ratings/s, loss %.4f, ETA %.0f s",
                epoch + 1, options_.epochs, static_cast<long long>(step),
                static_cast<long long>(steps_per_epoch_),
                100.0 * static_cast<double>(done_steps) / std::max<int64_t>(all_steps, 1),
                FormatRate(rate).c_str(),
                local_samples > 0 ? loss_sum / static_cast<double>(local_samples) : 0.0, eta);
  TS_LOG(INFO) << line;
}

Status MfTrainer::WriteCheckpointFiles(const std::string&, std::vector<proto::CheckpointFile>*,
                                       proto::ModelDescription* model) {
  TS_RETURN_IF_ERROR(ps_->WaitPushes());
  if (model == nullptr) return OkStatus();
  model->set_type("mf");
  model->set_dim(options_.dim);
  model->set_global_bias(global_mean_);
  model->set_num_workers(num_workers_);
  for (const auto& t : options_.recovery.tables) *model->add_tables() = t;
  model->set_summary("biased MF, dim " + std::to_string(options_.dim) + ", mean rating " +
                     std::to_string(global_mean_));
  return OkStatus();
}

StatusOr<bool> MfTrainer::TrainEpoch(int epoch, int64_t start_step, double* loss_sum,
                                     int64_t* samples) {
  std::vector<uint32_t> order(train_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  ShuffleIndices(&order, EpochSeed(options_.seed, epoch, rpc_->self().rank));
  const size_t batch_size = static_cast<size_t>(options_.batch_size);
  auto batch_range = [&](int64_t step, size_t* begin) {
    *begin = std::min(order.size(), static_cast<size_t>(step) * batch_size);
    return std::min(order.size(), *begin + batch_size) - *begin;
  };
  std::unique_ptr<StepBatch> current = std::make_unique<StepBatch>();
  std::unique_ptr<StepBatch> next = std::make_unique<StepBatch>();
  size_t begin = 0;
  size_t n = batch_range(start_step, &begin);
  Prepare(train_, order.data() + begin, n, current.get());
  current->pull = ps_->StartPull(current->plan, clock_, proto::FLAG_NONE);
  std::vector<const float*> rows;
  for (int64_t step = start_step; step < steps_per_epoch_; ++step) {
    TS_RETURN_IF_ERROR(ps_->FinishPull(current->plan, current->pull, &rows));
    float* grads = nullptr;
    Frame grad_frame = PsClient::AllocateGradients(current->plan, &grads);
    const kernels::MfBatch kb = MakeKernelBatch(*current, rows);
    double sse = 0;
    TS_RETURN_IF_ERROR(BatchGradient(kb, grads + current->plan.value_offset[kUserTable],
                                     grads + current->plan.value_offset[kItemTable], &sse));
    *loss_sum += sse;
    *samples += kb.num_samples;
    TS_RETURN_IF_ERROR(ps_->WaitPushes());
    TS_RETURN_IF_ERROR(ps_->StartPush(current->plan, std::move(grad_frame), clock_));
    ++clock_;
    // While the servers apply this step, prepare the next batch and ask for its rows: they
    // are sent as soon as every worker's push of this step has been applied (BSP).
    if (step + 1 < steps_per_epoch_) {
      n = batch_range(step + 1, &begin);
      Prepare(train_, order.data() + begin, n, next.get());
      next->pull = ps_->StartPull(next->plan, clock_, proto::FLAG_NONE);
      std::swap(current, next);
    }
    LogProgress(epoch, step + 1, *samples, *loss_sum, false);
    // The epoch's last boundary is taken after its evaluation (Run).
    if (step + 1 < steps_per_epoch_) {
      TS_ASSIGN_OR_RETURN(bool stop, checkpointer_->AtBoundary(
                                         MakePosition(clock_, epoch, step + 1, *loss_sum, *samples,
                                                      samples_done_, train_seconds_),
                                         false, false));
      if (stop) {
        // The pull of the next step is in flight: let it finish before leaving.
        TS_RETURN_IF_ERROR(ps_->FinishPull(current->plan, current->pull, &rows));
        TS_RETURN_IF_ERROR(ps_->WaitPushes());
        return true;
      }
    }
  }
  TS_RETURN_IF_ERROR(ps_->WaitPushes());
  return false;
}

Status MfTrainer::Evaluate(double* sse, double* sae, int64_t* count) {
  *sse = 0;
  *sae = 0;
  *count = 0;
  constexpr size_t kEvalBatch = 16384;
  StepBatch batch;
  std::vector<float> predictions;
  std::vector<const float*> rows;
  for (size_t begin = 0; begin < test_.size(); begin += kEvalBatch) {
    const size_t n = std::min(kEvalBatch, test_.size() - begin);
    std::vector<uint32_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(begin + i);
    Prepare(test_, order.data(), n, &batch);
    // Rows for unseen keys come back as their initial values without being created.
    batch.pull = ps_->StartPull(batch.plan, clock_, proto::FLAG_NO_CREATE);
    TS_RETURN_IF_ERROR(ps_->FinishPull(batch.plan, batch.pull, &rows));
    predictions.resize(n);
    TS_RETURN_IF_ERROR(workspace_->Predict(MakeKernelBatch(batch, rows), predictions.data()));
    for (size_t i = 0; i < n; ++i) {
      const double p = std::clamp(predictions[i], min_rating_, max_rating_);
      const double e = static_cast<double>(batch.ratings[i]) - p;
      *sse += e * e;
      *sae += std::abs(e);
    }
    *count += static_cast<int64_t>(n);
  }
  return OkStatus();
}

StatusOr<MfResult> MfTrainer::Run(std::chrono::milliseconds register_timeout) {
  kernels::DeviceOptions device_options;
  device_options.device = options_.device;
  device_options.cpu_threads = options_.compute_threads;
  TS_ASSIGN_OR_RETURN(device_, kernels::DeviceResources::Create(device_options));
  TS_ASSIGN_OR_RETURN(workspace_, kernels::MfDeviceWorkspace::Create(device_->context()));
  TS_ASSIGN_OR_RETURN(ClusterView view, RegisterWithScheduler(*rpc_, register_timeout));
  num_workers_ = view.num_workers;
  TS_RETURN_IF_ERROR(ReadData());

  const RecoveryOptions& recovery = options_.recovery;
  const bool resuming = !recovery.resume_dir.empty();
  MetricsWriter metrics;
  if (IsReporter() && !options_.metrics_out.empty()) {
    TS_RETURN_IF_ERROR(metrics.Open(options_.metrics_out, /*append=*/resuming));
  }
  TableLayout layout;
  layout.dims = {options_.dim + 1, options_.dim + 1};
  ps_ = std::make_unique<PsClient>(rpc_, view.shard_map, layout, options_.timeout);

  // Global statistics: mean rating, range (for clipping predictions), steps per epoch.
  double local_sum = 0;
  float local_min = INFINITY, local_max = -INFINITY;
  for (const Sample& sample : train_) {
    const float r = sample.rating;
    local_sum += r;
    local_min = std::min(local_min, r);
    local_max = std::max(local_max, r);
  }
  TS_ASSIGN_OR_RETURN(auto sums, Reduce({local_sum, static_cast<double>(train_.size()),
                                         static_cast<double>(test_.size())},
                                        proto::REDUCE_OP_SUM));
  TS_ASSIGN_OR_RETURN(auto maxima, Reduce({static_cast<double>(train_.size()), local_max,
                                           -static_cast<double>(local_min)},
                                          proto::REDUCE_OP_MAX));
  total_train_ratings_ = static_cast<int64_t>(sums[1]);
  if (total_train_ratings_ == 0) {
    return Status::InvalidArgument("no training ratings in " + options_.train_path);
  }
  global_mean_ = static_cast<float>(sums[0] / sums[1]);
  max_rating_ = static_cast<float>(maxima[1]);
  min_rating_ = static_cast<float>(-maxima[2]);
  steps_per_epoch_ =
      (static_cast<int64_t>(maxima[0]) + options_.batch_size - 1) / options_.batch_size;
  if (IsReporter()) {
    TS_LOG(INFO) << "training MF dim " << options_.dim << " on " << total_train_ratings_
                 << " ratings (mean " << global_mean_ << ", range [" << min_rating_ << ", "
                 << max_rating_ << "]), " << static_cast<int64_t>(sums[2]) << " test ratings; "
                 << num_workers_ << " worker(s) x " << steps_per_epoch_ << " steps/epoch of "
                 << options_.batch_size << " on " << view.num_servers << " server(s)";
  }

  // Checkpoints: poll for signals about every 16k ratings per worker.
  checkpointer_ = std::make_unique<WorkerCheckpointer>(
      recovery, rpc_, std::max<int64_t>(1, 16384 / options_.batch_size), options_.timeout,
      [this](const std::string& dir, std::vector<proto::CheckpointFile>* files,
             proto::ModelDescription* model) { return WriteCheckpointFiles(dir, files, model); });
  if (resuming &&
      recovery.resume_manifest.model().global_bias() != static_cast<double>(global_mean_)) {
    return Status::InvalidArgument("the training data differ from the checkpoint's: mean rating " +
                                   std::to_string(global_mean_) + ", the checkpoint has " +
                                   std::to_string(recovery.resume_manifest.model().global_bias()));
  }
  TS_ASSIGN_OR_RETURN(const proto::WorkerCheckpoint from,
                      StartPosition(recovery, *rpc_, steps_per_epoch_));
  clock_ = from.step();
  samples_done_ = from.samples_done();
  train_seconds_ = from.train_seconds();

  MfResult result;
  train_start_ = last_progress_ = Clock::now();
  for (int epoch = from.epoch(); epoch < options_.epochs; ++epoch) {
    auto epoch_start = Clock::now();
    const bool first = epoch == from.epoch();
    double loss_sum = first ? from.loss_sum() : 0;
    int64_t samples = first ? from.samples() : 0;
    TS_ASSIGN_OR_RETURN(bool stop,
                        TrainEpoch(epoch, first ? from.step_in_epoch() : 0, &loss_sum, &samples));
    if (stop) {
      result.stopped = true;
      break;
    }
    const double epoch_seconds = Seconds(Clock::now() - epoch_start);
    samples_done_ += samples;
    train_seconds_ += epoch_seconds;
    TS_ASSIGN_OR_RETURN(auto train_sums,
                        Reduce({loss_sum, static_cast<double>(samples)}, proto::REDUCE_OP_SUM));
    TS_ASSIGN_OR_RETURN(auto slowest, Reduce({epoch_seconds}, proto::REDUCE_OP_MAX));
    result.train_loss = train_sums[0] / std::max(train_sums[1], 1.0);
    result.samples_per_sec = train_sums[1] / std::max(slowest[0], 1e-9);
    metrics.Train(epoch + 1, result.train_loss, result.samples_per_sec);
    std::string eval_text;
    if (!options_.test_path.empty()) {
      double sse, sae;
      int64_t count;
      TS_RETURN_IF_ERROR(Evaluate(&sse, &sae, &count));
      TS_ASSIGN_OR_RETURN(auto eval,
                          Reduce({sse, sae, static_cast<double>(count)}, proto::REDUCE_OP_SUM));
      const double n = std::max(eval[2], 1.0);
      result.test_rmse = std::sqrt(eval[0] / n);
      result.test_mae = eval[1] / n;
      metrics.Eval(epoch + 1, "test", result.test_rmse, result.test_mae);
      char buf[96];
      std::snprintf(buf, sizeof(buf), ", test RMSE %.4f MAE %.4f", result.test_rmse,
                    result.test_mae);
      eval_text = buf;
    }
    if (IsReporter() && options_.progress) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), "epoch %d/%d: train MSE %.4f%s, %s ratings/s, %.2f s",
                    epoch + 1, options_.epochs, result.train_loss, eval_text.c_str(),
                    FormatRate(result.samples_per_sec).c_str(), epoch_seconds);
      TS_LOG(INFO) << buf;
    }
    TS_ASSIGN_OR_RETURN(bool stop_now,
                        checkpointer_->AtBoundary(
                            MakePosition(clock_, epoch + 1, 0, 0, 0, samples_done_, train_seconds_),
                            true, epoch + 1 == options_.epochs));
    if (stop_now) {
      result.stopped = true;
      break;
    }
  }
  if (result.stopped) {
    TS_RETURN_IF_ERROR(FinishWorker(rpc_, options_.timeout));
    return result;
  }
  result.train_seconds = train_seconds_;
  if (IsReporter() && options_.progress && !options_.test_path.empty()) {
    char buf[200];
    if (std::isnan(options_.noise_floor)) {
      std::snprintf(buf, sizeof(buf), "final test RMSE %.4f, MAE %.4f after %d epoch(s), %.1f s",
                    result.test_rmse, result.test_mae, options_.epochs, result.train_seconds);
    } else {
      std::snprintf(buf, sizeof(buf),
                    "final test RMSE %.4f next to the noise floor %.4f (σ of the planted noise): "
                    "%.3f x σ; MAE %.4f; %.1f s",
                    result.test_rmse, options_.noise_floor, result.test_rmse / options_.noise_floor,
                    result.test_mae, result.train_seconds);
    }
    TS_LOG(INFO) << buf;
  }
  if (IsReporter()) {
    metrics.Done(options_.epochs, result.test_rmse, result.test_mae, result.train_seconds,
                 result.samples_per_sec);
    TS_RETURN_IF_ERROR(metrics.Close());
  }
  TS_RETURN_IF_ERROR(FinishWorker(rpc_, options_.timeout));
  return result;
}

}  // namespace

StatusOr<MfResult> RunMfWorkerNode(const MfTrainerOptions& options, RpcNode* rpc,
                                   std::chrono::milliseconds register_timeout) {
  return RunWorkerNode<MfResult>(rpc, options.recovery, [&]() -> StatusOr<MfResult> {
    MfTrainer trainer(options, rpc);
    return trainer.Run(register_timeout);
  });
}

}  // namespace tessera::worker
