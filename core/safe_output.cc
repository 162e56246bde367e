#include "core/safe_output.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/env.h"

namespace tessera::safe_output {
namespace {

std::string Quote(const std::string& flag, const std::string& path) { return flag + " " + path; }

std::string Errno(int err) { return std::strerror(err); }

// `path` without trailing slashes ("/" stays).
std::string Trimmed(const std::string& path) {
  const size_t end = path.find_last_not_of('/');
  return end == std::string::npos ? path.substr(0, 1) : path.substr(0, end + 1);
}

// The directory part of `path` ("." for a bare name).
std::string DirName(const std::string& path) {
  const std::string parent = std::filesystem::path(Trimmed(path)).parent_path().string();
  return parent.empty() ? "." : parent;
}

std::string BaseName(const std::string& path) {
  return std::filesystem::path(Trimmed(path)).filename().string();
}

const char* KindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file";
}

bool IsRoot(const std::string& path) {
  if (!path.empty() && path.find_first_not_of('/') == std::string::npos) return true;
  char resolved[PATH_MAX];
  return realpath(path.c_str(), resolved) != nullptr && std::strcmp(resolved, "/") == 0;
}

// The canonical path of an existing `path`, or "".
std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  return realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : std::string();
}

// InvalidArgument when `st` (the output, which exists) is one of the inputs, or (for a directory
// output) holds one.
Status CheckNotInput(const std::string& path, const struct stat& st, const std::string& flag,
                     const std::vector<NamedPath>& inputs, bool directory) {
  const std::string real = directory ? RealPath(path) : std::string();
  for (const auto& [input_flag, input] : inputs) {
    if (input.empty()) continue;
    struct stat in;
    if (stat(input.c_str(), &in) != 0) continue;
    if (in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
      return Status::InvalidArgument(Quote(flag, path) + " is the " + Quote(input_flag, input) +
                                     " of this command: writing it would destroy the input");
    }
    const std::string real_input = RealPath(input);
    if (directory && !real.empty() && real_input.compare(0, real.size() + 1, real + "/") == 0) {
      return Status::InvalidArgument(Quote(flag, path) + " holds the " + Quote(input_flag, input) +
                                     " of this command: replacing it would destroy the input");
    }
  }
  return OkStatus();
}

Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Unavailable("cannot open " + dir + ": " + Errno(errno));
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return Status::Unavailable("cannot fsync " + dir + ": " + Errno(err));
  return OkStatus();
}

std::string MarkerText(const std::string& kind) { return "tessera " + kind + "\n"; }

}  // namespace

Status SyncParentDir(const std::string& path) { return SyncDir(DirName(path)); }

std::string TemporaryPathFor(const std::string& path) {
  const std::string dir = DirName(path);
  return (dir == "/" ? "" : dir) + "/." + BaseName(path) + ".tmp-" + std::to_string(getpid());
}

Status CheckOutputFile(const std::string& path, const std::string& flag,
                       const std::vector<NamedPath>& inputs) {
  if (path.empty()) return Status::InvalidArgument(flag + " is empty");
  if (IsRoot(path)) return Status::InvalidArgument(Quote(flag, path) + " is the root directory");
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return Status::InvalidArgument("cannot use " + Quote(flag, path) + ": " + Errno(errno));
    }
    const std::string dir = DirName(path);
    struct stat dir_st;
    if (stat(dir.c_str(), &dir_st) != 0 || !S_ISDIR(dir_st.st_mode)) {
      return Status::InvalidArgument(Quote(flag, path) + ": its directory " + dir +
                                     " does not exist");
    }
    return OkStatus();
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(Quote(flag, path) + " is " + KindOf(st.st_mode) +
                                   ", not a file Tessera may replace");
  }
  return CheckNotInput(path, st, flag, inputs, /*directory=*/false);
}

Status WriteFileAtomically(const std::string& path, const std::string& flag,
                           const std::string& contents) {
  TS_RETURN_IF_ERROR(CheckOutputFile(path, flag, {}));
  const std::string tmp = TemporaryPathFor(path);
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Unavailable("cannot create " + tmp + ": " + Errno(errno));
  const char* p = contents.data();
  size_t left = contents.size();
  int err = 0;
  while (left > 0) {
    const ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (err == 0 && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    unlink(tmp.c_str());
    return Status::Unavailable("cannot write " + Quote(flag, path) + ": " + Errno(err));
  }
  return SyncDir(DirName(path));
}

Status CheckOutputDir(const std::string& dir, const std::string& flag, const std::string& kind,
                      const std::vector<NamedPath>& inputs,
                      bool (*adopt)(const std::vector<std::string>& names)) {
  if (dir.empty()) return Status::InvalidArgument(flag + " is empty");
  if (IsRoot(dir)) return Status::InvalidArgument(Quote(flag, dir) + " is the root directory");
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return OkStatus();
    return Status::InvalidArgument("cannot use " + Quote(flag, dir) + ": " + Errno(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument(Quote(flag, dir) + " is " + KindOf(st.st_mode) +
                                   ", not a directory");
  }
  TS_RETURN_IF_ERROR(CheckNotInput(dir, st, flag, inputs, /*directory=*/true));
  StatusOr<std::vector<std::string>> listed = Env::Default()->GetChildren(dir);
  if (!listed.ok()) return Status::InvalidArgument(listed.status().message());
  std::vector<std::string> names = std::move(*listed);
  // Another process of the same job writing the marker at this moment.
  const std::string marker_tmp = "." + std::string(kMarkerName) + ".tmp-";
  names.erase(std::remove_if(names.begin(), names.end(),
                             [&](const std::string& n) { return n.rfind(marker_tmp, 0) == 0; }),
              names.end());
  if (names.empty()) return OkStatus();
  const std::string marker = dir + "/" + kMarkerName;
  int fd = open(marker.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd >= 0) {
    char buf[64];
    const ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    const std::string text = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    if (text == MarkerText(kind)) return OkStatus();
    return Status::InvalidArgument(Quote(flag, dir) + " holds another Tessera output (its " +
                                   kMarkerName + " does not say \"tessera " + kind + "\")");
  }
  if (adopt != nullptr && adopt(names)) return OkStatus();
  return Status::InvalidArgument(Quote(flag, dir) + " is a non-empty directory that Tessera did " +
                                 "not write (no " + kMarkerName +
                                 " in it): choose a new or empty " + "directory");
}

Status WriteMarker(const std::string& dir, const std::string& kind) {
  return WriteFileAtomically(dir + "/" + kMarkerName, "the marker of", MarkerText(kind));
}

Status PrepareOutputDir(const std::string& dir, const std::string& flag, const std::string& kind,
                        const std::vector<NamedPath>& inputs,
                        bool (*adopt)(const std::vector<std::string>& names)) {
  TS_RETURN_IF_ERROR(CheckOutputDir(dir, flag, kind, inputs, adopt));
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return Status::InvalidArgument("cannot create " + Quote(flag, dir) + ": " + error.message());
  }
  return WriteMarker(dir, kind);
}

Status ReplaceDir(const std::string& staged, const std::string& dir, const std::string& flag) {
  TS_RETURN_IF_ERROR(SyncDir(staged));
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (rename(staged.c_str(), dir.c_str()) != 0) {
      return Status::Unavailable("cannot rename " + staged + " to " + Quote(flag, dir) + ": " +
                                 Errno(errno));
    }
    return SyncDir(DirName(dir));
  }
  const std::string old = TemporaryPathFor(dir) + ".old";
  if (rename(dir.c_str(), old.c_str()) != 0) {
    return Status::Unavailable("cannot move the old " + Quote(flag, dir) +
                               " aside: " + Errno(errno));
  }
  if (rename(staged.c_str(), dir.c_str()) != 0) {
    const int err = errno;
    (void)rename(old.c_str(), dir.c_str());
    return Status::Unavailable("cannot rename " + staged + " to " + Quote(flag, dir) + ": " +
                               Errno(err));
  }
  TS_RETURN_IF_ERROR(SyncDir(DirName(dir)));
  std::error_code ignored;
  std::filesystem::remove_all(old, ignored);
  return OkStatus();
}

}  // namespace tessera::safe_output
