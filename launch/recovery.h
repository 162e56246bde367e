// The launcher's part of checkpoints and failure handling: resolving --resume and checking that
// the checkpoint fits this job before any node starts; the signal watcher (SIGTERM/SIGUSR1 ask
// for a checkpoint); and the exit watchdog of separate processes.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/env.h"
#include "core/mutex.h"
#include "launch/flags.h"
#include "proto/checkpoint.pb.h"
#include "server/server.h"

namespace tessera::launch {

// The tables as the servers of this job hold them (names, dims, optimizer and its state).
std::vector<proto::TableDescription> DescribeTables(const server::ServerOptions& servers, bool ctr);

struct ResumePoint {
  std::string dir;  // "" = start fresh
  proto::CheckpointManifest manifest;
  // This run's identity (launch/job_identity.h), recorded in the checkpoints it writes.
  std::vector<proto::JobConfigEntry> identity;
  // The checkpoint is the end of training (its position is past the last epoch): nothing is
  // left to train; the job exits 0 without starting a node or writing metrics.
  bool finished = false;
};

// Prepares --checkpoint-dir as an output (core/safe_output.h: refused when it is an input, not
// a directory, or a non-empty directory Tessera did not write; created with its marker), checks
// --resume-override, then resolves --resume (auto: the newest complete checkpoint under
// --checkpoint-dir, or none) and checks the checkpoint against this job: its manifest's checksum
// and fields against its files (core/checkpoint_check.h), the job identity (each differing flag
// named, unless --resume-override allows it), the same model, tables (dims, optimizers) and
// number of workers. The message says which and why. Files are read through `env`.
StatusOr<ResumePoint> PrepareResume(Env* env, const TrainOptions& options,
                                    const std::vector<proto::TableDescription>& tables,
                                    int num_workers);
// The model part of that check (unit-tested).
Status CheckCheckpointFits(const proto::CheckpointManifest& manifest, const std::string& dir,
                           const TrainOptions& options,
                           const std::vector<proto::TableDescription>& tables, int num_workers);

// Puts the checkpoint options, the resume point and the Env into every node's options.
void ApplyRecovery(Env* env, const TrainOptions& options, const ResumePoint& resume,
                   const std::vector<proto::TableDescription>& tables,
                   server::ServerOptions* servers, TrainOptions* nodes);

// Takes SIGTERM and SIGUSR1 (a handler writes them to a pipe) and calls on_signal(signal) for
// each on a thread of its own ("signals"). The destructor restores the default actions.
// REQUIRES: at most one per process.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void(int)> on_signal);
  ~SignalWatcher();  // stops and joins the thread; the signals stay blocked
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  // Replaces the callback (e.g. once the node that handles it exists); returns once a call of
  // the old one in progress has finished. Any thread but the watcher's.
  void SetHandler(std::function<void(int)> on_signal) TS_EXCLUDES(mu_);

 private:
  void Loop() TS_EXCLUDES(mu_);
  Mutex mu_;
  std::function<void(int)> on_signal_ TS_GUARDED_BY(mu_);
  bool stop_ TS_GUARDED_BY(mu_) = false;
  int pipe_[2] = {-1, -1};  // read end: the thread; write end: the handler
  std::thread thread_;
};

// Separate processes only: once the job has failed, a process must not hang (a worker may be
// blocked in an MPI collective with a peer that is gone). Arm() prints the reason as the
// process's `tessera: error:` line and starts the countdown; if the process is still running
// `grace` later, it exits with status 1.
class ExitWatchdog {
 public:
  explicit ExitWatchdog(std::chrono::milliseconds grace);
  ~ExitWatchdog();
  ExitWatchdog(const ExitWatchdog&) = delete;
  ExitWatchdog& operator=(const ExitWatchdog&) = delete;
  void Arm(const Status& reason) TS_EXCLUDES(mu_);  // any thread; the first reason wins
  bool reported() TS_EXCLUDES(mu_);                 // Arm() has printed the error line

 private:
  void Loop() TS_EXCLUDES(mu_);
  const std::chrono::milliseconds grace_;
  Mutex mu_;
  CondVar cv_;
  bool armed_ TS_GUARDED_BY(mu_) = false;
  bool stop_ TS_GUARDED_BY(mu_) = false;
  Status reason_ TS_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace tessera::launch
