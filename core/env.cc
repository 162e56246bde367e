#include "core/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

namespace tessera {
namespace {

std::string Errno(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) close(fd_);
  }

  Status Append(const void* data, size_t size) override {
    if (fd_ < 0) return Status::Internal("write to " + path_ + " after Close");
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = write(fd_, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::Unavailable(Errno("cannot write", path_));
      p += n;
      size -= static_cast<size_t>(n);
    }
    return OkStatus();
  }

  Status Sync() override {
    if (fsync(fd_) != 0) return Status::Unavailable(Errno("cannot fsync", path_));
    return OkStatus();
  }

  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && close(fd) != 0) return Status::Unavailable(Errno("cannot close", path_));
    return OkStatus();
  }

 private:
  int fd_;
  const std::string path_;
};

class PosixSequentialFile : public SequentialFile {
 public:
  PosixSequentialFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixSequentialFile() override { close(fd_); }

  StatusOr<size_t> Read(void* out, size_t size) override {
    ssize_t n;
    do {
      n = read(fd_, out, size);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return Status::Unavailable(Errno("cannot read", path_));
    return static_cast<size_t>(n);
  }

 private:
  const int fd_;
  const std::string path_;
};

class PosixEnv : public Env {
 public:
  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status::Unavailable(Errno("cannot create", path));
    return std::unique_ptr<WritableFile>(new PosixWritableFile(fd, path));
  }

  StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound(Errno("cannot open", path));
      return Status::Unavailable(Errno("cannot open", path));
    }
    return std::unique_ptr<SequentialFile>(new PosixSequentialFile(fd, path));
  }

  bool FileExists(const std::string& path) override {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
  }

  StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::NotFound(Errno("cannot stat", path));
      return Status::Unavailable(Errno("cannot stat", path));
    }
    return static_cast<uint64_t>(st.st_size);
  }

  StatusOr<std::vector<std::string>> GetChildren(const std::string& dir) override {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) return Status::NotFound(Errno("cannot list", dir));
      return Status::Unavailable(Errno("cannot list", dir));
    }
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        names.emplace_back(e->d_name);
      }
    }
    closedir(d);
    return names;
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (std::rename(from.c_str(), to.c_str()) != 0) {
      return Status::Unavailable(Errno("cannot rename " + from + " to", to));
    }
    return OkStatus();
  }

  Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec) return Status::Unavailable("cannot delete " + path + ": " + ec.message());
    return OkStatus();
  }

  Status CreateDirs(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::Unavailable("cannot create directory " + dir + ": " + ec.message());
    return OkStatus();
  }

  Status SyncDir(const std::string& dir) override {
    const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::Unavailable(Errno("cannot open directory", dir));
    const int rc = fsync(fd);
    close(fd);
    if (rc != 0) return Status::Unavailable(Errno("cannot fsync directory", dir));
    return OkStatus();
  }

  Clock::time_point Now() override { return Clock::now(); }

  void SleepFor(std::chrono::microseconds duration) override {
    std::this_thread::sleep_for(duration);
  }
};

}  // namespace

Env* Env::Default() {
  static PosixEnv* const env = new PosixEnv;  // never destroyed: threads may use it at exit
  return env;
}

Status Env::ReadFileToString(const std::string& path, std::string* text) {
  TS_ASSIGN_OR_RETURN(auto file, NewSequentialFile(path));
  text->clear();
  char buffer[8192];
  while (true) {
    TS_ASSIGN_OR_RETURN(size_t n, file->Read(buffer, sizeof(buffer)));
    if (n == 0) return OkStatus();
    text->append(buffer, n);
  }
}

}  // namespace tessera
