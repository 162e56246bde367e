#include "tests/testing/fault_env.h"

#include <cerrno>
#include <cstring>
#include <sstream>

namespace tessera::testing {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool ParseUint(const std::string& text, uint64_t* value) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return false;
  errno = 0;
  *value = std::strtoull(text.c_str(), nullptr, 10);
  return errno == 0;
}

}  // namespace

// A file of the wrapped Env whose writes are checked against the faults first.
class FaultEnv::File : public WritableFile {
 public:
  File(FaultEnv* env, std::unique_ptr<WritableFile> target, std::string path)
      : env_(env), target_(std::move(target)), path_(std::move(path)) {}

  Status Append(const void* data, size_t size) override {
    size_t allowed = size;
    Status fault = env_->ReserveWrite(path_, size, &allowed);
    if (allowed > 0) TS_RETURN_IF_ERROR(target_->Append(data, allowed));
    return fault;
  }
  Status Sync() override {
    TS_RETURN_IF_ERROR(env_->CheckAlive("fsync " + path_));
    return target_->Sync();
  }
  Status Close() override { return target_->Close(); }

 private:
  FaultEnv* const env_;
  const std::unique_ptr<WritableFile> target_;
  const std::string path_;
};

StatusOr<std::unique_ptr<FaultEnv>> FaultEnv::FromSpec(Env* base, const std::string& spec) {
  auto env = std::make_unique<FaultEnv>(base);
  std::stringstream items(spec);
  std::string item;
  std::chrono::milliseconds delay{0};
  std::string suffix;
  while (std::getline(items, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    uint64_t number = 0;
    const bool is_number = ParseUint(value, &number);
    if (key == "fail_writes" && !value.empty()) {
      env->FailWrites(value);
    } else if (key == "disk_bytes" && is_number) {
      env->SetDiskBytes(number);
    } else if (key == "crash_before_rename" && !value.empty()) {
      env->CrashBeforeRename(value);
    } else if (key == "create_delay_ms" && is_number) {
      delay = std::chrono::milliseconds(number);
    } else if (key == "create_delay_suffix") {
      suffix = value;
    } else if (key == "manual_clock" && value == "1") {
      env->UseManualClock();
    } else {
      return Status::InvalidArgument("fault environment: bad item '" + item + "' in '" + spec +
                                     "'");
    }
  }
  if (delay.count() > 0) env->SetCreateDelay(delay, suffix);
  return env;
}

void FaultEnv::FailWrites(const std::string& path_part) {
  MutexLock lock(&mu_);
  fail_writes_ = path_part;
}

void FaultEnv::SetDiskBytes(uint64_t bytes) {
  MutexLock lock(&mu_);
  disk_limited_ = true;
  disk_bytes_ = bytes;
}

void FaultEnv::CrashBeforeRename(const std::string& from_suffix) {
  MutexLock lock(&mu_);
  crash_before_rename_ = from_suffix;
}

void FaultEnv::SetCreateDelay(std::chrono::milliseconds delay, const std::string& path_suffix) {
  MutexLock lock(&mu_);
  create_delay_ = delay;
  create_delay_suffix_ = path_suffix;
}

void FaultEnv::UseManualClock() {
  MutexLock lock(&mu_);
  manual_clock_ = true;
  now_ = Clock::time_point() + std::chrono::hours(1);
}

void FaultEnv::AdvanceClock(std::chrono::microseconds duration) {
  MutexLock lock(&mu_);
  now_ += duration;
}

bool FaultEnv::crashed() {
  MutexLock lock(&mu_);
  return crashed_;
}

uint64_t FaultEnv::bytes_written() {
  MutexLock lock(&mu_);
  return written_;
}

Status FaultEnv::CheckAlive(const std::string& what) {
  MutexLock lock(&mu_);
  if (crashed_) return Status::Unavailable("cannot " + what + ": the process crashed (simulated)");
  return OkStatus();
}

Status FaultEnv::ReserveWrite(const std::string& path, size_t size, size_t* allowed) {
  MutexLock lock(&mu_);
  *allowed = 0;
  if (crashed_) {
    return Status::Unavailable("cannot write " + path + ": the process crashed (simulated)");
  }
  if (!fail_writes_.empty() && path.find(fail_writes_) != std::string::npos) {
    return Status::Unavailable("cannot write " + path + ": " + std::strerror(EIO));
  }
  if (disk_limited_ && written_ + size > disk_bytes_) {
    *allowed = static_cast<size_t>(disk_bytes_ - written_);
    written_ = disk_bytes_;
    return Status::Unavailable("cannot write " + path + ": " + std::strerror(ENOSPC));
  }
  *allowed = size;
  written_ += size;
  return OkStatus();
}

StatusOr<std::unique_ptr<WritableFile>> FaultEnv::NewWritableFile(const std::string& path) {
  TS_RETURN_IF_ERROR(CheckAlive("create " + path));
  std::chrono::milliseconds delay{0};
  {
    MutexLock lock(&mu_);
    if (create_delay_.count() > 0 && EndsWith(path, create_delay_suffix_)) delay = create_delay_;
  }
  if (delay.count() > 0) target()->SleepFor(delay);
  TS_ASSIGN_OR_RETURN(auto file, target()->NewWritableFile(path));
  return std::unique_ptr<WritableFile>(new File(this, std::move(file), path));
}

StatusOr<std::unique_ptr<SequentialFile>> FaultEnv::NewSequentialFile(const std::string& path) {
  TS_RETURN_IF_ERROR(CheckAlive("open " + path));
  return target()->NewSequentialFile(path);
}

StatusOr<std::vector<std::string>> FaultEnv::GetChildren(const std::string& dir) {
  TS_RETURN_IF_ERROR(CheckAlive("list " + dir));
  return target()->GetChildren(dir);
}

Status FaultEnv::RenameFile(const std::string& from, const std::string& to) {
  {
    MutexLock lock(&mu_);
    if (!crashed_ && !crash_before_rename_.empty() && EndsWith(from, crash_before_rename_)) {
      crashed_ = true;
    }
  }
  TS_RETURN_IF_ERROR(CheckAlive("rename " + from + " to " + to));
  return target()->RenameFile(from, to);
}

Status FaultEnv::RemoveAll(const std::string& path) {
  TS_RETURN_IF_ERROR(CheckAlive("delete " + path));
  return target()->RemoveAll(path);
}

Status FaultEnv::CreateDirs(const std::string& dir) {
  TS_RETURN_IF_ERROR(CheckAlive("create directory " + dir));
  return target()->CreateDirs(dir);
}

Status FaultEnv::SyncDir(const std::string& dir) {
  TS_RETURN_IF_ERROR(CheckAlive("fsync directory " + dir));
  return target()->SyncDir(dir);
}

Env::Clock::time_point FaultEnv::Now() {
  {
    MutexLock lock(&mu_);
    if (manual_clock_) return now_;
  }
  return target()->Now();
}

void FaultEnv::SleepFor(std::chrono::microseconds duration) {
  {
    MutexLock lock(&mu_);
    if (manual_clock_) {
      now_ += duration;
      return;
    }
  }
  target()->SleepFor(duration);
}

}  // namespace tessera::testing
