// Checkpoint files on disk (DESIGN.md "Checkpoints and export"; the layout is documented in
// proto/checkpoint.proto): checksummed, fsync'd writes, verified reads, the manifest, and the
// commit protocol that keeps the previous checkpoint intact whatever moment a crash hits:
//
//   every node writes its files into ROOT/step-N.tmp/ (FileWriter: CRC-32 + fsync)
//   the scheduler writes ROOT/step-N.tmp/manifest.json last (WriteManifest)
//   Commit: rename step-N.tmp -> step-N, fsync ROOT, then replace ROOT/latest atomically
//
// Only a directory with a manifest is a checkpoint; a reader trusts nothing the manifest does
// not vouch for (sizes and checksums). All functions return a Status naming the file and why.
// Every file and directory is reached through the Env passed first (core/env.h), borrowed for
// the call (or the object's life), so tests can fail writes, fill the disk or crash before a
// rename. This module owns the files' layouts: the manifest, the worker position files and
// (core/row_file.h) the servers' row files; nothing else reads or writes them by hand.
//
// Threads: everything here is a free function or a single-owner object; no shared state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/env.h"
#include "core/status.h"
#include "proto/checkpoint.pb.h"

namespace tessera::checkpoint {

inline constexpr int kFormatVersion = 1;
inline constexpr char kManifestName[] = "manifest.json";
inline constexpr char kLatestName[] = "latest";

// "step-N" and "step-N.tmp".
std::string StepDirName(int64_t step);
std::string TmpDirName(int64_t step);
// The step of a "step-N" name, or -1 when `name` is not one.
int64_t ParseStepDirName(const std::string& name);

// zlib's CRC-32, continued from `crc` (0 to start).
uint32_t Crc32(const void* data, size_t size, uint32_t crc = 0);

// Writes one file through a buffer, keeping its size and CRC-32; Finish() fsyncs it.
class FileWriter {
 public:
  // Creates (or truncates) `path`. Unavailable with the OS's reason when it cannot.
  static StatusOr<std::unique_ptr<FileWriter>> Create(Env* env, const std::string& path);
  ~FileWriter();
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;

  // Unavailable naming the file on a failed write (a full disk: "No space left on device").
  Status Append(const void* data, size_t size);
  // Flushes, fsyncs and closes; returns the file's entry (name = base name, size, crc32).
  StatusOr<proto::CheckpointFile> Finish();

 private:
  FileWriter(std::unique_ptr<WritableFile> file, std::string path);
  Status Flush();

  std::unique_ptr<WritableFile> file_;  // null after Finish
  std::string path_;
  std::vector<char> buffer_;
  size_t used_ = 0;
  uint64_t size_ = 0;
  uint32_t crc_ = 0;
};

// Reads one file of a checkpoint, checking it against its manifest entry: the size when opened,
// the CRC-32 once everything has been read (Finish).
class FileReader {
 public:
  // NotFound if the file is missing; DataLoss if its size differs from the entry's.
  static StatusOr<std::unique_ptr<FileReader>> Open(Env* env, const std::string& dir,
                                                    const proto::CheckpointFile& entry);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Reads exactly `size` bytes; DataLoss if the file ends first.
  Status Read(void* out, size_t size);
  // DataLoss unless the whole file was read and its CRC-32 matches the entry's.
  Status Finish();
  const std::string& path() const { return path_; }

 private:
  FileReader(std::unique_ptr<SequentialFile> file, std::string path, proto::CheckpointFile entry);

  std::unique_ptr<SequentialFile> file_;
  std::string path_;
  proto::CheckpointFile entry_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;
  uint64_t consumed_ = 0;
  uint32_t crc_ = 0;
};

// A protobuf message as one checkpoint file (worker positions, dense state).
StatusOr<proto::CheckpointFile> WriteProtoFile(Env* env, const std::string& path,
                                               const google::protobuf::MessageLite& message);
Status ReadProtoFile(Env* env, const std::string& dir, const proto::CheckpointFile& entry,
                     google::protobuf::MessageLite* message);

// A worker's position (proto::WorkerCheckpoint) as DIR/worker-<rank>.state: the entry, of kind
// KIND_WORKER, to list in the manifest.
std::string WorkerPositionFileName(int rank);
StatusOr<proto::CheckpointFile> WriteWorkerPosition(Env* env, const std::string& dir, int rank,
                                                    const proto::WorkerCheckpoint& position);
// Worker `rank`'s position in the checkpoint at `dir` (checksum checked). InvalidArgument when
// the manifest has none (a checkpoint written by fewer workers).
StatusOr<proto::WorkerCheckpoint> ReadWorkerPosition(Env* env, const std::string& dir,
                                                     const proto::CheckpointManifest& manifest,
                                                     int rank);

// A message in protobuf's JSON mapping (field names as in the .proto, defaults printed), and back.
std::string ToJson(const google::protobuf::Message& message);
Status FromJson(const std::string& json, const std::string& what,
                google::protobuf::Message* message);

// DIR/manifest.json, fsync'd (written through a temporary name and renamed).
Status WriteManifest(Env* env, const std::string& dir, const proto::CheckpointManifest& manifest);
// NotFound when `dir` has no manifest (not a complete checkpoint); DataLoss when it does not
// parse or names another format version.
StatusOr<proto::CheckpointManifest> ReadManifest(Env* env, const std::string& dir);
// The manifest's entry for `name`, or nullptr.
const proto::CheckpointFile* FindFile(const proto::CheckpointManifest& manifest,
                                      const std::string& name);

// Every file of the manifest exists with its recorded size; with `checksums` also reads each
// one and compares its CRC-32. The first problem, naming the file.
Status VerifyFiles(Env* env, const std::string& dir, const proto::CheckpointManifest& manifest,
                   bool checksums);

// Makes ROOT/step-N.tmp (with its manifest) the checkpoint ROOT/step-N and points ROOT/latest at
// it. A crash before the rename leaves only a .tmp directory; after it, a complete checkpoint.
Status Commit(Env* env, const std::string& root, int64_t step);
// After committing step `committed`: deletes all but the newest `keep` complete checkpoints of
// ROOT up to that step (keep <= 0: keep all). Checkpoints of later steps (left by a run this
// one resumed before the end of) are not this run's to delete and stay.
Status Prune(Env* env, const std::string& root, int keep, int64_t committed);
// Cleans up after a crash: a step-N.tmp directory with a manifest (the crash hit between the
// manifest and the rename) becomes step-N when there is none; every other one is deleted.
void RemoveIncomplete(Env* env, const std::string& root);
// The checkpoint to resume from under ROOT ("" if there is none): the one `latest` names if it
// has a manifest, else the highest step-N with one.
std::string FindLatest(Env* env, const std::string& root);
// --resume: "auto" (the newest under `root`, "" when there is none), a checkpoint directory, or
// a root that holds `latest`. NotFound with the reason when a named one has no manifest. `flag`
// is the option the messages name (`tessera export` takes --checkpoint).
StatusOr<std::string> ResolveResume(Env* env, const std::string& resume, const std::string& root,
                                    const std::string& flag = "--resume");

// The end of every failure message: "last complete checkpoint DIR/step-N: continue with --resume
// DIR/step-N (or --resume auto --checkpoint-dir DIR)", or that there is none. `root` is the
// job's --checkpoint-dir ("" when it has none).
std::string ResumeHint(const std::string& last_checkpoint, const std::string& root);

// Creates a directory and its parents (OK if it exists).
Status MakeDirs(Env* env, const std::string& dir);
// fsync a directory, so a rename or new file in it is durable.
Status SyncDir(Env* env, const std::string& dir);

}  // namespace tessera::checkpoint
