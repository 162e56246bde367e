// FaultEnv: an Env (core/env.h) that injects the failures checkpoints must survive, in the
// manner of leveldb's fault-injection Env. It wraps another Env (usually Env::Default()) and
//
//   FailWrites(s)         fails every write to a file whose path contains `s` (EIO);
//   SetDiskBytes(n)       fills the disk: writes fail with ENOSPC once n bytes were written in
//                         all (the bytes that still fit are written, as on a real disk);
//   CrashBeforeRename(s)  the first rename of a path ending in `s` never happens and the process
//                         "dies": that call and every later one that writes, renames, removes
//                         or reads fails (what is on disk stays as it was);
//   SetCreateDelay(d, s)  sleeps d (on the wrapped Env's clock) before creating a file whose
//                         path ends in `s` (a slow disk, so that a test can act mid-write);
//   UseManualClock()      Now() stands still until AdvanceClock(); SleepFor advances it instead
//                         of blocking.
//
// Unit tests construct one directly. A tessera process started by an integration test gets one
// through the single test hook, the environment variable TESSERA_TEST_FAULT_ENV, which
// launch/job.cc reads in exactly one function (tests/README.md documents it), with FromSpec:
//
//   TESSERA_TEST_FAULT_ENV="create_delay_ms=400,create_delay_suffix=.rows"
//   TESSERA_TEST_FAULT_ENV="disk_bytes=1700000"
//
// Threads: every call is thread-safe (the servers' shard threads write at once).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/env.h"
#include "core/mutex.h"

namespace tessera::testing {

class FaultEnv : public EnvWrapper {
 public:
  // Borrows `base`, which must outlive this Env.
  explicit FaultEnv(Env* base = Env::Default()) : EnvWrapper(base) {}

  // Keys: fail_writes=S, disk_bytes=N, crash_before_rename=S, create_delay_ms=N,
  // create_delay_suffix=S (default: every file), manual_clock=1; comma-separated.
  // InvalidArgument naming an unknown key or a bad value.
  static StatusOr<std::unique_ptr<FaultEnv>> FromSpec(Env* base, const std::string& spec);

  void FailWrites(const std::string& path_part);
  void SetDiskBytes(uint64_t bytes);
  void CrashBeforeRename(const std::string& from_suffix);
  void SetCreateDelay(std::chrono::milliseconds delay, const std::string& path_suffix);
  void UseManualClock();
  void AdvanceClock(std::chrono::microseconds duration);

  // Whether the simulated crash has happened.
  bool crashed();
  // Bytes written through this Env so far.
  uint64_t bytes_written();

  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override;
  StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RemoveAll(const std::string& path) override;
  Status CreateDirs(const std::string& dir) override;
  Status SyncDir(const std::string& dir) override;
  Clock::time_point Now() override;
  void SleepFor(std::chrono::microseconds duration) override;

 private:
  class File;
  // Unavailable once crashed (`what`: the call, for the message).
  Status CheckAlive(const std::string& what);
  // How many of `size` bytes for `path` may be written, and the error for the rest (OK: all).
  Status ReserveWrite(const std::string& path, size_t size, size_t* allowed);

  Mutex mu_;
  std::string fail_writes_ TS_GUARDED_BY(mu_);
  bool disk_limited_ TS_GUARDED_BY(mu_) = false;
  uint64_t disk_bytes_ TS_GUARDED_BY(mu_) = 0;
  uint64_t written_ TS_GUARDED_BY(mu_) = 0;
  std::string crash_before_rename_ TS_GUARDED_BY(mu_);
  bool crashed_ TS_GUARDED_BY(mu_) = false;
  std::chrono::milliseconds create_delay_ TS_GUARDED_BY(mu_){0};
  std::string create_delay_suffix_ TS_GUARDED_BY(mu_);
  bool manual_clock_ TS_GUARDED_BY(mu_) = false;
  Clock::time_point now_ TS_GUARDED_BY(mu_);
};

}  // namespace tessera::testing
