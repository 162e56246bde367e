// The CTR text parsers behind CtrReader (worker/data/ctr_reader.h): one line of Criteo, libsvm
// or libffm into a CtrBlock row, a chunk of lines into a block, the reasons of bad lines, and the
// format detection and feature-count scan that Open runs over a whole file. Internal to
// worker/data/. Thread-safe: a ChunkParser may run on many threads at once, each on its own
// block, sharing one read-only ParseContext.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "worker/data/ctr_schema.h"
#include "worker/data/internal/ctr_keys.h"

namespace tessera::worker::internal {

inline constexpr int kCriteoColumns = 1 + kCriteoDense + kCriteoCategorical;

enum class LineErrorCode : uint8_t {
  kNone,
  kColumns,       // criteo: not 40 fields
  kLabel,         // label not 0/1 (criteo) or 0/1/-1/+1 (libsvm/libffm)
  kInteger,       // criteo: Ii not an integer
  kIntegerRange,  // criteo: Ii out of int64
  kHex,           // criteo: Ck not hex
  kToken,         // libsvm/libffm: feature token does not parse
  kValueRange,    // libsvm/libffm: feature value not finite or beyond +-kMaxAbsDataValue
  kFeatureCount,  // libsvm/libffm one-hot: not num_fields features
};

struct LineError {
  LineErrorCode code = LineErrorCode::kNone;
  int index = 0;  // Ii / Ck number (1-based), feature number (1-based) or feature count
};

// The "<what is wrong>" of a bad line [line, le).
std::string Reason(CtrFormat format, const LineError& error, const char* line, const char* le,
                   int num_fields);

// What the parser threads share, read-only during a Next call.
struct ParseContext {
  CtrSchema schema;
  bool skip_bad_lines = false;
  std::vector<uint64_t> salts;  // FieldSalt(seed, f) for f < salts.size()

  uint64_t Salt(uint32_t field) const {
    return field < salts.size() ? salts[field] : FieldSalt(schema.hash_seed, field);
  }
};

struct ChunkResult {
  int64_t bad_lines = 0;
  const char* first_bad = nullptr;  // start of the first bad line
  LineError first_error;
};

// Parses the lines in [begin, end) into *b (appending; multi-hot: b->offsets holds its leading
// entry already), reserving room for `reserve_rows` more rows first. Stops at the first bad line
// unless ctx.skip_bad_lines; *out counts the bad lines and points at the first.
using ChunkParser = void (*)(const ParseContext&, const char*, const char*, size_t, CtrBlock*,
                             ChunkResult*);

// The parser of a text format (kCriteo, kLibsvm or kLibffm; TS_CHECK-fails on the others).
ChunkParser ParserFor(CtrFormat format, bool multi_hot);

// The format of the text in [p, end) from its first non-blank line: 40 tab-separated fields ->
// kCriteo; a first feature token with two ':' -> kLibffm; else kLibsvm.
CtrFormat DetectTextFormat(const char* p, const char* end);

struct FeatureCounts {
  int64_t lines = 0;  // non-blank
  int64_t min = std::numeric_limits<int64_t>::max();
  int64_t max = 0;
};

// Feature tokens (blank-separated tokens after the label) per non-blank line of [p, end).
FeatureCounts CountFeatures(const char* p, const char* end);

}  // namespace tessera::worker::internal
