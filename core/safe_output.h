// Outputs at paths a user names (convert --output, export --out, --checkpoint-dir,
// --metrics-out): checked before anything is written and replaced only whole.
//
// A file output is written to a temporary name in its target directory, fsync'd and renamed over
// the target (WriteFileAtomically), so a failure or a crash leaves the old file or the new one,
// never a mix. Refused, before anything is written, with InvalidArgument naming the flag:
//   - `/`, a directory, a device node, a FIFO, a socket (anything but a regular file or nothing);
//   - one of the command's inputs (the same file, however it is named: same device and inode).
// A directory output is refused when it is `/`, not a directory, an input, or a non-empty
// directory that Tessera did not write. A directory Tessera writes holds a small marker file
// (kMarkerName, "tessera <kind>"); a directory whose marker names another kind is refused too.
//
// Threads: free functions, no shared state. Paths are reached through POSIX directly (outputs
// are not checkpoint files; the Env of core/env.h stays the checkpoints' seam).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tessera::safe_output {

// The marker file of a directory Tessera writes.
inline constexpr char kMarkerName[] = ".tessera-output";

// A command's input: the flag that names it and its path ("" entries are ignored).
using NamedPath = std::pair<std::string, std::string>;

// OK when `path` may be (re)written as a file output of the command whose inputs are `inputs`:
// it does not exist (its directory does) or is a regular file that is none of the inputs.
// `flag` ("--output") names the output in the message.
Status CheckOutputFile(const std::string& path, const std::string& flag,
                       const std::vector<NamedPath>& inputs);

// Writes `contents` to `path` through a temporary name in the same directory: write, fsync,
// rename, fsync the directory. REQUIRES: CheckOutputFile passed (it is checked again).
Status WriteFileAtomically(const std::string& path, const std::string& flag,
                           const std::string& contents);

// fsyncs the directory that holds `path`, so that a rename into it is durable.
Status SyncParentDir(const std::string& path);

// The temporary name WriteFileAtomically and staged outputs use next to `path`
// ("DIR/.NAME.tmp-PID").
std::string TemporaryPathFor(const std::string& path);

// OK when `dir` may be used as a directory output of kind `kind` ("export", "checkpoints"):
// it does not exist, or is an empty directory, or one whose marker names `kind`, and it is none
// of the inputs. `adopt`, when set, accepts a non-empty directory without a marker whose entries
// it recognises (a checkpoint root written before markers existed).
Status CheckOutputDir(const std::string& dir, const std::string& flag, const std::string& kind,
                      const std::vector<NamedPath>& inputs,
                      bool (*adopt)(const std::vector<std::string>& names) = nullptr);

// CheckOutputDir, then creates `dir` (and its parents) if needed and writes its marker.
Status PrepareOutputDir(const std::string& dir, const std::string& flag, const std::string& kind,
                        const std::vector<NamedPath>& inputs,
                        bool (*adopt)(const std::vector<std::string>& names) = nullptr);

// Writes the marker of `kind` into the existing directory `dir` (atomically).
Status WriteMarker(const std::string& dir, const std::string& kind);

// Moves the complete staging directory `staged` (a sibling of `dir`, holding its marker) to
// `dir`: a rename when `dir` does not exist; else the old `dir` (checked by CheckOutputDir) is
// renamed aside, `staged` renamed into place and the old one deleted.
Status ReplaceDir(const std::string& staged, const std::string& dir, const std::string& flag);

}  // namespace tessera::safe_output
