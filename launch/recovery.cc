#include "launch/recovery.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/checkpoint.h"
#include "core/checkpoint_check.h"
#include "core/logging.h"
#include "core/safe_output.h"
#include "launch/job_identity.h"
#include "worker/ctr_model.h"
#include "worker/mf_model.h"

namespace tessera::launch {

std::vector<proto::TableDescription> DescribeTables(const server::ServerOptions& servers,
                                                    bool ctr) {
  std::vector<proto::TableDescription> tables;
  for (const server::TableOptions& t : servers.tables) {
    proto::TableDescription d;
    d.set_table_id(t.table_id);
    if (ctr) {
      d.set_name(t.table_id == worker::kEmbeddingTable ? "embedding" : "linear");
    } else {
      d.set_name(t.table_id == worker::kUserTable ? "user" : "item");
    }
    d.set_dim(t.dim);
    d.set_state_floats(kernels::OptimizerStateFloats(t.optimizer.kind, t.dim));
    d.set_optimizer(kernels::OptimizerName(t.optimizer.kind));
    tables.push_back(d);
  }
  return tables;
}

Status CheckCheckpointFits(const proto::CheckpointManifest& manifest, const std::string& dir,
                           const TrainOptions& o,
                           const std::vector<proto::TableDescription>& tables, int num_workers) {
  const proto::ModelDescription& m = manifest.model();
  const std::string where = "checkpoint " + dir + ": ";
  if (m.type() != o.model) {
    return Status::InvalidArgument(where + "it holds a " + m.type() + " model, this run trains " +
                                   o.model);
  }
  if (!o.ctr && m.dim() != o.mf.dim) {
    return Status::InvalidArgument(where + "it has --dim " + std::to_string(m.dim()) +
                                   ", this run " + std::to_string(o.mf.dim));
  }
  if (o.ctr && m.emb_dim() != o.ctr_options.model.emb_dim) {
    return Status::InvalidArgument(where + "it has --emb-dim " + std::to_string(m.emb_dim()) +
                                   ", this run " + std::to_string(o.ctr_options.model.emb_dim));
  }
  if (m.tables_size() != static_cast<int>(tables.size())) {
    return Status::InvalidArgument(where + "it has " + std::to_string(m.tables_size()) +
                                   " tables, this run " + std::to_string(tables.size()));
  }
  for (size_t i = 0; i < tables.size(); ++i) {
    const auto& have = m.tables(static_cast<int>(i));
    const auto& want = tables[i];
    if (have.dim() != want.dim() || have.optimizer() != want.optimizer() ||
        have.state_floats() != want.state_floats()) {
      return Status::InvalidArgument(where + "table " + have.name() + " has rows of " +
                                     std::to_string(have.dim()) + " weights trained with " +
                                     have.optimizer() + ", this run's have " +
                                     std::to_string(want.dim()) + " with " + want.optimizer());
    }
  }
  if (manifest.num_workers() != num_workers) {
    return Status::InvalidArgument(where + "it was written by " +
                                   std::to_string(manifest.num_workers()) +
                                   " workers; a resume needs the same number (this run has " +
                                   std::to_string(num_workers) + "; servers may differ)");
  }
  return OkStatus();
}

StatusOr<ResumePoint> PrepareResume(Env* env, const TrainOptions& o,
                                    const std::vector<proto::TableDescription>& tables,
                                    int num_workers) {
  ResumePoint point;
  TS_RETURN_IF_ERROR(CheckResumeOverrides(o.resume_override));
  if (!o.checkpoint_dir.empty()) {
    TS_RETURN_IF_ERROR(safe_output::PrepareOutputDir(o.checkpoint_dir, "--checkpoint-dir",
                                                     "checkpoints",
                                                     {{"--train", o.mf.train_path},
                                                      {"--test", o.mf.test_path},
                                                      {"--valid", o.mf.valid_path},
                                                      {"--config", o.config_path}},
                                                     checkpoint::LooksLikeCheckpointRoot));
  }
  TS_ASSIGN_OR_RETURN(point.identity, JobIdentity(o));
  if (o.resume.empty()) return point;
  TS_ASSIGN_OR_RETURN(point.dir, checkpoint::ResolveResume(env, o.resume, o.checkpoint_dir));
  if (point.dir.empty()) {
    TS_LOG(INFO) << "--resume auto: no complete checkpoint under " << o.checkpoint_dir
                 << ", starting from scratch";
    return point;
  }
  TS_ASSIGN_OR_RETURN(point.manifest, checkpoint::ReadManifest(env, point.dir));
  TS_RETURN_IF_ERROR(checkpoint::VerifyFiles(env, point.dir, point.manifest, /*checksums=*/false));
  TS_RETURN_IF_ERROR(checkpoint::CheckManifestAgainstFiles(env, point.dir, point.manifest));
  const auto& recorded = point.manifest.model().job_config();
  TS_RETURN_IF_ERROR(CompareJobIdentity({recorded.begin(), recorded.end()}, point.identity,
                                        o.resume_override, point.dir));
  TS_RETURN_IF_ERROR(CheckCheckpointFits(point.manifest, point.dir, o, tables, num_workers));
  TS_ASSIGN_OR_RETURN(const proto::WorkerCheckpoint position,
                      checkpoint::ReadWorkerPosition(env, point.dir, point.manifest, 0));
  if (position.epoch() >= o.mf.epochs) {
    point.finished = true;
    TS_LOG(INFO) << "checkpoint " << point.dir << " is the end of a finished run (step "
                 << point.manifest.step() << ", " << position.epoch() << " of " << o.mf.epochs
                 << " epochs): nothing left to train, no metrics written. To train more, resume "
                    "with a larger --epochs and --resume-override epochs";
    return point;
  }
  if (position.early_stopped() && o.mf.early_stop > 0 &&
      position.epochs_without_improvement() >= o.mf.early_stop) {
    point.finished = true;
    TS_LOG(INFO) << "checkpoint " << point.dir << " is the end of a run that --early-stop ended ("
                 << position.epoch() << " epochs, the best validation metric after epoch "
                 << position.best_valid_epoch()
                 << "): nothing left to train, no metrics written. To train on, resume with a "
                    "larger --early-stop and --resume-override early-stop";
    return point;
  }
  TS_LOG(INFO) << "resuming from " << point.dir << " (step " << point.manifest.step() << ", "
               << point.manifest.num_servers() << " server(s) then, " << o.servers << " now)";
  return point;
}

void ApplyRecovery(Env* env, const TrainOptions& o, const ResumePoint& resume,
                   const std::vector<proto::TableDescription>& tables,
                   server::ServerOptions* servers, TrainOptions* nodes) {
  servers->resume_dir = resume.dir;
  servers->resume_manifest = resume.manifest;
  servers->env = env;
  servers->checkpoint_dir = o.checkpoint_dir;
  for (worker::RecoveryOptions* r : {&nodes->mf.recovery, &nodes->ctr_options.recovery}) {
    r->checkpoint_dir = o.checkpoint_dir;
    r->checkpoint_every = o.checkpoint_every;
    r->checkpoint_epochs = o.checkpoint_epochs;
    r->tables = tables;
    r->resume_dir = resume.dir;
    r->resume_manifest = resume.manifest;
    r->job_config = resume.identity;
    r->env = env;
  }
}

// ---- SignalWatcher ----

namespace {

// The write end of the watcher's pipe. A signal handler can reach nothing else: this is the one
// piece of process-wide state, owned by the (single) SignalWatcher.
std::atomic<int> g_signal_pipe{-1};

void OnSignal(int signal) {
  const int fd = g_signal_pipe.load();
  if (fd < 0) return;
  const unsigned char byte = static_cast<unsigned char>(signal);
  const int saved = errno;
  (void)!write(fd, &byte, 1);  // async-signal-safe; a full pipe drops the repeat
  errno = saved;
}

}  // namespace

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  // A handler rather than sigwait: libraries (OpenBLAS, MPI) start threads before main, and a
  // signal may be delivered to any of them.
  TS_CHECK_EQ(pipe2(pipe_, O_CLOEXEC | O_NONBLOCK), 0) << "pipe2: " << std::strerror(errno);
  TS_CHECK_EQ(g_signal_pipe.exchange(pipe_[1]), -1) << "one SignalWatcher per process";
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
  thread_ = std::thread([this] { Loop(); });
}

SignalWatcher::~SignalWatcher() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  struct sigaction action = {};
  action.sa_handler = SIG_DFL;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGUSR1, &action, nullptr);
  g_signal_pipe.store(-1);
  close(pipe_[0]);
  close(pipe_[1]);
}

void SignalWatcher::SetHandler(std::function<void(int)> on_signal) {
  MutexLock lock(&mu_);
  on_signal_ = std::move(on_signal);
}

void SignalWatcher::Loop() {
  logging::SetThreadLogTag("signals");
  while (true) {
    pollfd fd = {pipe_[0], POLLIN, 0};
    const int ready = poll(&fd, 1, 100);
    unsigned char byte;
    const bool got = ready > 0 && read(pipe_[0], &byte, 1) == 1;
    // The handler runs under mu_, so SetHandler(nullptr) returns only once it has finished
    // and whatever it uses may then be destroyed.
    MutexLock lock(&mu_);
    if (stop_) return;
    if (got && on_signal_) on_signal_(byte);
  }
}

// ---- ExitWatchdog ----

ExitWatchdog::ExitWatchdog(std::chrono::milliseconds grace) : grace_(grace) {
  thread_ = std::thread([this] { Loop(); });
}

ExitWatchdog::~ExitWatchdog() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

void ExitWatchdog::Arm(const Status& reason) {
  MutexLock lock(&mu_);
  if (armed_) return;
  armed_ = true;
  reason_ = reason;
  // Reported now, not when the process ends: under mpirun the first rank to exit gets the
  // others killed, maybe before they reach main's report.
  std::fprintf(stderr, "tessera: error: %s\n", reason.message().c_str());
  std::fflush(stderr);
  cv_.SignalAll();
}

bool ExitWatchdog::reported() {
  MutexLock lock(&mu_);
  return armed_;
}

void ExitWatchdog::Loop() {
  MutexLock lock(&mu_);
  cv_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return armed_ || stop_; });
  if (stop_) return;
  if (cv_.WaitFor(&mu_, grace_, [&]() TS_REQUIRES(mu_) { return stop_; })) return;
  std::fprintf(stderr,
               "tessera: exiting: this process did not finish within %.0f s of the failure\n",
               grace_.count() / 1000.0);
  std::fflush(stderr);
  _exit(1);
}

}  // namespace tessera::launch
