// Cross-checks of a checkpoint's manifest against its files (core/checkpoint.h owns the formats):
// every field a resume or an export depends on must agree with the files it describes, so that a
// manifest edited by hand (and given a matching checksum) or files mixed up between checkpoints
// are refused at once, naming the manifest and the field, instead of hanging a job or exporting
// a wrong model.
//
// Threads: a free function; files are reached through the Env given.
#pragma once

#include <string>

#include "core/env.h"
#include "core/status.h"
#include "proto/checkpoint.pb.h"

namespace tessera::checkpoint {

// Checks, in order, and returns DataLoss naming DIR/manifest.json, the field and the file that
// disagree:
//   - step, num_workers, num_servers and the file names are well-formed;
//   - one worker position file per worker (worker-0 .. worker-<num_workers-1>), each at `step`
//     (read and checksum-checked: they are small);
//   - every row file belongs to a table of model.tables, its header (read) matches its entry and
//     the table's dim and state floats, and each table's num_rows is the sum over its files;
//   - the dense parameters (CTR models): dense.state exists exactly when num_dense_params > 0,
//     holds that many parameters (read and checksum-checked) and every layer lies inside them;
//   - the MF global bias is finite.
// Row files are not read past their headers (a resume checks their checksums when it loads them).
Status CheckManifestAgainstFiles(Env* env, const std::string& dir,
                                 const proto::CheckpointManifest& manifest);

}  // namespace tessera::checkpoint
