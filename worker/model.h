// Model: what a model supplies to the one training loop (worker/train_loop.h). The loop owns
// epochs, resume, shuffling, the pull/compute/push pipeline through the parameter servers,
// checkpoint boundaries, statistics, progress, --metrics-out and the evaluation cadence; a model
// owns its data, its parameters outside the servers, its math and what it prints about itself.
//
// A model never sees a transport, the PsClient or the scheduler: rows arrive as pointers to the
// pulled unique rows of each table, gradients go into the loop's push buffer, and statistics
// across workers go through a WorkerGroup the loop hands it.
//
// Calls, all from the worker's training thread, in this order:
//   Setup -> Summarize -> StartupLines -> [Restore] -> per step: PrepareTrainBatch (one step
//   ahead; two when the loop pulls ahead), ComputeGradients, AfterPush -> at an evaluation:
//   PrepareEvalBatch (one batch ahead) / EvalBatch for each batch, then EndEval -> Finish once
//   training ended without a stop.
// WriteCheckpoint runs at any checkpoint boundary, after every push of this worker was applied.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/message.h"
#include "core/status.h"
#include "proto/checkpoint.pb.h"
#include "proto/tessera.pb.h"
#include "worker/collective.h"
#include "worker/metrics_writer.h"

namespace tessera::worker {

// The other workers of the job, as a model may use them.
class WorkerGroup {
 public:
  virtual ~WorkerGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // `values` combined element-wise over every worker; every worker must make the same Reduce
  // calls in the same order (each is one round). Unavailable / DeadlineExceeded on a lost peer.
  virtual StatusOr<std::vector<double>> Reduce(std::vector<double> values, proto::ReduceOp op) = 0;
  // The dense collective of the job's workers (may be null in a job without one). Its memory
  // space follows the worker's device context: host memory when the context is kCpu (the
  // in-process or MPI collective); when it is kCuda, an NcclCollective whose AllReduceSum and
  // Broadcast take device memory on the worker's device, queued on the context's stream (so they
  // follow the kernels queued before them) and finished when the call returns; AllGather takes
  // host vectors either way (worker/collective.h, worker/nccl_collective.h). Null for kCuda in a
  // build without NCCL. A model does one fused AllReduceSum of its dense gradients per step.
  virtual Collective* collective() = 0;
};

// One batch as a model prepares it ahead of its step. A model derives its own batch type from
// this (NewBatch) and adds the per-sample data its math needs.
struct ModelBatch {
  virtual ~ModelBatch() = default;
  int64_t num_samples = 0;
  // Per table: the batch's keys deduplicated, in order of first occurrence. A table the model
  // does not read this batch stays empty.
  std::vector<std::vector<uint64_t>> unique_keys;
};

// The data an evaluation reads: the test set (--test, reported and never trained on or tuned
// by) or the validation set (--valid, or a fraction held out of the training data) that early
// stopping watches.
enum class EvalSet { kTest, kValid };
inline const char* EvalSetName(EvalSet set) { return set == EvalSet::kTest ? "test" : "valid"; }

// Where the job stands, for a model's start-up and progress lines.
struct JobShape {
  int num_workers = 1;
  int num_servers = 1;
  int epochs = 1;
  int batch_size = 1;
  int64_t steps_per_epoch = 0;
};

// A progress line's numbers (worker 0, about every 2 s).
struct StepProgress {
  int epoch = 0;               // 0-based
  int64_t step = 0;            // steps done in this epoch
  int64_t done_steps = 0;      // steps done since the start of training (epochs before + step)
  int64_t all_steps = 0;       // epochs x steps per epoch
  double elapsed_seconds = 0;  // since this run started its loop
  double loss_sum = 0;         // this worker, this epoch
  int64_t samples = 0;         // this worker, this epoch
  int64_t samples_done = 0;    // this worker, the epochs before
};

// An epoch's statistics, reduced over every worker.
struct EpochStats {
  int epoch = 0;  // 0-based
  double train_loss = 0;
  double samples_per_sec = 0;
  double seconds = 0;  // this worker's time in the epoch's steps
};

// What an evaluation found, the same on every worker.
struct EvalReport {
  // The metrics in the order of the --metrics-out record ({"rmse", ..}, {"mae", ..}).
  MetricValues metrics;
  bool record_step = false;  // the eval record carries the global step
  std::string log_line;      // logged by worker 0 at once, "" for none
  std::string epoch_text;    // appended to the epoch's line
};

class Model {
 public:
  virtual ~Model() = default;

  // Row widths of the server tables, by table id.
  virtual std::vector<int> TableDims() const = 0;
  // Reads this worker's partition of the data and builds what the model holds itself.
  virtual Status Setup(WorkerGroup* group) = 0;
  // The start-up statistics over every worker (the same reductions on each); returns the largest
  // worker's number of training samples. InvalidArgument when there is nothing to train on.
  virtual StatusOr<int64_t> Summarize() = 0;
  // Lines worker 0 logs once the job's shape is known.
  virtual std::vector<std::string> StartupLines(const JobShape& shape) const = 0;
  // Checks the checkpoint to resume from against this job and restores the model's own part.
  virtual Status Restore(const proto::CheckpointManifest& manifest, const std::string& dir) = 0;
  // The model's part of a checkpoint (WorkerCheckpointer::WriteFn after the pushes): its files
  // into `dir`, their entries into *files; `description` is set on worker 0 only.
  virtual Status WriteCheckpoint(const std::string& dir, std::vector<proto::CheckpointFile>* files,
                                 proto::ModelDescription* description) = 0;

  // This worker's training samples (the loop shuffles their indices every epoch).
  virtual int64_t num_train_samples() const = 0;
  // The order of the epoch's training samples (indices into them) for the epoch's seed, of which
  // the steps take `batch_size` in turn: by default all shuffled (ShuffleIndices). The same seed
  // must give the same order, so that a resume inside an epoch continues it. *disjoint_next
  // (cleared first; may stay empty, the default): entry s true when step s + 1's batch reads
  // none of the rows that step s's push updates, so that its pull may go ahead of that push
  // (TrainLoop, proto::FLAG_AHEAD).
  virtual void EpochOrder(uint64_t seed, size_t batch_size, std::vector<uint32_t>* order,
                          std::vector<bool>* disjoint_next) const;
  virtual std::unique_ptr<ModelBatch> NewBatch() const = 0;
  // Fills `batch` with training samples order[0..n).
  virtual void PrepareTrainBatch(const uint32_t* order, size_t n, ModelBatch* batch) = 0;
  // Gradients of the batch's loss: rows[t] holds the pulled rows of table t (unique-key order);
  // grads[t] receives table t's row gradients in the same order (not zeroed; a table with no keys
  // this batch is not written). *loss_sum is the batch's unscaled loss sum. *known_finite arrives
  // false; a model sets it true only when its kernels vouch for the gradients (MF on the CPU:
  // every error was finite and the rows are, so only an overflow could make a gradient
  // non-finite, and the server's row check catches that in the same step); otherwise the loop
  // scans them.
  virtual Status ComputeGradients(const ModelBatch& batch, const std::vector<const float*>& rows,
                                  const std::vector<float*>& grads, double* loss_sum,
                                  bool* known_finite) = 0;
  // After the step's push was sent and the next step's pull started (the dense part of a step).
  virtual Status AfterPush() { return OkStatus(); }

  // Optional staging owned by the model (a CUDA model's pinned buffers), asked for each batch
  // after its Prepare*Batch. PullDestination: where the loop decodes the batch's pulled rows,
  // `total_floats` floats, table after table in unique-key order; null: the loop's own buffers.
  // GradientFrame: a Frame of `total_floats` floats laid out the same way that becomes the
  // step's push, with *writable pointing at it; an empty Frame: the loop allocates one.
  virtual float* PullDestination(const ModelBatch& /*batch*/, uint64_t /*total_floats*/) {
    return nullptr;
  }
  virtual Frame GradientFrame(const ModelBatch& /*batch*/, uint64_t /*total_floats*/,
                              float** /*writable*/) {
    return Frame();
  }

  // Evaluation data: samples, and how many go into one evaluation batch. The evaluation calls
  // below read the set chosen by the last SelectEvalSet (kTest until then); a model without
  // validation data keeps the default has_valid_data() and never gets kValid.
  virtual bool has_valid_data() const { return false; }
  virtual void SelectEvalSet(EvalSet /*set*/) {}
  // Which of EndEval's metrics early stopping watches (lower is better).
  virtual size_t early_stop_metric() const { return 0; }
  virtual bool has_eval_data() const = 0;
  virtual int64_t num_eval_samples() const = 0;
  virtual int64_t eval_batch_size() const = 0;
  // Fills `batch` with evaluation samples [begin, begin + n).
  virtual void PrepareEvalBatch(size_t begin, size_t n, ModelBatch* batch) = 0;
  // Predicts evaluation samples [begin, begin + batch.num_samples) from the pulled rows.
  virtual Status EvalBatch(size_t begin, const ModelBatch& batch,
                           const std::vector<const float*>& rows) = 0;
  // After every batch: the metrics over every worker. `step` is the global step.
  virtual StatusOr<EvalReport> EndEval(int64_t step) = 0;
  // The names of EvalReport::metrics (for the final record when nothing was evaluated).
  virtual std::vector<std::string> MetricNames() const = 0;

  // worker 0's lines.
  virtual std::string ProgressLine(const JobShape& shape, const StepProgress& progress) const = 0;
  virtual std::string EpochLine(const JobShape& shape, const EpochStats& stats,
                                const std::string& eval_text) const = 0;
  // Training ended (not stopped): final checks across workers, lines for worker 0 to log and
  // fields to append to the final --metrics-out record. `last_eval` is the last epoch's
  // evaluation (metrics NaN without one).
  virtual Status Finish(const EvalReport& last_eval, double train_seconds,
                        std::vector<std::string>* log_lines,
                        std::vector<JsonField>* done_fields) = 0;
};

}  // namespace tessera::worker
