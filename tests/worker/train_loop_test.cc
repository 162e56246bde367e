// The training loop (worker/train_loop.h) with a fake model, in one process: a real scheduler,
// a real server and two workers over the in-process transport. The fake model records every
// batch it is given, so the tests see which steps ran, where checkpoints were taken and when
// evaluations happened.
#include "worker/train_loop.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <functional>
#include <thread>

#include "core/checkpoint.h"
#include "core/inproc_transport.h"
#include "core/logging.h"
#include "scheduler/scheduler.h"
#include "server/server.h"
#include "tests/testing/test_util.h"
#include "worker/worker_node.h"

namespace tessera::worker {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kWait(20000);
constexpr int kWorkers = 2;
constexpr int kSamplesPerWorker = 10;
constexpr int kBatch = 2;  // 5 steps per epoch
constexpr int kEvalSamples = 6;
constexpr char kFakeFile[] = "fake.state";

// A model with one table of 2-float rows. Sample i of worker w has the key 100 * w + i % 4;
// its loss is i + 1. It counts its steps in a state of its own that it checkpoints (worker 0).
class FakeModel : public Model {
 public:
  struct Batch : ModelBatch {
    std::vector<uint32_t> samples;
  };

  std::vector<int> TableDims() const override { return {2}; }
  Status Setup(WorkerGroup* group) override {
    group_ = group;
    if (on_setup) on_setup();
    return OkStatus();
  }
  StatusOr<int64_t> Summarize() override {
    TS_ASSIGN_OR_RETURN(auto largest, group_->Reduce({kSamplesPerWorker}, proto::REDUCE_OP_MAX));
    return static_cast<int64_t>(largest[0]);
  }
  std::vector<std::string> StartupLines(const JobShape&) const override { return {"fake model"}; }
  Status Restore(const proto::CheckpointManifest& manifest, const std::string& dir) override {
    const proto::CheckpointFile* entry = checkpoint::FindFile(manifest, kFakeFile);
    if (entry == nullptr) return Status::InvalidArgument("no " + std::string(kFakeFile));
    proto::DenseCheckpoint state;
    TS_RETURN_IF_ERROR(checkpoint::ReadProtoFile(Env::Default(), dir, *entry, &state));
    restored_steps = steps_taken = state.optimizer_step();
    return OkStatus();
  }
  Status WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                         proto::ModelDescription* description) override {
    if (description == nullptr) return OkStatus();
    proto::DenseCheckpoint state;
    state.set_optimizer_step(steps_taken);
    TS_ASSIGN_OR_RETURN(proto::CheckpointFile entry,
                        checkpoint::WriteProtoFile(Env::Default(), dir + "/" + kFakeFile, state));
    entry.set_kind(proto::CheckpointFile::KIND_DENSE);
    files->push_back(std::move(entry));
    description->set_type("fake");
    return OkStatus();
  }
  int64_t num_train_samples() const override { return kSamplesPerWorker; }
  std::unique_ptr<ModelBatch> NewBatch() const override { return std::make_unique<Batch>(); }
  void PrepareTrainBatch(const uint32_t* order, size_t n, ModelBatch* batch) override {
    Fill(std::vector<uint32_t>(order, order + n), static_cast<Batch*>(batch));
  }
  Status ComputeGradients(const ModelBatch& model_batch, const std::vector<const float*>& rows,
                          const std::vector<float*>& grads, double* loss_sum,
                          bool* known_finite) override {
    const Batch& batch = static_cast<const Batch&>(model_batch);
    if (fail_at_step >= 0 && static_cast<int64_t>(steps.size()) == fail_at_step) {
      return Status::DataLoss("fake failure in step " + std::to_string(fail_at_step));
    }
    if (rows.size() != 1 || rows[0] == nullptr) return Status::Internal("no rows pulled");
    steps.push_back(batch.samples);
    ++steps_taken;
    *loss_sum = 0;
    for (uint32_t i : batch.samples) *loss_sum += i + 1;
    const int64_t step = static_cast<int64_t>(steps.size()) - 1;
    const float g = huge_from_step >= 0 && step >= huge_from_step ? 3e38f : 0.01f;
    for (size_t k = 0; k < 2 * batch.unique_keys[0].size(); ++k) grads[0][k] = g;
    if (step == nan_at_step) grads[0][1] = NAN;  // the second weight of the first key
    if (step == nan_loss_at_step) *loss_sum = INFINITY;
    if (vouches_for_gradients && step != nan_at_step) *known_finite = true;
    return OkStatus();
  }
  Status AfterPush() override {
    ++after_push_calls;
    return OkStatus();
  }
  bool has_valid_data() const override { return !valid_metric.empty(); }
  void SelectEvalSet(EvalSet set) override { eval_set = set; }
  bool has_eval_data() const override { return true; }
  int64_t num_eval_samples() const override { return kEvalSamples; }
  int64_t eval_batch_size() const override { return 4; }
  void PrepareEvalBatch(size_t begin, size_t n, ModelBatch* batch) override {
    std::vector<uint32_t> samples(n);
    for (size_t i = 0; i < n; ++i) samples[i] = static_cast<uint32_t>(begin + i);
    Fill(samples, static_cast<Batch*>(batch));
  }
  Status EvalBatch(size_t, const ModelBatch& batch, const std::vector<const float*>&) override {
    eval_samples += batch.num_samples;
    return OkStatus();
  }
  StatusOr<EvalReport> EndEval(int64_t step) override {
    eval_steps.push_back(step);
    TS_ASSIGN_OR_RETURN(auto all,
                        group_->Reduce({static_cast<double>(eval_samples)}, proto::REDUCE_OP_SUM));
    eval_samples = 0;
    EvalReport report;
    report.metrics = {{"samples", all[0]}};
    if (eval_set == EvalSet::kValid) {  // after epoch `step / 5`, 1-based
      report.metrics = {{"samples", valid_metric[static_cast<size_t>(step / 5 - 1)]}};
      ++valid_evals;
    }
    report.record_step = true;
    return report;
  }
  std::vector<std::string> MetricNames() const override { return {"samples"}; }
  std::string ProgressLine(const JobShape&, const StepProgress&) const override { return "step"; }
  std::string EpochLine(const JobShape&, const EpochStats&, const std::string&) const override {
    return "epoch";
  }
  Status Finish(const EvalReport&, double, std::vector<std::string>*,
                std::vector<JsonField>* done_fields) override {
    done_fields->emplace_back("fake", "true");
    return OkStatus();
  }

  // Set by the test before the run.
  std::function<void()> on_setup;
  int64_t fail_at_step = -1;      // ComputeGradients fails on this call (0-based)
  int64_t nan_at_step = -1;       // a NaN gradient on this call
  int64_t nan_loss_at_step = -1;  // an infinite loss (finite gradients) on this call
  int64_t huge_from_step = -1;    // gradients of 3e38 from this call on (Adagrad: g^2 is inf)
  // Says its gradients are finite (Model::ComputeGradients' *known_finite), except at nan_at_step,
  // as MF's flagged kernels do; the loop then scans only that step's.
  bool vouches_for_gradients = false;
  std::vector<double> valid_metric;  // the validation metric after each epoch; empty: none
  EvalSet eval_set = EvalSet::kTest;
  int valid_evals = 0;
  // What the model saw.
  std::vector<std::vector<uint32_t>> steps;  // the samples of every step, in order
  std::vector<int64_t> eval_steps;           // the global step of every evaluation
  int64_t after_push_calls = 0;
  int64_t steps_taken = 0;  // checkpointed: steps of the whole training, resumed runs included
  int64_t restored_steps = -1;

 private:
  void Fill(const std::vector<uint32_t>& samples, Batch* batch) {
    batch->samples = samples;
    batch->num_samples = static_cast<int64_t>(samples.size());
    std::vector<uint64_t> keys;
    for (uint32_t i : samples) {
      const uint64_t key = 100 * static_cast<uint64_t>(group_->rank()) + i % 4;
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    }
    batch->unique_keys = {keys};
  }

  WorkerGroup* group_ = nullptr;
  int64_t eval_samples = 0;
};

// One job: a scheduler, one server and kWorkers workers running TrainLoops with FakeModels.
struct Job {
  TrainLoopOptions loop;
  std::string checkpoint_dir;
  std::string resume_dir;  // "" = a fresh start
  FakeModel models[kWorkers];
  StatusOr<TrainResult> results[kWorkers] = {Status::Unknown("not run"),
                                             Status::Unknown("not run")};
  Status scheduler_status, server_status;
  scheduler::Scheduler* scheduler = nullptr;  // while Run runs

  void Run() {
    proto::CheckpointManifest manifest;
    if (!resume_dir.empty()) {
      auto read = checkpoint::ReadManifest(Env::Default(), resume_dir);
      ASSERT_TRUE(read.ok()) << read.status().ToString();
      manifest = *read;
    }
    loop.recovery.checkpoint_dir = checkpoint_dir;
    loop.recovery.resume_dir = resume_dir;
    loop.recovery.resume_manifest = manifest;
    loop.timeout = kWait;
    loop.progress = false;

    InProcHub hub;
    std::vector<NodeId> ids = {NodeId::Scheduler(), NodeId::Server(0)};
    for (int w = 0; w < kWorkers; ++w) ids.push_back(NodeId::Worker(w));
    std::vector<std::unique_ptr<InProcTransport>> transports;
    std::vector<std::unique_ptr<RpcNode>> rpcs;
    for (const NodeId& id : ids) {
      transports.push_back(std::make_unique<InProcTransport>(&hub, id));
      rpcs.push_back(std::make_unique<RpcNode>(transports.back().get()));
    }
    scheduler::SchedulerOptions sched_options;
    sched_options.num_servers = 1;
    sched_options.num_workers = kWorkers;
    sched_options.register_timeout = kWait;
    sched_options.shutdown_timeout = kWait;
    sched_options.checkpoint_timeout = kWait;
    sched_options.checkpoint_dir = checkpoint_dir;
    sched_options.resumed_from = resume_dir;
    scheduler::Scheduler sched(sched_options, rpcs[0].get());
    ASSERT_TRUE(sched.Start().ok());
    scheduler = &sched;

    server::ServerOptions server_options;
    server::TableOptions table;
    table.table_id = 0;
    table.dim = 2;
    table.seed = 3;
    server_options.tables = {table};
    server_options.deterministic = true;
    server_options.resume_dir = resume_dir;
    server_options.resume_manifest = manifest;
    std::vector<std::thread> threads;
    threads.emplace_back(
        [&] { server_status = server::RunServerNode(server_options, rpcs[1].get(), kWait); });
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&, w] {
        RpcNode* rpc = rpcs[2 + w].get();
        results[w] = RunWorkerNode<TrainResult>(rpc, loop.recovery, [&]() {
          TrainLoop train_loop(loop, &models[w], rpc, nullptr);
          return train_loop.Run(kWait);
        });
      });
    }
    scheduler_status = sched.Run();
    for (auto& t : threads) t.join();
    rpcs[0]->Stop();
    scheduler = nullptr;
  }
};

TrainLoopOptions TwoEpochs() {
  TrainLoopOptions loop;
  loop.epochs = 2;
  loop.batch_size = kBatch;
  loop.seed = 7;
  return loop;
}

// The checkpoints under `root` ("step-N"), sorted by name.
std::vector<std::string> CheckpointDirs(const std::string& root) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(TrainLoopTest, EveryWorkerRunsEveryStepOfItsShuffledPartitionAndReportsDone) {
  Job job;
  job.loop = TwoEpochs();
  job.Run();
  ASSERT_TRUE(job.scheduler_status.ok()) << job.scheduler_status.ToString();
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(job.results[w].ok()) << job.results[w].status().ToString();
    EXPECT_EQ(job.results[w]->steps, 10);
    EXPECT_FALSE(job.results[w]->stopped);
    const FakeModel& m = job.models[w];
    ASSERT_EQ(m.steps.size(), 10u);
    EXPECT_EQ(m.after_push_calls, 10);
    // Each epoch covers the partition once, in the order ShuffleIndices gives.
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::vector<uint32_t> order(kSamplesPerWorker);
      for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
      ShuffleIndices(&order, EpochSeed(7, epoch, w));
      std::vector<uint32_t> seen;
      for (int s = 0; s < 5; ++s) {
        const auto& batch = m.steps[epoch * 5 + s];
        seen.insert(seen.end(), batch.begin(), batch.end());
      }
      EXPECT_EQ(seen, order) << "worker " << w << " epoch " << epoch;
    }
  }
  // Mean loss of the last epoch over both workers: every sample once, loss i + 1.
  EXPECT_EQ(job.results[0]->train_loss, 5.5);
}

TEST(TrainLoopTest, CheckpointsAreTakenEveryNStepsAtEpochEndsAndAtTheEnd) {
  testing::TempDir dir;
  Job job;
  job.loop = TwoEpochs();
  job.loop.recovery.checkpoint_every = 3;
  job.checkpoint_dir = dir.path();
  job.Run();
  ASSERT_TRUE(job.scheduler_status.ok()) << job.scheduler_status.ToString();
  EXPECT_EQ(CheckpointDirs(dir.path()),
            (std::vector<std::string>{"step-10", "step-3", "step-6", "step-9"}));

  testing::TempDir epochs_dir;
  Job by_epoch;
  by_epoch.loop = TwoEpochs();
  by_epoch.loop.recovery.checkpoint_epochs = true;
  by_epoch.checkpoint_dir = epochs_dir.path();
  by_epoch.Run();
  ASSERT_TRUE(by_epoch.scheduler_status.ok()) << by_epoch.scheduler_status.ToString();
  EXPECT_EQ(CheckpointDirs(epochs_dir.path()), (std::vector<std::string>{"step-10", "step-5"}));
}

TEST(TrainLoopTest, ResumedRunStartsAtTheCheckpointStepAndRunsOnlyTheStepsAfterIt) {
  testing::TempDir dir;
  Job full;
  full.loop = TwoEpochs();
  full.loop.recovery.checkpoint_every = 3;
  full.checkpoint_dir = dir.path();
  full.Run();
  ASSERT_TRUE(full.scheduler_status.ok()) << full.scheduler_status.ToString();

  // step-6 is epoch 2, step 1 of 5.
  testing::TempDir resumed_dir;
  Job resumed;
  resumed.loop = TwoEpochs();
  resumed.checkpoint_dir = resumed_dir.path();
  resumed.resume_dir = dir.Join("step-6");
  resumed.Run();
  ASSERT_TRUE(resumed.scheduler_status.ok()) << resumed.scheduler_status.ToString();
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(resumed.results[w].ok()) << resumed.results[w].status().ToString();
    EXPECT_EQ(resumed.results[w]->steps, 10);
    const std::vector<std::vector<uint32_t>> after(full.models[w].steps.begin() + 6,
                                                   full.models[w].steps.end());
    EXPECT_EQ(resumed.models[w].steps, after) << "worker " << w;
  }
  // The model's own checkpoint part came back, and the epoch's statistics include the steps
  // before the checkpoint.
  EXPECT_EQ(resumed.models[0].restored_steps, 6);
  EXPECT_EQ(resumed.models[0].steps_taken, 10);
  EXPECT_EQ(resumed.results[0]->train_loss, full.results[0]->train_loss);
}

TEST(TrainLoopTest, EvaluationRunsEveryNStepsInsideEpochsAndAtEveryEpochEnd) {
  testing::TempDir dir;
  Job job;
  job.loop = TwoEpochs();
  job.loop.eval_every = 3;
  job.loop.metrics_out = dir.Join("metrics.jsonl");
  job.Run();
  ASSERT_TRUE(job.scheduler_status.ok()) << job.scheduler_status.ToString();
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(job.models[w].eval_steps, (std::vector<int64_t>{3, 5, 6, 9, 10})) << w;
  }
  ASSERT_TRUE(job.results[0].ok());
  EXPECT_EQ(job.results[0]->last_eval.metrics[0].second, kWorkers * kEvalSamples);
  const std::string metrics = testing::ReadFile(dir.Join("metrics.jsonl"));
  const std::string eval3 = R"({"event":"eval","epoch":1,"step":3,"split":"test","samples":12})";
  const std::string eval5 = R"({"event":"eval","epoch":1,"step":5,"split":"test","samples":12})";
  EXPECT_NE(metrics.find(eval3 + "\n{\"event\":\"train\",\"epoch\":1,"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(eval5 + "\n{\"event\":\"eval\",\"epoch\":2,\"step\":6,"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"("samples":12,"train_seconds":)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(,"fake":true})"), std::string::npos) << metrics;
}

TEST(TrainLoopTest, SigtermAtAPollBecomesACheckpointAtTheNextBoundaryAndAStop) {
  testing::TempDir dir;
  Job job;
  job.loop = TwoEpochs();
  job.loop.poll_samples = 3 * kBatch;  // a signal poll every 3 steps
  job.checkpoint_dir = dir.path();
  // Before the first poll (sent at step 3, answered at the boundary of step 4).
  job.models[0].on_setup = [&job] { job.scheduler->RequestCheckpoint(SIGTERM); };
  job.Run();
  EXPECT_EQ(job.scheduler_status.code(), StatusCode::kCancelled) << job.scheduler_status.ToString();
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(job.results[w].ok()) << job.results[w].status().ToString();
    EXPECT_TRUE(job.results[w]->stopped);
    EXPECT_EQ(job.results[w]->steps, 4);
    EXPECT_EQ(job.models[w].steps.size(), 4u);
  }
  EXPECT_EQ(CheckpointDirs(dir.path()), (std::vector<std::string>{"step-4"}));

  // SIGUSR1: the same checkpoint, and training goes on to the end.
  testing::TempDir usr1_dir;
  Job usr1;
  usr1.loop = job.loop;
  usr1.checkpoint_dir = usr1_dir.path();
  usr1.models[0].on_setup = [&usr1] { usr1.scheduler->RequestCheckpoint(SIGUSR1); };
  usr1.Run();
  ASSERT_TRUE(usr1.scheduler_status.ok()) << usr1.scheduler_status.ToString();
  EXPECT_FALSE(usr1.results[0]->stopped);
  EXPECT_EQ(usr1.models[0].steps.size(), 10u);
  EXPECT_EQ(CheckpointDirs(usr1_dir.path()), (std::vector<std::string>{"step-10", "step-4"}));
}

TEST(TrainLoopTest, ModelErrorInAStepEndsTheRunWithItsStatusAndNoLaterStepRuns) {
  Job job;
  job.loop = TwoEpochs();
  job.models[0].fail_at_step = 3;
  job.Run();
  ASSERT_FALSE(job.results[0].ok());
  EXPECT_EQ(job.results[0].status().code(), StatusCode::kDataLoss);
  EXPECT_NE(job.results[0].status().message().find("fake failure in step 3"), std::string::npos);
  EXPECT_FALSE(job.scheduler_status.ok());
  EXPECT_NE(job.scheduler_status.message().find("fake failure in step 3"), std::string::npos)
      << job.scheduler_status.ToString();
  // Worker 0 stopped in step 3 before pushing it; worker 1 cannot get past step 3 either (its
  // pull of step 4 waits for worker 0's push of step 3).
  EXPECT_EQ(job.models[0].steps.size(), 3u);
  EXPECT_EQ(job.models[0].after_push_calls, 3);
  EXPECT_FALSE(job.results[1].ok());
  EXPECT_LE(job.models[1].steps.size(), 4u);
}

TEST(TrainLoopTest, NonFiniteGradientStopsTheJobNamingStepTableAndKeyBeforeItsCheckpoint) {
  testing::TempDir dir;
  Job job;
  job.loop = TwoEpochs();
  job.loop.recovery.checkpoint_every = 2;
  job.checkpoint_dir = dir.path();
  job.models[1].nan_at_step = 4;  // step 5 (clock 4): after the checkpoint of step 4
  job.models[1].vouches_for_gradients = true;
  job.Run();
  ASSERT_FALSE(job.results[1].ok());
  EXPECT_EQ(job.results[1].status().code(), StatusCode::kNonFinite);
  // Worker 1's batches hold keys 100 + i % 4; the NaN sits in the first unique key's gradient.
  const std::string& message = job.scheduler_status.message();
  EXPECT_EQ(job.scheduler_status.code(), StatusCode::kNonFinite) << message;
  EXPECT_NE(message.find("worker:1: non-finite model at step 5: table 0, key 10"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("the gradient is nan"), std::string::npos) << message;
  EXPECT_NE(message.find("the newest checkpoint, " + dir.Join("step-4")), std::string::npos)
      << message;
  // Never pushed: worker 1 stopped in step 5 and no checkpoint after step 4 exists.
  EXPECT_EQ(job.models[1].steps.size(), 5u);
  EXPECT_EQ(CheckpointDirs(dir.path()), (std::vector<std::string>{"step-2", "step-4"}));
  EXPECT_FALSE(job.results[0].ok());
  EXPECT_EQ(job.results[0].status().code(), StatusCode::kNonFinite)
      << job.results[0].status().ToString();
}

TEST(TrainLoopTest, InfiniteLossWithFiniteGradientsStopsTheJob) {
  Job job;
  job.loop = TwoEpochs();
  job.models[0].nan_loss_at_step = 0;
  job.models[0].vouches_for_gradients = true;  // the loss is checked all the same
  job.Run();
  EXPECT_EQ(job.scheduler_status.code(), StatusCode::kNonFinite);
  EXPECT_NE(job.scheduler_status.message().find(
                "worker:0: non-finite model at step 1: the training loss is inf, every gradient "
                "finite; no checkpoint was written (no --checkpoint-dir)"),
            std::string::npos)
      << job.scheduler_status.message();
}

// The server checks the weights of each row it updates; the optimizer state only when it writes a
// checkpoint (kernels/sparse_optimizer.h: the per-step check of whole rows halved the update).
TEST(TrainLoopTest, StateMadeNonFiniteByAnUpdateStopsTheJobAtTheNextCheckpointWhichIsNotWritten) {
  testing::TempDir dir;
  Job job;
  job.loop = TwoEpochs();
  job.loop.recovery.checkpoint_every = 3;
  job.checkpoint_dir = dir.path();
  // Finite gradients of 3e38: the server's Adagrad accumulator g^2 overflows to inf in step 4
  // (the weights stay finite: the update divides by the accumulator's root).
  job.models[0].huge_from_step = 3;
  job.Run();
  const std::string& message = job.scheduler_status.message();
  EXPECT_EQ(job.scheduler_status.code(), StatusCode::kNonFinite) << message;
  EXPECT_NE(message.find("checkpoint of step 6 failed (non-finite model: table 0, key "),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("checkpoint of step 6 not written"), std::string::npos) << message;
  // step-6.tmp (the abandoned attempt, no manifest) may remain; step-6 itself never exists.
  const std::vector<std::string> dirs = CheckpointDirs(dir.path());
  EXPECT_EQ(dirs.front(), "step-3");
  EXPECT_EQ(std::count(dirs.begin(), dirs.end(), "step-6"), 0);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/step-6.tmp/manifest.json"));
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(job.results[w].status().code(), StatusCode::kNonFinite) << w;
    EXPECT_LE(job.models[w].steps.size(), 8u) << w;
  }
}

// Early stopping: the validation metric of epochs 1..6 is 5, 4, 3.999 (better by less than 0.05 %),
// 4.5, 3, 2; with a patience of 2 training ends after epoch 4 on every worker, and a run resumed
// from a checkpoint inside epoch 4 (after one epoch without improvement) carries the count on and
// ends there too.
TEST(TrainLoopTest, EarlyStoppingEndsTrainingAfterPatienceEpochsWithoutABetterValidationMetric) {
  testing::TempDir dir;
  Job job;
  job.loop = TwoEpochs();
  job.loop.epochs = 6;
  job.loop.early_stop = 2;
  job.loop.recovery.checkpoint_every = 1;
  job.checkpoint_dir = dir.path();
  job.loop.metrics_out = dir.Join("metrics.jsonl");
  for (FakeModel& m : job.models) m.valid_metric = {5, 4, 3.999, 4.5, 3, 2};
  job.Run();
  ASSERT_TRUE(job.scheduler_status.ok()) << job.scheduler_status.ToString();
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(job.results[w].ok()) << job.results[w].status().ToString();
    EXPECT_TRUE(job.results[w]->early_stopped) << w;
    EXPECT_EQ(job.results[w]->epochs_trained, 4) << w;
    EXPECT_EQ(job.models[w].valid_evals, 4) << w;
    EXPECT_EQ(job.models[w].steps.size(), 20u) << w;
  }
  const std::string metrics = testing::ReadFile(dir.Join("metrics.jsonl"));
  EXPECT_NE(metrics.find("\"valid\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"epochs\":4"), std::string::npos) << metrics;

  Job resumed;
  resumed.loop = job.loop;
  resumed.loop.metrics_out.clear();
  resumed.checkpoint_dir = dir.Join("again");
  resumed.resume_dir = dir.Join("step-17");  // epoch 4, step 2 of 5
  for (FakeModel& m : resumed.models) m.valid_metric = job.models[0].valid_metric;
  resumed.Run();
  ASSERT_TRUE(resumed.results[0].ok()) << resumed.results[0].status().ToString();
  EXPECT_TRUE(resumed.results[0]->early_stopped);
  EXPECT_EQ(resumed.results[0]->epochs_trained, 4);
  EXPECT_EQ(resumed.models[0].valid_evals, 1);
}

TEST(TrainLoopTest, WithoutPatienceTheValidationMetricIsRecordedButTrainingRunsAllEpochs) {
  Job job;
  job.loop = TwoEpochs();
  job.loop.epochs = 4;
  for (FakeModel& m : job.models) m.valid_metric = {5, 6, 7, 8};
  job.Run();
  ASSERT_TRUE(job.results[0].ok()) << job.results[0].status().ToString();
  EXPECT_FALSE(job.results[0]->early_stopped);
  EXPECT_EQ(job.results[0]->epochs_trained, 4);
  EXPECT_EQ(job.models[0].valid_evals, 4);
}

}  // namespace
}  // namespace tessera::worker
