#include "worker/recovery.h"

#include "core/checkpoint.h"
#include "core/cluster.h"
#include "core/logging.h"

namespace tessera::worker {
namespace {

// DIR/worker-<rank>.state; appends its entry to *files.
Status WriteWorkerPosition(Env* env, const std::string& dir, int rank,
                           const proto::WorkerCheckpoint& position,
                           std::vector<proto::CheckpointFile>* files) {
  TS_ASSIGN_OR_RETURN(proto::CheckpointFile entry,
                      checkpoint::WriteWorkerPosition(env, dir, rank, position));
  files->push_back(std::move(entry));
  return OkStatus();
}

}  // namespace

WorkerCheckpointer::WorkerCheckpointer(const RecoveryOptions& options, RpcNode* rpc,
                                       int64_t poll_every, std::chrono::milliseconds timeout,
                                       WriteFn write)
    : options_(options),
      rpc_(rpc),
      poll_every_(std::max<int64_t>(poll_every, 1)),
      timeout_(timeout),
      write_(std::move(write)) {
  if (!options.resume_dir.empty()) {
    last_step_written_ = options.resume_manifest.step();
    last_checkpoint_ = options.resume_dir;
  }
}

StatusOr<bool> WorkerCheckpointer::AtBoundary(const proto::WorkerCheckpoint& position,
                                              bool epoch_end, bool final) {
  const int64_t step = position.step();
  if (options_.current_step) options_.current_step->store(step, std::memory_order_relaxed);
  if (options_.checkpoint_dir.empty()) return false;
  bool signalled = false, stop = false;
  if (poll_in_flight_) {
    poll_in_flight_ = false;
    TS_ASSIGN_OR_RETURN(Message reply, RpcNode::Wait(poll_, timeout_, "signal poll"));
    proto::ReduceReply body;
    TS_RETURN_IF_ERROR(ParseControlBody(reply, &body));
    stop = body.stop_requested();
    signalled = body.checkpoint_requested() || stop;
  }
  const bool due = signalled || final || (epoch_end && options_.checkpoint_epochs) ||
                   (options_.checkpoint_every > 0 && step % options_.checkpoint_every == 0);
  if (due && step != last_step_written_) {
    const std::string dir = options_.checkpoint_dir + "/" + checkpoint::TmpDirName(step);
    TS_RETURN_IF_ERROR(checkpoint::MakeDirs(options_.env, dir));
    proto::CheckpointRequest request;
    request.set_step(step);
    request.set_dir(dir);
    request.set_final(final);
    const int rank = rpc_->self().rank;
    std::vector<proto::CheckpointFile> files;
    Status written = write_(dir, &files, rank == 0 ? request.mutable_model() : nullptr);
    if (rank == 0) {
      for (const auto& entry : options_.job_config)
        *request.mutable_model()->add_job_config() = entry;
    }
    if (written.ok()) written = WriteWorkerPosition(options_.env, dir, rank, position, &files);
    // A non-finite model (a push's reply, the dense state) is reported as it is: the job ends
    // with it and the worker names the last good checkpoint (ExplainFailure).
    if (written.code() == StatusCode::kNonFinite) return written;
    if (!written.ok()) {
      return Status(written.code(),
                    "checkpoint of step " + std::to_string(step) + " failed (" + written.message() +
                        "); the previous one is intact; " +
                        checkpoint::ResumeHint(last_checkpoint_, options_.checkpoint_dir));
    }
    for (auto& f : files) *request.add_files() = std::move(f);
    TS_ASSIGN_OR_RETURN(
        Message reply,
        rpc_->CallAndWait(NodeId::Scheduler(),
                          MakeControlMessage(proto::COMMAND_CHECKPOINT, request),
                          // Longer than the scheduler waits for the servers: it reports first.
                          2 * timeout_));
    proto::CheckpointReply committed;
    TS_RETURN_IF_ERROR(ParseControlBody(reply, &committed));
    last_step_written_ = step;
    last_checkpoint_ = committed.path();
    if (rank == 0) TS_LOG(INFO) << "checkpoint " << committed.path() << " complete";
  }
  // A stop request at the end of training changes nothing: the job ends anyway.
  if (stop && !final) return true;
  if (!final && step % poll_every_ == 0) {
    proto::ReduceRequest poll;
    poll.set_round(kSignalPollRound | static_cast<uint64_t>(step));
    poll_ = rpc_->Call(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_REDUCE, poll));
    poll_in_flight_ = true;
  }
  return false;
}

proto::WorkerCheckpoint MakePosition(int64_t step, int epoch, int64_t step_in_epoch,
                                     double loss_sum, int64_t samples, int64_t samples_done,
                                     double train_seconds) {
  proto::WorkerCheckpoint position;
  position.set_step(step);
  position.set_epoch(epoch);
  position.set_step_in_epoch(step_in_epoch);
  position.set_loss_sum(loss_sum);
  position.set_samples(samples);
  position.set_samples_done(samples_done);
  position.set_train_seconds(train_seconds);
  return position;
}

StatusOr<proto::WorkerCheckpoint> StartPosition(const RecoveryOptions& options, const RpcNode& rpc,
                                                int64_t steps_per_epoch) {
  if (options.resume_dir.empty()) return proto::WorkerCheckpoint();
  const int rank = rpc.self().rank;
  TS_ASSIGN_OR_RETURN(proto::WorkerCheckpoint position,
                      checkpoint::ReadWorkerPosition(options.env, options.resume_dir,
                                                     options.resume_manifest, rank));
  if (rank == 0) {
    TS_LOG(INFO) << "resumed from " << options.resume_dir << " at step " << position.step()
                 << " (epoch " << position.epoch() + 1 << ", step " << position.step_in_epoch()
                 << " of " << steps_per_epoch << ")";
  }
  return position;
}

}  // namespace tessera::worker
