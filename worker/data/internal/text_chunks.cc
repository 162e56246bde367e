#include "worker/data/internal/text_chunks.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

#include "core/logging.h"

namespace tessera::worker::internal {
namespace {

constexpr size_t kMaxShownChars = 60;  // of a bad line, in error messages

}  // namespace

FileBytes::~FileBytes() {
  if (mapped_ != nullptr) munmap(mapped_, size_);
}

void FileBytes::ReadCrOnlyLineEnds() {
  const char* p = data();
  const char* const e = end();
  while (p < e && *p != '\n' && *p != '\r') ++p;
  if (p == e || *p == '\n' || (p + 1 < e && p[1] == '\n')) return;
  // The first line ends with a lone CR: an old Mac text file. The readers split at LF only, so
  // they get a copy with every CR turned into one (a stray CRLF becomes a blank line, skipped).
  std::string copy(data(), size_);
  std::replace(copy.begin(), copy.end(), '\r', '\n');
  if (mapped_ != nullptr) munmap(mapped_, size_);
  mapped_ = nullptr;
  copy_ = std::move(copy);
}

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT || err == ENOTDIR) return Status::NotFound(message);
  return Status::InvalidArgument(message);
}

Status ValidateThreadsAndPartition(int num_threads, int partition, int num_partitions) {
  if (num_threads < 1 || num_threads > kMaxReaderThreads) {
    return Status::InvalidArgument("num_threads must be in [1, " +
                                   std::to_string(kMaxReaderThreads) + "], got " +
                                   std::to_string(num_threads));
  }
  if (num_partitions < 1 || partition < 0 || partition >= num_partitions) {
    return Status::InvalidArgument("need 0 <= partition < num_partitions, got partition " +
                                   std::to_string(partition) + " of " +
                                   std::to_string(num_partitions));
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<FileBytes>> FileBytes::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  std::unique_ptr<FileBytes> file(new FileBytes());
  struct stat st;
  Status status;
  if (fstat(fd, &st) != 0) {
    status = ErrnoStatus("cannot stat", path, errno);
  } else if (S_ISDIR(st.st_mode)) {
    status = Status::InvalidArgument("cannot read " + path + ": is a directory");
  } else if (S_ISREG(st.st_mode)) {
    file->size_ = static_cast<size_t>(st.st_size);
    if (file->size_ > 0) {
      void* p = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        status = ErrnoStatus("cannot mmap", path, errno);
      } else {
        file->mapped_ = p;
        madvise(p, file->size_, MADV_SEQUENTIAL);
      }
    }
  } else {
    char buf[1 << 16];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) status = ErrnoStatus("cannot read", path, errno);
      if (n <= 0) break;
      file->copy_.append(buf, static_cast<size_t>(n));
    }
    file->size_ = file->copy_.size();
  }
  close(fd);
  if (!status.ok()) return status;
  return file;
}

size_t ByteOrderMarkLength(const char* data, size_t size) {
  return size >= 3 && std::memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

size_t LineStartAtOrAfter(const char* data, size_t size, size_t pos) {
  if (pos == 0) return 0;
  if (pos >= size) return size;
  if (data[pos - 1] == '\n') return pos;
  const void* nl = std::memchr(data + pos, '\n', size - pos);
  return nl == nullptr ? size : static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
}

const char* LineEnd(const char* p, const char* end) {
  const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
  const char* le = nl == nullptr ? end : nl;
  if (le > p && le[-1] == '\r') --le;
  return le;
}

bool IsBlankLine(const char* p, const char* le) {
  return std::all_of(p, le, [](char c) { return IsBlankChar(c); });
}

std::vector<size_t> SplitAtLineStarts(const char* data, size_t size, size_t begin, size_t end,
                                      size_t num_chunks) {
  std::vector<size_t> bounds(num_chunks + 1, end);
  bounds[0] = begin;
  for (size_t k = 1; k < num_chunks; ++k) {
    size_t pos = begin + SplitPoint(end - begin, k, num_chunks);
    bounds[k] = std::clamp(LineStartAtOrAfter(data, size, pos), bounds[k - 1], end);
  }
  return bounds;
}

size_t EstimateLines(const char* begin, const char* end, size_t min_line_bytes) {
  size_t size = static_cast<size_t>(end - begin);
  size_t sample = std::min<size_t>(size, 1 << 16);
  if (sample == 0) return 0;
  size_t lines = static_cast<size_t>(std::count(begin, begin + sample, '\n')) + 1;
  size_t estimate = static_cast<size_t>(static_cast<double>(lines) * size / sample * 1.05) + 16;
  return std::min(estimate, size / std::max<size_t>(min_line_bytes, 1) + 1);
}

std::string DescribeBadLine(const std::string& path, const char* data, const char* file_end,
                            const char* line, const std::string& reason) {
  int64_t line_number = std::count(data, line, '\n') + 1;
  const char* le = LineEnd(line, file_end);
  std::string shown;
  for (const char* c = line; c < le && shown.size() < kMaxShownChars; ++c) {
    if (*c == '\t') {
      shown += "\\t";
    } else {
      shown += static_cast<unsigned char>(*c) < 0x20 ? '?' : *c;
    }
  }
  if (shown.size() >= kMaxShownChars) shown += "...";
  return path + ":" + std::to_string(line_number) + ": " + reason + " (" + shown + ")";
}

void RunChunks(size_t num_chunks, const std::string& what,
               const std::function<void(size_t)>& work) {
  auto guarded = [&](size_t k) {
    try {
      work(k);
    } catch (const std::exception& e) {
      TS_LOG(FATAL) << what << " failed: " << e.what();
    }
  };
  std::vector<std::thread> threads;
  for (size_t k = 1; k < num_chunks; ++k) {
    try {
      threads.emplace_back(guarded, k);
    } catch (const std::system_error& e) {
      TS_LOG(WARNING) << "cannot start a parser thread (" << e.what() << "); parsing inline";
      guarded(k);
    }
  }
  guarded(0);
  for (std::thread& t : threads) t.join();
}

}  // namespace tessera::worker::internal
