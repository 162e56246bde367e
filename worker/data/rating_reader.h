// Reads explicit-feedback rating files (MovieLens u.data / ratings.dat / ratings.csv, LIBMF text)
// into a struct of arrays for matrix factorization. A reader may take one partition of a file
// (worker r of n), so that workers share one file without coordination.
//
// Threads: ReadRatings is thread-safe (no shared state). It parses with
// RatingReadOptions::num_threads threads: the calling thread plus num_threads - 1 std::threads
// that it starts and joins before returning; no callbacks run on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tessera::worker {

enum class RatingFormat {
  kAuto,   // detect from the first non-empty line of the file (see ReadRatings)
  kTab,    // MovieLens u.data: user\titem\trating[\ttimestamp...]
  kDat,    // MovieLens ratings.dat: user::item::rating[::timestamp...]
  kCsv,    // MovieLens ratings.csv: optional header line, then user,item,rating[,timestamp...]
  kLibmf,  // LIBMF text: "user item rating", exactly 3 fields separated by spaces/tabs
};

// "auto", "tab", "dat", "csv" or "libmf"; InvalidArgument listing the choices otherwise.
StatusOr<RatingFormat> ParseRatingFormat(const std::string& name);
// The name ParseRatingFormat accepts for `f`.
const char* RatingFormatName(RatingFormat f);

// Struct of arrays, one entry per rating, in file order.
struct RatingData {
  std::vector<uint64_t> users;
  std::vector<uint64_t> items;
  std::vector<float> ratings;
  size_t size() const { return ratings.size(); }
};

struct RatingReadOptions {
  // File format; kAuto detects it.
  RatingFormat format = RatingFormat::kAuto;
  // Count bad lines and go on instead of failing on the first one.
  bool skip_bad_lines = false;
  // Parser threads, >= 1 (including the calling thread).
  int num_threads = 2;
  // This reader's share of the file: the lines whose first byte lies in
  // [partition * size / num_partitions, (partition + 1) * size / num_partitions), size in bytes.
  // Partitions 0..num_partitions-1 together read every line exactly once.
  // REQUIRES: num_partitions >= 1, 0 <= partition < num_partitions (else InvalidArgument).
  int partition = 0;
  int num_partitions = 1;
};

struct RatingReadResult {
  RatingData data;
  // The format used: options.format, or the detected one when that was kAuto.
  RatingFormat format = RatingFormat::kAuto;
  // Lines skipped as malformed (only with skip_bad_lines).
  int64_t bad_lines = 0;
  // "PATH:LINE: reason (text)" of the first bad line in this partition, "" if none.
  std::string first_bad_line;
};

// Reads the ratings of `options.partition` of the file at `path`.
//
// Lines: user and item ids are unsigned decimal integers that fit in uint64; the rating is a
// decimal number (std::from_chars syntax, e.g. "4", "3.5", "-0.25", "1e-3"), finite and within
// +-kMaxAbsDataValue = 1e6 (worker/data/value_limits.h: "nan", "inf" and 3e38 are bad lines).
// tab/dat/csv lines may have extra fields after the rating (a timestamp), which are not checked;
// libmf lines have exactly 3 fields. Empty and whitespace-only lines are skipped, "\r\n" reads as
// "\n" (and a file whose first line ends with a lone "\r" is read with "\r" as its line end),
// and a UTF-8 byte-order mark at the start of the file is skipped. For csv, line 1 is a header
// (and skipped) when its first field is not a number.
// Auto-detection looks at the first non-empty line of the whole file (not of the partition, so
// that all partitions agree): "::" -> dat, else ',' -> csv, else '\t' -> tab, else libmf. An
// empty file reads as libmf with no ratings.
//
// Errors: NotFound when `path` does not exist; InvalidArgument when it cannot be read (a
// directory, no permission) or options are invalid; for a malformed line, unless
// skip_bad_lines, InvalidArgument "PATH:LINE: <what is wrong> (<the line, truncated>)" where LINE
// is the 1-based line number in the whole file, also when reading a later partition.
StatusOr<RatingReadResult> ReadRatings(const std::string& path, const RatingReadOptions& options);

}  // namespace tessera::worker
