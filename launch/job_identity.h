// A job's identity: the configuration that defines its model and its data (model, dims,
// optimizers and their hyper-parameters, epochs and batch size, data files with a fingerprint of
// their beginning, seeds). Worker 0 records it in every checkpoint (ModelDescription.job_config);
// a resume compares it with its own and stops with exit 2 naming each flag that differs, old and
// new value, unless --resume-override lists it. Options that do not change the model (servers,
// threads, device, timeouts, checkpoint and metrics paths, --deterministic) are not part of it.
//
// Threads: free functions, no shared state.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "launch/flags.h"
#include "proto/checkpoint.pb.h"

namespace tessera::launch {

// The flags (without dashes) that can be part of an identity, i.e. what --resume-override takes.
const std::vector<std::string>& IdentityFlags();

// "PATH (N bytes, first MiB CRC-32 0x........)": a data file's fingerprint. InvalidArgument when
// it cannot be read.
StatusOr<std::string> DataFingerprint(const std::string& path);

// This run's identity, in a fixed order (the data files are read for their fingerprints).
StatusOr<std::vector<proto::JobConfigEntry>> JobIdentity(const TrainOptions& options);

// OK when `overrides` names only flags of IdentityFlags() (with or without leading dashes); else
// InvalidArgument naming the first that is not.
Status CheckResumeOverrides(const std::vector<std::string>& overrides);

// Compares the identity recorded in the checkpoint at `dir` with this run's: InvalidArgument
// listing every flag whose value differs (and is not in `overrides`), with the checkpoint's and
// this run's value, e.g. "checkpoint ck/step-40 was written by a job with a different
// configuration: --lr 0.05 (this run: 0.1); resume with the same flags, start a new
// --checkpoint-dir, or allow the change with --resume-override lr". The overridden differences
// are logged. A flag present on one side only counts as different.
Status CompareJobIdentity(const std::vector<proto::JobConfigEntry>& checkpoint,
                          const std::vector<proto::JobConfigEntry>& run,
                          const std::vector<std::string>& overrides, const std::string& dir);

}  // namespace tessera::launch
