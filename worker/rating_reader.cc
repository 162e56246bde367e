#include "worker/rating_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "core/logging.h"

namespace tessera::worker {
namespace {

constexpr int kMaxThreads = 256;
constexpr size_t kMaxShownChars = 60;  // of a bad line, in error messages

// The bytes of one file, read-only: mmap'ed for regular files (so a partition only touches its
// own pages), read into memory for anything else (pipes, /dev/stdin).
class FileBytes {
 public:
  static StatusOr<std::unique_ptr<FileBytes>> Open(const std::string& path);
  ~FileBytes() {
    if (mapped_ != nullptr) munmap(mapped_, size_);
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  const char* data() const {
    return mapped_ != nullptr ? static_cast<char*>(mapped_) : copy_.data();
  }
  size_t size() const { return size_; }

 private:
  FileBytes() = default;
  void* mapped_ = nullptr;
  std::string copy_;
  size_t size_ = 0;
};

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string message = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT || err == ENOTDIR) return Status::NotFound(message);
  return Status::InvalidArgument(message);
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

// floor(size * k / n) without overflowing 64 bits.
size_t SplitPoint(size_t size, size_t k, size_t n) { return size / n * k + size % n * k / n; }

// The first line start >= pos. Lines start at offset 0 and after each '\n'.
size_t LineStartAtOrAfter(const char* data, size_t size, size_t pos) {
  if (pos == 0) return 0;
  if (pos >= size) return size;
  if (data[pos - 1] == '\n') return pos;
  const void* nl = std::memchr(data + pos, '\n', size - pos);
  return nl == nullptr ? size : static_cast<size_t>(static_cast<const char*>(nl) - data) + 1;
}

// End of the line starting at p, before "\n" or "\r\n".
const char* LineEnd(const char* p, const char* end) {
  const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
  const char* le = nl == nullptr ? end : nl;
  if (le > p && le[-1] == '\r') --le;
  return le;
}

bool IsBlankChar(char c) { return c == ' ' || c == '\t' || c == '\r'; }

bool IsBlankLine(const char* p, const char* le) {
  return std::all_of(p, le, [](char c) { return IsBlankChar(c); });
}

const char* SkipBlanks(const char* p, const char* le) {
  while (p < le && (*p == ' ' || *p == '\t')) ++p;
  return p;
}

template <RatingFormat F>
inline bool IsFieldEnd(const char* p, const char* le) {
  if (p == le) return true;
  if constexpr (F == RatingFormat::kLibmf) return *p == ' ' || *p == '\t';
  if constexpr (F == RatingFormat::kTab) return *p == '\t';
  if constexpr (F == RatingFormat::kCsv) return *p == ',';
  if constexpr (F == RatingFormat::kDat) return *p == ':' && p + 1 < le && p[1] == ':';
  return false;
}

// REQUIRES: p < le and IsFieldEnd<F>(p, le).
template <RatingFormat F>
inline const char* SkipSeparator(const char* p, const char* le) {
  if constexpr (F == RatingFormat::kLibmf) return SkipBlanks(p, le);
  if constexpr (F == RatingFormat::kDat) return p + 2;
  return p + 1;
}

struct IdField {
  const char* missing;
  const char* bad;
  const char* overflow;
};
constexpr IdField kUserField = {"missing user id", "bad user id", "user id does not fit in uint64"};
constexpr IdField kItemField = {"missing item id", "bad item id", "item id does not fit in uint64"};

// Parses an unsigned decimal id at *p and moves *p past it and its separator. Returns nullptr on
// success, else what is wrong.
template <RatingFormat F>
inline const char* ParseId(const char** p, const char* le, const IdField& field, uint64_t* out) {
  const char* s = *p;
  if (IsFieldEnd<F>(s, le)) return field.missing;
  const char* start = s;
  uint64_t v = 0;
  for (; s < le; ++s) {
    unsigned digit = static_cast<unsigned>(static_cast<unsigned char>(*s)) - '0';
    if (digit > 9) break;
    if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, digit, &v)) {
      return field.overflow;
    }
  }
  if (s == start || !IsFieldEnd<F>(s, le)) return field.bad;
  *out = v;
  *p = s < le ? SkipSeparator<F>(s, le) : s;
  return nullptr;
}

// Parses one non-empty line [p, le) (line end excluded). Returns nullptr or what is wrong.
template <RatingFormat F>
inline const char* ParseLine(const char* p, const char* le, uint64_t* user, uint64_t* item,
                             float* rating) {
  if constexpr (F == RatingFormat::kLibmf) p = SkipBlanks(p, le);
  if (const char* e = ParseId<F>(&p, le, kUserField, user)) return e;
  if (const char* e = ParseId<F>(&p, le, kItemField, item)) return e;
  if (IsFieldEnd<F>(p, le)) return "missing rating";
  auto [rest, ec] = std::from_chars(p, le, *rating);
  if (ec != std::errc() || !IsFieldEnd<F>(rest, le) || !std::isfinite(*rating)) {
    return "bad rating";
  }
  if constexpr (F == RatingFormat::kLibmf) {
    if (SkipBlanks(rest, le) != le) return "too many fields (libmf lines have 3)";
  }
  return nullptr;
}

struct ChunkResult {
  RatingData data;
  int64_t bad_lines = 0;
  const char* first_bad = nullptr;         // start of the first bad line
  const char* first_bad_reason = nullptr;  // what is wrong with it
};

// Estimates the ratings in [begin, end) from the newline density of its first 64 KiB, so that
// the output arrays are allocated once. Capped by the shortest rating line ("1 2 3\n", 6 bytes)
// so that an unrepresentative start (blank lines) cannot ask for absurd amounts of memory.
size_t EstimateLines(const char* begin, const char* end) {
  size_t size = static_cast<size_t>(end - begin);
  size_t sample = std::min<size_t>(size, 1 << 16);
  if (sample == 0) return 0;
  size_t lines = static_cast<size_t>(std::count(begin, begin + sample, '\n')) + 1;
  size_t estimate = static_cast<size_t>(static_cast<double>(lines) * size / sample * 1.05) + 16;
  return std::min(estimate, size / 6 + 1);
}

// Parses the lines in [begin, end) into *out, reserving room for `reserve` ratings first.
template <RatingFormat F>
void ParseChunk(const char* begin, const char* end, bool skip_bad_lines, size_t reserve,
                ChunkResult* out) {
  // Built in a local and moved out at the end: the ChunkResults of the threads are neighbours in
  // memory, and updating them in place on every line would bounce cache lines (false sharing).
  ChunkResult chunk;
  RatingData& d = chunk.data;
  d.users.reserve(reserve);
  d.items.reserve(reserve);
  d.ratings.reserve(reserve);
  for (const char* p = begin; p < end;) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* next = nl == nullptr ? end : nl + 1;
    const char* le = nl == nullptr ? end : nl;
    if (le > p && le[-1] == '\r') --le;
    uint64_t user;
    uint64_t item;
    float rating;
    const char* error = ParseLine<F>(p, le, &user, &item, &rating);
    if (error == nullptr) {
      d.users.push_back(user);
      d.items.push_back(item);
      d.ratings.push_back(rating);
    } else if (!IsBlankLine(p, le)) {  // blank lines are checked only when parsing fails
      ++chunk.bad_lines;
      if (chunk.first_bad == nullptr) {
        chunk.first_bad = p;
        chunk.first_bad_reason = error;
      }
      if (!skip_bad_lines) break;
    }
    p = next;
  }
  *out = std::move(chunk);
}

using ChunkParser = void (*)(const char*, const char*, bool, size_t, ChunkResult*);

ChunkParser ParserFor(RatingFormat format) {
  switch (format) {
    case RatingFormat::kTab:
      return ParseChunk<RatingFormat::kTab>;
    case RatingFormat::kDat:
      return ParseChunk<RatingFormat::kDat>;
    case RatingFormat::kCsv:
      return ParseChunk<RatingFormat::kCsv>;
    case RatingFormat::kLibmf:
      return ParseChunk<RatingFormat::kLibmf>;
    case RatingFormat::kAuto:
      break;
  }
  TS_CHECK(false) << "no parser for format " << RatingFormatName(format);
  return nullptr;
}

// Detects the format from the first non-blank line in [p, end).
RatingFormat DetectFormat(const char* p, const char* end) {
  while (p < end) {
    const char* le = LineEnd(p, end);
    if (!IsBlankLine(p, le)) {
      std::string_view line(p, static_cast<size_t>(le - p));
      if (line.find("::") != std::string_view::npos) return RatingFormat::kDat;
      if (line.find(',') != std::string_view::npos) return RatingFormat::kCsv;
      if (line.find('\t') != std::string_view::npos) return RatingFormat::kTab;
      return RatingFormat::kLibmf;
    }
    const char* nl = static_cast<const char*>(std::memchr(le, '\n', end - le));
    p = nl == nullptr ? end : nl + 1;
  }
  return RatingFormat::kLibmf;
}

// A csv header: a first line whose first field is non-empty and not a number.
bool IsCsvHeader(const char* p, const char* le) {
  const char* field_end = std::find(p, le, ',');
  if (field_end == p) return false;
  double value;
  auto [rest, ec] = std::from_chars(p, field_end, value);
  return ec != std::errc() || rest != field_end;
}

std::string DescribeBadLine(const std::string& path, const char* data, const char* file_end,
                            const char* line, const char* reason) {
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

Status ValidateOptions(const RatingReadOptions& o) {
  if (o.format != RatingFormat::kAuto && o.format != RatingFormat::kTab &&
      o.format != RatingFormat::kDat && o.format != RatingFormat::kCsv &&
      o.format != RatingFormat::kLibmf) {
    return Status::InvalidArgument("unknown rating format");
  }
  if (o.num_threads < 1 || o.num_threads > kMaxThreads) {
    return Status::InvalidArgument("num_threads must be in [1, " + std::to_string(kMaxThreads) +
                                   "], got " + std::to_string(o.num_threads));
  }
  if (o.num_partitions < 1 || o.partition < 0 || o.partition >= o.num_partitions) {
    return Status::InvalidArgument("need 0 <= partition < num_partitions, got partition " +
                                   std::to_string(o.partition) + " of " +
                                   std::to_string(o.num_partitions));
  }
  return OkStatus();
}

template <typename T>
void Append(std::vector<T>* to, const std::vector<T>& from) {
  to->insert(to->end(), from.begin(), from.end());
}

}  // namespace

StatusOr<RatingFormat> ParseRatingFormat(const std::string& name) {
  for (RatingFormat f : {RatingFormat::kAuto, RatingFormat::kTab, RatingFormat::kDat,
                         RatingFormat::kCsv, RatingFormat::kLibmf}) {
    if (name == RatingFormatName(f)) return f;
  }
  return Status::InvalidArgument("unknown rating format '" + name +
                                 "'; choices: auto, tab, dat, csv, libmf");
}

const char* RatingFormatName(RatingFormat f) {
  switch (f) {
    case RatingFormat::kAuto:
      return "auto";
    case RatingFormat::kTab:
      return "tab";
    case RatingFormat::kDat:
      return "dat";
    case RatingFormat::kCsv:
      return "csv";
    case RatingFormat::kLibmf:
      return "libmf";
  }
  return "unknown";
}

StatusOr<RatingReadResult> ReadRatings(const std::string& path, const RatingReadOptions& options) {
  TS_RETURN_IF_ERROR(ValidateOptions(options));
  TS_ASSIGN_OR_RETURN(std::unique_ptr<FileBytes> file, FileBytes::Open(path));
  const char* data = file->data();
  const size_t size = file->size();
  const char* file_end = data + size;

  size_t body = 0;  // offset of the first byte after a UTF-8 byte-order mark
  if (size >= 3 && std::memcmp(data, "\xEF\xBB\xBF", 3) == 0) body = 3;
  RatingReadResult result;
  result.format =
      options.format == RatingFormat::kAuto ? DetectFormat(data + body, file_end) : options.format;

  // This partition's lines: those starting in [SplitPoint(p), SplitPoint(p + 1)).
  const size_t num_partitions = static_cast<size_t>(options.num_partitions);
  const size_t partition = static_cast<size_t>(options.partition);
  size_t begin = LineStartAtOrAfter(data, size, SplitPoint(size, partition, num_partitions));
  size_t end = LineStartAtOrAfter(data, size, SplitPoint(size, partition + 1, num_partitions));
  if (begin == 0 && end > 0) {
    begin = body;
    if (result.format == RatingFormat::kCsv &&
        IsCsvHeader(data + body, LineEnd(data + body, file_end))) {
      begin = LineStartAtOrAfter(data, size, body + 1);
    }
  }
  begin = std::min(begin, end);

  // Per-thread chunks, split at line starts; chunk k is [bounds[k], bounds[k + 1]).
  const size_t num_chunks = static_cast<size_t>(options.num_threads);
  std::vector<size_t> bounds(num_chunks + 1, end);
  bounds[0] = begin;
  for (size_t k = 1; k < num_chunks; ++k) {
    size_t pos = begin + SplitPoint(end - begin, k, num_chunks);
    bounds[k] = std::clamp(LineStartAtOrAfter(data, size, pos), bounds[k - 1], end);
  }

  ChunkParser parse = ParserFor(result.format);
  std::vector<ChunkResult> chunks(num_chunks);
  auto work = [&](size_t k) {
    try {
      // Chunk 0 becomes the result, so it reserves room for the whole partition (pages are only
      // touched when written) and the merge copies only chunks 1.. .
      size_t reserve = EstimateLines(data + bounds[k], data + bounds[k == 0 ? num_chunks : k + 1]);
      parse(data + bounds[k], data + bounds[k + 1], options.skip_bad_lines, reserve, &chunks[k]);
    } catch (const std::exception& e) {
      TS_LOG(FATAL) << "parsing " << path << " failed: " << e.what();
    }
  };
  std::vector<std::thread> threads;
  for (size_t k = 1; k < num_chunks; ++k) {
    try {
      threads.emplace_back(work, k);
    } catch (const std::system_error& e) {
      TS_LOG(WARNING) << "cannot start a parser thread (" << e.what() << "); parsing inline";
      work(k);
    }
  }
  work(0);
  for (std::thread& t : threads) t.join();

  // Chunks are in file order, so the first chunk with a bad line holds the first bad line.
  for (const ChunkResult& chunk : chunks) {
    result.bad_lines += chunk.bad_lines;
    if (chunk.first_bad != nullptr && result.first_bad_line.empty()) {
      result.first_bad_line =
          DescribeBadLine(path, data, file_end, chunk.first_bad, chunk.first_bad_reason);
    }
  }
  if (result.bad_lines > 0) {
    if (!options.skip_bad_lines) return Status::InvalidArgument(result.first_bad_line);
    TS_LOG(WARNING) << "skipped " << result.bad_lines << " bad lines in " << path
                    << "; the first: " << result.first_bad_line;
  }

  result.data = std::move(chunks[0].data);
  for (size_t k = 1; k < num_chunks; ++k) {
    RatingData& d = result.data;
    Append(&d.users, chunks[k].data.users);
    Append(&d.items, chunks[k].data.items);
    Append(&d.ratings, chunks[k].data.ratings);
    chunks[k].data = RatingData();  // release as we go to bound peak memory
  }
  return result;
}

}  // namespace tessera::worker
