// Helpers shared by the text readers of worker/data/ (rating_reader, ctr_reader and the cache):
// a file's bytes by mmap, byte-range partitions and per-thread chunks aligned to line starts,
// and the "PATH:LINE: reason (text)" description of a bad line. Internal to worker/data/.
//
// Lines start at offset 0 and after each '\n'; "\r\n" reads as "\n"; a file whose lines end with
// a lone '\r' is read through a copy with LFs (FileBytes::ReadCrOnlyLineEnds).
// Threads: free functions are thread-safe; a FileBytes is immutable after Open and may be read
// from any number of threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tessera::worker::internal {

// The bytes of one file, read-only: mmap'ed for regular files (so a partition only touches its
// own pages), read into memory for anything else (pipes, /dev/stdin).
class FileBytes {
 public:
  // NotFound when `path` does not exist; InvalidArgument when it cannot be read (a directory,
  // no permission).
  static StatusOr<std::unique_ptr<FileBytes>> Open(const std::string& path);
  ~FileBytes();
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  const char* data() const {
    return mapped_ != nullptr ? static_cast<char*>(mapped_) : copy_.data();
  }
  size_t size() const { return size_; }
  const char* end() const { return data() + size_; }

  // Text files only: when the first line break of the bytes is a CR not followed by LF (a file
  // with CR-only line ends), replaces them with an in-memory copy in which every CR is a LF, so
  // that every helper below reads its lines. Files with LF or CRLF line ends are left as they
  // are. REQUIRES: called before the bytes are read by other threads.
  void ReadCrOnlyLineEnds();

 private:
  FileBytes() = default;
  void* mapped_ = nullptr;
  std::string copy_;
  size_t size_ = 0;
};

// NotFound for ENOENT/ENOTDIR, else InvalidArgument: "<what> <path>: <strerror>".
Status ErrnoStatus(const std::string& what, const std::string& path, int err);

// The most parse threads a reader starts.
constexpr int kMaxReaderThreads = 256;
// The options every reader shares: num_threads in [1, kMaxReaderThreads] and
// 0 <= partition < num_partitions. InvalidArgument naming the bad value.
Status ValidateThreadsAndPartition(int num_threads, int partition, int num_partitions);

// floor(size * k / n) without overflowing 64 bits. REQUIRES: n > 0, k <= n.
inline size_t SplitPoint(size_t size, size_t k, size_t n) {
  return size / n * k + size % n * k / n;
}

// 3 when the bytes start with a UTF-8 byte-order mark, else 0.
size_t ByteOrderMarkLength(const char* data, size_t size);

// The first line start >= pos (size when there is none).
size_t LineStartAtOrAfter(const char* data, size_t size, size_t pos);

// End of the line starting at p, before "\n" or "\r\n" (or `end`).
const char* LineEnd(const char* p, const char* end);

inline bool IsBlankChar(char c) { return c == ' ' || c == '\t' || c == '\r'; }
// True when [p, le) holds only spaces, tabs and CRs.
bool IsBlankLine(const char* p, const char* le);
// The first byte at or after p that is not ' ' or '\t' (or le).
inline const char* SkipBlanks(const char* p, const char* le) {
  while (p < le && (*p == ' ' || *p == '\t')) ++p;
  return p;
}

// Splits [begin, end) of data[0, size) into `num_chunks` chunks at line starts (as even in bytes
// as lines allow); chunk k is [bounds[k], bounds[k + 1]). Returns num_chunks + 1 offsets.
std::vector<size_t> SplitAtLineStarts(const char* data, size_t size, size_t begin, size_t end,
                                      size_t num_chunks);

// Estimates the lines in [begin, end) from the newline density of its first 64 KiB, so that
// output arrays are allocated once. Capped by size / min_line_bytes so that an unrepresentative
// start (blank lines) cannot ask for absurd amounts of memory.
size_t EstimateLines(const char* begin, const char* end, size_t min_line_bytes);

// "PATH:LINE: reason (text)" for the line starting at `line` in [data, file_end): LINE is
// 1-based in the whole file (counted here, so call it only on the error path) and the text is
// the line's first 60 characters, tabs shown as "\t" and other control characters as '?'.
std::string DescribeBadLine(const std::string& path, const char* data, const char* file_end,
                            const char* line, const std::string& reason);

// Runs work(k) for k in [0, num_chunks): chunks 1.. on std::threads started here and chunk 0 on
// the calling thread, then joins them all. An exception escaping work is logged as FATAL
// (naming `what`); a thread that cannot be started runs inline instead.
void RunChunks(size_t num_chunks, const std::string& what, const std::function<void(size_t)>& work);

}  // namespace tessera::worker::internal
