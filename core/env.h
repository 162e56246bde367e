// The environment a node reaches files and time through (leveldb's Env): checkpoint files,
// manifests and directories, and the monotonic clock liveness checks read. Production code
// uses Env::Default() (POSIX and std::chrono::steady_clock); tests inject an Env that fails
// writes, fills the disk, crashes before a rename or advances a manual clock
// (tests/testing/fault_env.h), so those failures are in-process unit tests.
//
// Ownership: the launcher (or a test) owns the Env and passes a pointer down through the
// options structs; Env::Default() lives for the whole process. Files returned by an Env are
// owned by the caller and may outlive no Env.
//
// Threads: an Env is used by many threads at once (every shard thread of every server of the
// process), so implementations are thread-safe; a WritableFile or SequentialFile has one user.
//
// Errors: every call returns a Status naming the path and the OS's reason ("No space left on
// device"): NotFound when a file to open or read is missing, Unavailable for the rest.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tessera {

// A file being written from its start.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes all of data[0, size) after what was written before (unbuffered: callers buffer).
  virtual Status Append(const void* data, size_t size) = 0;
  // Flushes the file's data to stable storage (fsync).
  virtual Status Sync() = 0;
  // Closes the file; later calls fail. The destructor closes a file not closed yet.
  virtual Status Close() = 0;
};

// A file read from its start.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Reads up to `size` bytes into `out`; returns how many (0 at the end of the file).
  virtual StatusOr<size_t> Read(void* out, size_t size) = 0;
};

class Env {
 public:
  using Clock = std::chrono::steady_clock;

  virtual ~Env() = default;

  // The POSIX environment with the steady clock. Never null; not to be deleted.
  static Env* Default();

  // Creates `path` (or truncates it).
  virtual StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  // Opens `path` for reading; NotFound when it does not exist.
  virtual StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) = 0;
  // Whether anything (file or directory) exists at `path`.
  virtual bool FileExists(const std::string& path) = 0;
  // The size of the file at `path`; NotFound when it does not exist.
  virtual StatusOr<uint64_t> GetFileSize(const std::string& path) = 0;
  // The names in `dir` (not "." or ".."), in no particular order.
  virtual StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) = 0;
  // Renames a file or directory, replacing a file at `to` (POSIX rename).
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // Deletes `path` and, for a directory, everything under it. OK when it does not exist.
  virtual Status RemoveAll(const std::string& path) = 0;
  // Creates `dir` and its parents; OK when it exists.
  virtual Status CreateDirs(const std::string& dir) = 0;
  // fsyncs a directory, so that a rename or a new file in it is durable.
  virtual Status SyncDir(const std::string& dir) = 0;

  // The monotonic clock of liveness checks and deadlines.
  virtual Clock::time_point Now() = 0;
  // Blocks the calling thread for `duration` of this Env's clock.
  virtual void SleepFor(std::chrono::microseconds duration) = 0;

  // Reads a whole (small) file into *text.
  Status ReadFileToString(const std::string& path, std::string* text);
};

// An Env that forwards every call to another one; fault-injecting Envs override a few calls.
class EnvWrapper : public Env {
 public:
  // Borrows `target`, which must outlive this Env.
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return target_->NewWritableFile(path);
  }
  StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    return target_->NewSequentialFile(path);
  }
  bool FileExists(const std::string& path) override { return target_->FileExists(path); }
  StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    return target_->GetFileSize(path);
  }
  StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override {
    return target_->GetChildren(dir);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  Status RemoveAll(const std::string& path) override { return target_->RemoveAll(path); }
  Status CreateDirs(const std::string& dir) override { return target_->CreateDirs(dir); }
  Status SyncDir(const std::string& dir) override { return target_->SyncDir(dir); }
  Clock::time_point Now() override { return target_->Now(); }
  void SleepFor(std::chrono::microseconds duration) override { target_->SleepFor(duration); }

 private:
  Env* const target_;
};

}  // namespace tessera
