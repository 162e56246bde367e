#include "worker/data/rating_reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <string_view>
#include <utility>

#include "core/huge_pages.h"
#include "core/logging.h"
#include "worker/data/internal/text_chunks.h"
#include "worker/data/value_limits.h"

namespace tessera::worker {
namespace {

using internal::ByteOrderMarkLength;
using internal::DescribeBadLine;
using internal::EstimateLines;
using internal::FileBytes;
using internal::IsBlankLine;
using internal::LineEnd;
using internal::LineStartAtOrAfter;
using internal::RunChunks;
using internal::SkipBlanks;
using internal::SplitAtLineStarts;
using internal::SplitPoint;

constexpr size_t kMinRatingLineBytes = 6;  // "1 2 3\n"

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
  // from_chars reads "nan" and "inf"; a value beyond float range is result_out_of_range.
  if (ec == std::errc::result_out_of_range && IsFieldEnd<F>(rest, le)) {
    return "rating out of range (ratings must be finite, within +-1e6)";
  }
  if (ec != std::errc() || !IsFieldEnd<F>(rest, le)) return "bad rating";
  if (!IsValidDataValue(*rating)) {
    return std::isfinite(*rating) ? "rating out of range (ratings must be finite, within +-1e6)"
                                  : "rating is not finite";
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

// Parses the lines in [begin, end) into *out, reserving room for `reserve` ratings first.
template <RatingFormat F>
void ParseChunk(const char* begin, const char* end, bool skip_bad_lines, size_t reserve,
                ChunkResult* out) {
  // Built in a local and moved out at the end: the ChunkResults of the threads are neighbours in
  // memory, and updating them in place on every line would bounce cache lines (false sharing).
  ChunkResult chunk;
  RatingData& d = chunk.data;
  ReserveHugePages(&d.users, reserve);
  ReserveHugePages(&d.items, reserve);
  ReserveHugePages(&d.ratings, reserve);
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

Status ValidateOptions(const RatingReadOptions& o) {
  if (o.format != RatingFormat::kAuto && o.format != RatingFormat::kTab &&
      o.format != RatingFormat::kDat && o.format != RatingFormat::kCsv &&
      o.format != RatingFormat::kLibmf) {
    return Status::InvalidArgument("unknown rating format");
  }
  TS_RETURN_IF_ERROR(
      internal::ValidateThreadsAndPartition(o.num_threads, o.partition, o.num_partitions));
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
  file->ReadCrOnlyLineEnds();
  const char* data = file->data();
  const size_t size = file->size();
  const char* file_end = data + size;

  const size_t body = ByteOrderMarkLength(data, size);  // offset of the first byte after a BOM
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
  const std::vector<size_t> bounds = SplitAtLineStarts(data, size, begin, end, num_chunks);

  ChunkParser parse = ParserFor(result.format);
  std::vector<ChunkResult> chunks(num_chunks);
  RunChunks(num_chunks, "parsing " + path, [&](size_t k) {
    // Chunk 0 becomes the result, so it reserves room for the whole partition (pages are only
    // touched when written) and the merge copies only chunks 1.. .
    size_t reserve = EstimateLines(data + bounds[k], data + bounds[k == 0 ? num_chunks : k + 1],
                                   kMinRatingLineBytes);
    parse(data + bounds[k], data + bounds[k + 1], options.skip_bad_lines, reserve, &chunks[k]);
  });

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
