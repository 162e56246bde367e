// Command-line flags and --config files -> typed options, validated once. Every option of
// `tessera train` is a flag; `--config FILE` reads the same options from an INI file (sections
// are allowed and ignored for lookup: `[model]` + `dim = 32` sets --dim), and flags override it.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_optimizer.h"
#include "launch/device_assignment.h"
#include "launch/export.h"
#include "worker/ctr_task.h"
#include "worker/data/criteo_gen.h"
#include "worker/data/rating_gen.h"
#include "worker/mf_model.h"

namespace tessera::launch {

enum class TransportKind { kInProc, kZmq };

struct TrainOptions {
  TrainOptions() { optimizer.lr = 0.02f; }  // tuned with the MF defaults on MovieLens 100K

  std::string model = "mf";
  bool ctr = false;                           // a CTR model (lr, fm, deepfm, wide_deep, dcn_v2)
  worker::MfTrainerOptions mf;                // data, model and loop options (mf)
  worker::CtrTrainerOptions ctr_options;      // data, model and loop options (CTR models)
  kernels::OptimizerParams linear_optimizer;  // CTR: the 1-dim first-order table
  kernels::OptimizerParams optimizer;         // for the embedding rows, on the servers
  float init_std = 0.01f;                     // factors start as N(0, init_std^2); biases at 0
  uint64_t init_seed = 0;                     // row initialisation seed (from --seed)
  int servers = 1;
  int workers = 1;             // under MPI: the ranks left after scheduler and servers
  bool workers_given = false;  // --workers was set explicitly
  int server_threads = 1;
  int threads_per_shard = 0;  // ServerOptions::threads_per_shard; 0: automatic (launch/job.cc)
  bool deterministic = false;
  // --device: resolved per worker by launch/job.cc (launch/device_assignment.h); mf.device says
  // cuda here only for --device cuda, and the job sets it to the resolved device.
  DeviceChoice device = DeviceChoice::kCpu;
  std::vector<int> devices;  // --devices: this host's CUDA ordinals in local order; empty: all
  TransportKind transport = TransportKind::kInProc;
  // --shared-memory auto: ZeroMQ peers on one host pass large frames through shared memory
  // (core/shared_frames.h) once a start-up check shows every process can map the others'.
  bool shared_memory = true;
  // Authentication of a multi-process job (core/auth.h): the job secret's file (--auth-key; ""
  // : rank 0 generates one per job and hands it out over MPI), and --insecure (the NULL
  // mechanism, loopback only).
  std::string auth_key_path;
  bool insecure = false;
  std::chrono::milliseconds register_timeout{120000};
  int verbosity = 0;
  bool embedded_default = false;  // no --train: generate a planted set and train on it
  worker::RatingGenOptions embedded_data;
  std::string config_path;
  std::string summary;        // "option = value" lines, printed at start-up
  std::string defaults_line;  // the flags chosen for the data's size (launch/auto_defaults.h)
  // Checkpoints and resume (the workers' part lives in mf.recovery / ctr_options.recovery,
  // filled in by the launcher).
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  bool checkpoint_epochs = false;
  int keep_checkpoints = 0;
  std::string resume;  // "" | "auto" | a checkpoint directory
  // --resume-override: identity flags (launch/job_identity.h) allowed to differ from the
  // checkpoint's, without dashes.
  std::vector<std::string> resume_override;
  std::chrono::milliseconds heartbeat_timeout{6000};
};

// The result of parsing: either options, or "exit now with `exit_code`" after printing `text`
// (help is exit 0 on stdout; an error is exit 2 with one line on stderr).
struct ParseOutcome {
  bool run = false;
  int exit_code = 0;
  std::string text;
};

// `args` are the arguments after "train".
ParseOutcome ParseTrainOptions(const std::vector<std::string>& args, TrainOptions* options);
// `args` are the arguments after "gen ratings".
ParseOutcome ParseGenRatingsOptions(const std::vector<std::string>& args,
                                    worker::RatingGenOptions* options, std::string* out_dir);
// `args` are the arguments after "gen criteo".
ParseOutcome ParseGenCriteoOptions(const std::vector<std::string>& args,
                                   worker::CriteoGenOptions* options, std::string* out_dir);
// `args` are the arguments after "convert".
ParseOutcome ParseConvertOptions(const std::vector<std::string>& args, worker::CtrReadOptions* read,
                                 std::string* input, std::string* output);

// `args` are the arguments after "export".
ParseOutcome ParseExportOptions(const std::vector<std::string>& args, ExportOptions* options);
// `args` are the arguments after "recommend".
ParseOutcome ParseRecommendOptions(const std::vector<std::string>& args, RecommendOptions* options);
// `args` are the arguments after "keygen"; `out` receives --out.
ParseOutcome ParseKeygenOptions(const std::vector<std::string>& args, std::string* out);

}  // namespace tessera::launch
