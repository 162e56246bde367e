#include "worker/train_loop.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "core/cluster.h"
#include "core/huge_pages.h"
#include "core/logging.h"
#include "worker/finite_check.h"
#include "worker/worker_node.h"

namespace tessera::worker {
namespace {

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

void Model::EpochOrder(uint64_t seed, size_t, std::vector<uint32_t>* order,
                       std::vector<bool>* disjoint_next) const {
  disjoint_next->clear();
  order->resize(static_cast<size_t>(num_train_samples()));
  for (size_t i = 0; i < order->size(); ++i) (*order)[i] = static_cast<uint32_t>(i);
  ShuffleIndices(order, seed);
}

// The model's view of the other workers: the loop's reduce rounds and the collective.
class TrainLoop::Group : public WorkerGroup {
 public:
  Group(TrainLoop* loop, int size) : loop_(loop), size_(size) {}
  int rank() const override { return loop_->rpc_->self().rank; }
  int size() const override { return size_; }
  StatusOr<std::vector<double>> Reduce(std::vector<double> values, proto::ReduceOp op) override {
    return loop_->Reduce(std::move(values), op);
  }
  Collective* collective() override { return loop_->collective_; }

 private:
  TrainLoop* const loop_;
  const int size_;
};

// One step's batch on its way through the parameter servers.
struct TrainLoop::Step {
  std::unique_ptr<ModelBatch> batch;
  BatchPlan plan;
  PsClient::PendingPull pull;
  bool pulled = false;  // `pull` is in flight: started for this batch and not yet finished
};

TrainLoop::TrainLoop(const TrainLoopOptions& options, Model* model, RpcNode* rpc,
                     Collective* collective)
    : options_(options), model_(model), rpc_(rpc), collective_(collective) {}

TrainLoop::~TrainLoop() = default;

StatusOr<std::vector<double>> TrainLoop::Reduce(std::vector<double> values, proto::ReduceOp op) {
  return ReduceAcrossWorkers(*rpc_, reduce_round_++, values, op, options_.timeout);
}

void TrainLoop::PrepareTrain(const uint32_t* order, size_t n, Step* step) {
  model_->PrepareTrainBatch(order, n, step->batch.get());
  step->plan = ps_->Plan(step->batch->unique_keys);
}

Status TrainLoop::WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                                  proto::ModelDescription* description) {
  TS_RETURN_IF_ERROR(ps_->WaitPushes());
  TS_RETURN_IF_ERROR(model_->WriteCheckpoint(dir, files, description));
  if (description != nullptr) {
    description->set_num_workers(shape_.num_workers);
    for (const auto& t : options_.recovery.tables) *description->add_tables() = t;
  }
  return OkStatus();
}

void TrainLoop::LogProgress(int epoch, int64_t step, int64_t samples, double loss_sum) {
  if (!IsReporter() || !options_.progress) return;
  const auto now = Clock::now();
  if (Seconds(now - last_progress_) < 2.0) return;
  last_progress_ = now;
  StepProgress p;
  p.epoch = epoch;
  p.step = step;
  p.done_steps = static_cast<int64_t>(epoch) * steps_per_epoch_ + step;
  p.all_steps = static_cast<int64_t>(options_.epochs) * steps_per_epoch_;
  p.elapsed_seconds = Seconds(now - train_start_);
  p.loss_sum = loss_sum;
  p.samples = samples;
  p.samples_done = samples_done_;
  TS_LOG(INFO) << model_->ProgressLine(shape_, p);
}

StatusOr<EvalReport> TrainLoop::Evaluate(int epoch, EvalSet set) {
  model_->SelectEvalSet(set);
  const size_t total = static_cast<size_t>(model_->num_eval_samples());
  const size_t batch_size = static_cast<size_t>(model_->eval_batch_size());
  // One batch ahead, as in training: the next batch is prepared and its pull sent before this
  // one is evaluated, so the servers copy rows while the worker predicts. Every pull reads the
  // same clock, and rows for unseen keys come back as their initial values without being created.
  Step current{model_->NewBatch(), {}, {}}, next{model_->NewBatch(), {}, {}};
  auto start = [&](size_t begin, Step* step) {
    model_->PrepareEvalBatch(begin, std::min(batch_size, total - begin), step->batch.get());
    step->plan = ps_->Plan(step->batch->unique_keys);
    step->pull = ps_->StartPull(step->plan, clock_, proto::FLAG_NO_CREATE);
  };
  std::vector<const float*> rows;
  if (total > 0) start(0, &current);
  for (size_t begin = 0; begin < total; begin += batch_size) {
    if (begin + batch_size < total) start(begin + batch_size, &next);
    TS_RETURN_IF_ERROR(
        ps_->FinishPull(current.plan, current.pull, &rows,
                        model_->PullDestination(*current.batch, current.plan.total_floats)));
    TS_RETURN_IF_ERROR(model_->EvalBatch(begin, *current.batch, rows));
    std::swap(current, next);
  }
  TS_ASSIGN_OR_RETURN(EvalReport report, model_->EndEval(clock_));
  model_->SelectEvalSet(EvalSet::kTest);
  if (IsReporter()) {
    TS_RETURN_IF_ERROR(metrics_.Eval(epoch + 1, report.record_step ? clock_ : -1, EvalSetName(set),
                                     report.metrics));
    if (!report.log_line.empty()) TS_LOG(INFO) << report.log_line;
  }
  return report;
}

StatusOr<bool> TrainLoop::EarlyStopCheck(int epoch, proto::WorkerCheckpoint* position) {
  if (!model_->has_valid_data()) return false;
  TS_ASSIGN_OR_RETURN(const EvalReport report, Evaluate(epoch, EvalSet::kValid));
  const auto& [name, value] = report.metrics[model_->early_stop_metric()];
  // Every worker reduced the same metric, so every worker takes the same decision. Better means
  // by more than 0.05 %: a metric that creeps down in its last digits has stopped improving.
  if (position->best_valid_epoch() == 0 || !std::isfinite(position->best_valid()) ||
      value < position->best_valid() - 5e-4 * std::abs(position->best_valid())) {
    position->set_best_valid(value);
    position->set_best_valid_epoch(epoch + 1);
    position->set_epochs_without_improvement(0);
  } else {
    position->set_epochs_without_improvement(position->epochs_without_improvement() + 1);
  }
  const bool stop = options_.early_stop > 0 &&
                    position->epochs_without_improvement() >= options_.early_stop &&
                    epoch + 1 < options_.epochs;
  if (IsReporter() && options_.progress) {
    char line[200];
    std::snprintf(line, sizeof(line), "epoch %d: valid %s %.4f (best %.4f after epoch %d)%s",
                  epoch + 1, name.c_str(), value, position->best_valid(),
                  position->best_valid_epoch(),
                  stop ? ": no better for --early-stop epochs, training ends here" : "");
    TS_LOG(INFO) << line;
  }
  position->set_early_stopped(stop);
  return stop;
}

proto::WorkerCheckpoint TrainLoop::Position(int epoch, int64_t step_in_epoch, double loss_sum,
                                            int64_t samples) const {
  proto::WorkerCheckpoint position =
      MakePosition(clock_, epoch, step_in_epoch, loss_sum, samples, samples_done_, train_seconds_);
  position.set_best_valid(early_stop_.best_valid());
  position.set_best_valid_epoch(early_stop_.best_valid_epoch());
  position.set_epochs_without_improvement(early_stop_.epochs_without_improvement());
  position.set_early_stopped(early_stop_.early_stopped());
  return position;
}

StatusOr<bool> TrainLoop::TrainEpoch(int epoch, int64_t start_step, double* loss_sum,
                                     int64_t* samples) {
  std::vector<uint32_t>& order = epoch_order_;
  ReserveHugePages(&order, static_cast<size_t>(model_->num_train_samples()));
  const size_t batch_size = static_cast<size_t>(options_.batch_size);
  model_->EpochOrder(EpochSeed(options_.seed, epoch, rpc_->self().rank), batch_size, &order,
                     &disjoint_next_);
  // A pull ahead needs the servers' word that no other worker's push of the step before touches
  // its rows: they give it to a job of one worker only. An order that marks no step (CTR, MF's
  // plain shuffle, a grid without pairs) keeps the loop's two batches, prepared one step ahead.
  const bool pull_ahead =
      options_.pull_ahead && shape_.num_workers == 1 &&
      std::find(disjoint_next_.begin(), disjoint_next_.end(), true) != disjoint_next_.end();
  auto prepare = [&](int64_t step, Step* s) {
    const size_t begin = std::min(order.size(), static_cast<size_t>(step) * batch_size);
    PrepareTrain(order.data() + begin, std::min(order.size(), begin + batch_size) - begin, s);
    s->pulled = false;
  };
  // Step `step + 1` reads none of the rows step `step` pushes.
  auto disjoint = [&](int64_t step) {
    return static_cast<size_t>(step) < disjoint_next_.size() && disjoint_next_[step];
  };
  auto start_pull = [&](Step* s, int64_t clock, uint32_t flags) {
    s->pull = ps_->StartPull(s->plan, clock, flags);
    s->pulled = true;
  };
  // The steps' batches in turn: the current step's; the next one's (prepared a step early with
  // pull_ahead); with pull_ahead a spare, the step before's, whose push was acknowledged before
  // this step's was sent, in which the step after next is prepared.
  std::unique_ptr<Step> steps[3];
  for (int i = 0; i < (pull_ahead ? 3 : 2); ++i) {
    steps[i] = std::make_unique<Step>();
    steps[i]->batch = model_->NewBatch();
  }
  Step *current = steps[0].get(), *next = steps[1].get(), *spare = steps[2].get();
  prepare(start_step, current);
  start_pull(current, clock_, proto::FLAG_NONE);
  if (pull_ahead && start_step + 1 < steps_per_epoch_) prepare(start_step + 1, next);
  std::vector<const float*> rows;
  std::vector<float*> grads;
  for (int64_t step = start_step; step < steps_per_epoch_; ++step) {
    const bool has_next = step + 1 < steps_per_epoch_;
    const uint64_t total_floats = current->plan.total_floats;
    TS_RETURN_IF_ERROR(ps_->FinishPull(current->plan, current->pull, &rows,
                                       model_->PullDestination(*current->batch, total_floats)));
    current->pulled = false;
    // The next step reads none of this step's rows: its pull goes now, and the servers copy its
    // rows while this step computes.
    if (pull_ahead && has_next && !next->pulled && disjoint(step)) {
      start_pull(next, clock_ + 1, proto::FLAG_AHEAD);
      ++steps_pulled_ahead_;
    }
    float* out = nullptr;
    Frame grad_frame = model_->GradientFrame(*current->batch, total_floats, &out);
    if (grad_frame.empty()) grad_frame = PsClient::AllocateGradients(current->plan, &out);
    grads.resize(current->plan.value_offset.size());
    for (size_t t = 0; t < grads.size(); ++t) grads[t] = out + current->plan.value_offset[t];
    double loss = 0;
    bool known_finite = false;
    TS_RETURN_IF_ERROR(
        model_->ComputeGradients(*current->batch, rows, grads, &loss, &known_finite));
    // The gradients are scanned unless the model vouches for them (MF on the CPU: every error
    // finite). What a vouching model can still let through, an overflow of error x factor, makes
    // the row the server updates non-finite, and the server's check stops the job at this step.
    if (!known_finite || !std::isfinite(loss)) {
      TS_RETURN_IF_ERROR(
          CheckStepFinite(clock_ + 1, current->batch->unique_keys, table_dims_, grads, loss));
    }
    *loss_sum += loss;
    *samples += current->batch->num_samples;
    TS_RETURN_IF_ERROR(ps_->WaitPushes());
    TS_RETURN_IF_ERROR(ps_->StartPush(current->plan, std::move(grad_frame), clock_));
    ++clock_;
    // While the servers apply this step, ask for the next step's rows (sent as soon as every
    // worker's push of this step has been applied: BSP) unless they went ahead, and prepare the
    // step after it in the spare (with pull_ahead; else the next step here). Then the model's
    // dense part of the step.
    if (has_next && !pull_ahead) prepare(step + 1, next);
    if (has_next && !next->pulled) start_pull(next, clock_, proto::FLAG_NONE);
    if (pull_ahead && step + 2 < steps_per_epoch_) {
      prepare(step + 2, spare);
      // Two steps ahead: when the step after next reads none of the next step's rows, its pull
      // goes now, behind this step's push, and the servers serve it once they have applied that
      // push, while this worker computes the next step.
      if (disjoint(step + 1)) {
        start_pull(spare, clock_ + 1, proto::FLAG_AHEAD);
        ++steps_pulled_ahead_;
      }
    }
    TS_RETURN_IF_ERROR(model_->AfterPush());
    if (pull_ahead) {  // this step's batch becomes the spare once its push is acknowledged
      Step* done = current;
      current = next;
      next = spare;
      spare = done;
    } else {
      std::swap(current, next);
    }
    if (options_.eval_every > 0 && clock_ % options_.eval_every == 0 && has_next &&
        model_->has_eval_data()) {
      // Evaluation pulls at the current clock: wait for this step's push to be applied first.
      TS_RETURN_IF_ERROR(ps_->WaitPushes());
      TS_RETURN_IF_ERROR(Evaluate(epoch, EvalSet::kTest).status());
    }
    LogProgress(epoch, step + 1, *samples, *loss_sum);
    // The epoch's last boundary is taken after its evaluation (Run).
    if (has_next) {
      TS_ASSIGN_OR_RETURN(
          bool stop,
          checkpointer_->AtBoundary(Position(epoch, step + 1, *loss_sum, *samples), false, false));
      if (stop) {
        // The pulls of the next steps are in flight: let them finish before leaving.
        TS_RETURN_IF_ERROR(ps_->FinishPull(current->plan, current->pull, &rows));
        if (next->pulled) {
          TS_RETURN_IF_ERROR(ps_->FinishPull(next->plan, next->pull, &rows));
        }
        TS_RETURN_IF_ERROR(ps_->WaitPushes());
        return true;
      }
    }
  }
  TS_RETURN_IF_ERROR(ps_->WaitPushes());
  return false;
}

StatusOr<TrainResult> TrainLoop::Run(std::chrono::milliseconds register_timeout) {
  TS_ASSIGN_OR_RETURN(ClusterView view, RegisterWithScheduler(*rpc_, register_timeout));
  if (collective_ != nullptr &&
      (collective_->size() != view.num_workers || collective_->rank() != rpc_->self().rank)) {
    return Status::Internal("the dense collective does not match the job's workers");
  }
  shape_.num_workers = view.num_workers;
  shape_.num_servers = view.num_servers;
  shape_.epochs = options_.epochs;
  shape_.batch_size = options_.batch_size;
  group_ = std::make_unique<Group>(this, view.num_workers);
  TS_RETURN_IF_ERROR(model_->Setup(group_.get()));

  const RecoveryOptions& recovery = options_.recovery;
  const bool resuming = !recovery.resume_dir.empty();
  if (IsReporter() && !options_.metrics_out.empty()) {
    TS_RETURN_IF_ERROR(metrics_.Open(options_.metrics_out, /*append=*/resuming));
  }
  TableLayout layout;
  layout.dims = model_->TableDims();
  table_dims_ = layout.dims;
  ps_ = std::make_unique<PsClient>(rpc_, view.shard_map, layout, options_.timeout);

  TS_ASSIGN_OR_RETURN(const int64_t largest_partition, model_->Summarize());
  steps_per_epoch_ = (largest_partition + options_.batch_size - 1) / options_.batch_size;
  shape_.steps_per_epoch = steps_per_epoch_;
  if (IsReporter()) {
    for (const std::string& line : model_->StartupLines(shape_)) TS_LOG(INFO) << line;
  }
  checkpointer_ = std::make_unique<WorkerCheckpointer>(
      recovery, rpc_, std::max<int64_t>(1, options_.poll_samples / options_.batch_size),
      options_.timeout,
      [this](const std::string& dir, std::vector<proto::CheckpointFile>* files,
             proto::ModelDescription* description) {
        return WriteCheckpoint(dir, files, description);
      });
  if (resuming) {
    TS_RETURN_IF_ERROR(model_->Restore(recovery.resume_manifest, recovery.resume_dir));
  }
  TS_ASSIGN_OR_RETURN(const proto::WorkerCheckpoint from,
                      StartPosition(recovery, *rpc_, steps_per_epoch_));
  clock_ = from.step();
  samples_done_ = from.samples_done();
  train_seconds_ = from.train_seconds();

  TrainResult result;
  for (const std::string& name : model_->MetricNames()) {
    result.last_eval.metrics.emplace_back(name, NAN);
  }
  train_start_ = last_progress_ = Clock::now();
  early_stop_ = from;  // the early-stopping state so far (all zero on a fresh start)
  early_stop_.set_early_stopped(false);  // a run resumed with more patience trains on
  result.epochs_trained = from.epoch();
  for (int epoch = from.epoch(); epoch < options_.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const bool first = epoch == from.epoch();
    double loss_sum = first ? from.loss_sum() : 0;
    int64_t samples = first ? from.samples() : 0;
    TS_ASSIGN_OR_RETURN(bool stop,
                        TrainEpoch(epoch, first ? from.step_in_epoch() : 0, &loss_sum, &samples));
    if (stop) {
      result.stopped = true;
      break;
    }
    EpochStats stats;
    stats.epoch = epoch;
    stats.seconds = Seconds(Clock::now() - epoch_start);
    samples_done_ += samples;
    train_seconds_ += stats.seconds;
    TS_ASSIGN_OR_RETURN(auto train_sums,
                        Reduce({loss_sum, static_cast<double>(samples)}, proto::REDUCE_OP_SUM));
    TS_ASSIGN_OR_RETURN(auto slowest, Reduce({stats.seconds}, proto::REDUCE_OP_MAX));
    result.train_loss = stats.train_loss = train_sums[0] / std::max(train_sums[1], 1.0);
    result.samples_per_sec = stats.samples_per_sec = train_sums[1] / std::max(slowest[0], 1e-9);
    if (IsReporter()) {
      TS_RETURN_IF_ERROR(metrics_.Train(epoch + 1, result.train_loss, result.samples_per_sec));
    }
    std::string eval_text;
    if (model_->has_eval_data()) {
      TS_ASSIGN_OR_RETURN(result.last_eval, Evaluate(epoch, EvalSet::kTest));
      eval_text = result.last_eval.epoch_text;
    }
    if (IsReporter() && options_.progress) {
      TS_LOG(INFO) << model_->EpochLine(shape_, stats, eval_text);
    }
    result.epochs_trained = epoch + 1;
    TS_ASSIGN_OR_RETURN(result.early_stopped, EarlyStopCheck(epoch, &early_stop_));
    const bool last = result.early_stopped || epoch + 1 == options_.epochs;
    TS_ASSIGN_OR_RETURN(bool stop_now,
                        checkpointer_->AtBoundary(Position(epoch + 1, 0, 0, 0), true, last));
    if (result.early_stopped) break;
    if (stop_now) {
      result.stopped = true;
      break;
    }
  }
  result.steps = clock_;
  result.train_seconds = train_seconds_;
  if (IsReporter() && options_.progress && steps_pulled_ahead_ > 0) {
    TS_LOG(INFO) << "pulled ahead " << steps_pulled_ahead_ << " of " << clock_ - from.step()
                 << " steps: their rows were copied while the step before them computed";
  }
  if (!result.stopped) {
    std::vector<std::string> lines;
    std::vector<JsonField> done_fields;
    TS_RETURN_IF_ERROR(model_->Finish(result.last_eval, train_seconds_, &lines, &done_fields));
    if (IsReporter()) {
      for (const std::string& line : lines) TS_LOG(INFO) << line;
      // Without test data nothing was evaluated: the record has no metrics (never null).
      TS_RETURN_IF_ERROR(
          metrics_.Done(result.epochs_trained,
                        model_->has_eval_data() ? result.last_eval.metrics : MetricValues(),
                        train_seconds_, result.samples_per_sec, done_fields));
      TS_RETURN_IF_ERROR(metrics_.Close());
    }
  }
  TS_RETURN_IF_ERROR(FinishWorker(rpc_, options_.timeout));
  return result;
}

}  // namespace tessera::worker
