#include "worker/ctr_data.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <system_error>
#include <utility>

#include "core/logging.h"
#include "worker/ctr_cache.h"
#include "worker/text_chunks.h"

namespace tessera::worker {
namespace {

using internal::ByteOrderMarkLength;
using internal::DescribeBadLine;
using internal::EstimateLines;
using internal::FileBytes;
using internal::IsBlankChar;
using internal::IsBlankLine;
using internal::LineEnd;
using internal::LineStartAtOrAfter;
using internal::RunChunks;
using internal::SkipBlanks;
using internal::SplitAtLineStarts;
using internal::SplitPoint;

constexpr int kMaxThreads = 256;
constexpr int kCriteoColumns = 1 + kCriteoDense + kCriteoCategorical;
// Below this many bytes per thread a chunk is parsed by fewer threads (starting one costs more).
constexpr size_t kMinChunkBytesPerThread = 64 << 10;
// Multi-hot offsets are uint32: a chunk of at most 8 GiB holds fewer than 2^31 keys (a feature
// token and its separator take at least 4 bytes).
constexpr size_t kMaxMultiHotChunkBytes = size_t{8} << 30;
// Salts of fields below this are precomputed.
constexpr uint32_t kPrecomputedSalts = 1024;

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijection on uint64 with good avalanche.
inline uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t FieldSalt(uint64_t seed, uint32_t field) { return Mix64(seed ^ Mix64(field)); }

// HashFeature(seed, field, "") for the field with this salt.
inline uint64_t EmptyValueKey(uint64_t salt) { return Mix64(salt ^ kFnvOffset); }

// --- Criteo integers -------------------------------------------------------------------------

// CriteoBucket's thresholds: BucketThresholds()[b - 1] = ceil(e^sqrt(b)), the smallest integer
// x with ln(x)^2 >= b, for b = 1..491 (the last below 2^32). Computed in double: every e^sqrt(b)
// here is at least 7.7e-12 (relative) away from an integer, thousands of ulps, so any libm
// within a few ulps gives this exact table (its sum is pinned in a test).
constexpr int kNumBuckets = 491;

const std::array<int64_t, kNumBuckets>& BucketThresholds() {
  static const std::array<int64_t, kNumBuckets> table = [] {
    std::array<int64_t, kNumBuckets> t{};
    for (int b = 1; b <= kNumBuckets; ++b) {
      t[b - 1] = static_cast<int64_t>(std::ceil(std::exp(std::sqrt(static_cast<double>(b)))));
    }
    return t;
  }();
  return table;
}

// log(1 + x) as a float, tabulated for the small counts that make up most Criteo integers.
constexpr int64_t kLogTableSize = 1024;

const std::array<float, kLogTableSize>& LogTable() {
  static const std::array<float, kLogTableSize> table = [] {
    std::array<float, kLogTableSize> t{};
    for (int64_t x = 0; x < kLogTableSize; ++x) {
      t[x] = static_cast<float>(std::log1p(static_cast<double>(x)));
    }
    return t;
  }();
  return table;
}

inline float DenseValue(int64_t x, const std::array<float, kLogTableSize>& table) {
  if (x <= 0) return 0.0f;
  if (x < kLogTableSize) return table[x];
  return static_cast<float>(std::log1p(static_cast<double>(x)));
}

// kIsHexDigit[c]: c is 0-9, a-f or A-F.
constexpr std::array<bool, 256> MakeHexDigitTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'f'; ++c) t[c] = t[c - 'a' + 'A'] = true;
  return t;
}
constexpr std::array<bool, 256> kIsHexDigit = MakeHexDigitTable();

// --- Bad lines -------------------------------------------------------------------------------

enum class LineErrorCode : uint8_t {
  kNone,
  kColumns,       // criteo: not 40 fields
  kLabel,         // label not 0/1 (criteo) or 0/1/-1/+1 (libsvm/libffm)
  kInteger,       // criteo: Ii not an integer
  kIntegerRange,  // criteo: Ii out of int64
  kHex,           // criteo: Ck not hex
  kToken,         // libsvm/libffm: feature token does not parse
  kFeatureCount,  // libsvm/libffm one-hot: not num_fields features
};

struct LineError {
  LineErrorCode code = LineErrorCode::kNone;
  int index = 0;  // Ii / Ck number (1-based), feature number (1-based) or feature count
};

// The "<what is wrong>" of a bad line [line, le).
std::string Reason(CtrFormat format, const LineError& error, const char* line, const char* le,
                   int num_fields) {
  const std::string index = std::to_string(error.index);
  switch (error.code) {
    case LineErrorCode::kNone:
      break;
    case LineErrorCode::kColumns:
      return "expected " + std::to_string(kCriteoColumns) + " tab-separated fields, found " +
             std::to_string(std::count(line, le, '\t') + 1);
    case LineErrorCode::kLabel:
      return format == CtrFormat::kCriteo ? "label must be 0 or 1" : "label must be 0, 1, -1 or +1";
    case LineErrorCode::kInteger:
      return "I" + index + " is not an integer";
    case LineErrorCode::kIntegerRange:
      return "I" + index + " does not fit in 64 bits";
    case LineErrorCode::kHex:
      return "C" + index + " is not hex";
    case LineErrorCode::kToken:
      return "feature " + index + " is not " +
             (format == CtrFormat::kLibffm ? "field:idx:val" : "idx:val");
    case LineErrorCode::kFeatureCount:
      return "found " + index + " features, expected " + std::to_string(num_fields) +
             " (the other lines of the file all have " + std::to_string(num_fields) + ")";
  }
  return "bad line";
}

// --- Parsing ---------------------------------------------------------------------------------

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

// Parses the unsigned decimal at *p (at least one digit) into *out and moves *p past it.
// False when there is no digit or it does not fit.
template <typename T>
inline bool ParseUnsigned(const char** p, const char* le, T* out) {
  const char* s = *p;
  T v = 0;
  for (; s < le; ++s) {
    unsigned digit = static_cast<unsigned>(static_cast<unsigned char>(*s)) - '0';
    if (digit > 9) break;
    if (__builtin_mul_overflow(v, T{10}, &v) || __builtin_add_overflow(v, digit, &v)) {
      return false;
    }
  }
  if (s == *p) return false;
  *out = v;
  *p = s;
  return true;
}

// One Criteo line [p, le) (line end excluded) appended to *b. The row is appended in place and
// rolled back on error (cheaper than staging it: errors are rare).
inline LineError ParseCriteoLine(const char* p, const char* le, const ParseContext& ctx,
                                 const std::array<float, kLogTableSize>& log_table, CtrBlock* b) {
  const char* const line = p;
  const size_t keys_before = b->keys.size();
  const size_t dense_before = b->dense.size();
  auto fail = [&](LineErrorCode code, int index) {
    b->keys.resize(keys_before);
    b->dense.resize(dense_before);
    // A wrong number of fields explains any other symptom.
    if (std::count(line, le, '\t') != kCriteoColumns - 1) return LineError{LineErrorCode::kColumns};
    return LineError{code, index};
  };

  if (le - p < 2 || (p[0] != '0' && p[0] != '1') || p[1] != '\t') {
    return fail(LineErrorCode::kLabel, 0);
  }
  const float label = p[0] == '1' ? 1.0f : 0.0f;
  p += 2;

  std::array<int64_t, kCriteoDense> ints;
  std::array<bool, kCriteoDense> present;
  for (int i = 0; i < kCriteoDense; ++i) {
    const char* s = p;
    bool negative = false;
    if (s < le && (*s == '-' || *s == '+')) {
      negative = *s == '-';
      ++s;
    }
    uint64_t magnitude = 0;
    const char* digits = s;
    if (s < le && *s != '\t' && !ParseUnsigned(&s, le, &magnitude)) {
      // No digit, or too many: tell the two apart.
      return fail(s < le && static_cast<unsigned>(*s - '0') <= 9 ? LineErrorCode::kIntegerRange
                                                                 : LineErrorCode::kInteger,
                  i + 1);
    }
    if (s == le || *s != '\t') return fail(LineErrorCode::kInteger, i + 1);
    present[i] = s != p;
    if (present[i] && s == digits) return fail(LineErrorCode::kInteger, i + 1);  // a lone sign
    const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
    if (magnitude > limit) return fail(LineErrorCode::kIntegerRange, i + 1);
    ints[i] = negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
    b->dense.push_back(present[i] ? DenseValue(ints[i], log_table) : 0.0f);
    p = s + 1;
  }

  for (int k = 0; k < kCriteoCategorical; ++k) {
    // FNV-1a over the lowercased hex digits: validation and hashing in one pass. ORing 0x20
    // lowercases A-F and leaves digits alone. The table lookup keeps the loop free of the
    // digit-or-letter branch, which random hex mispredicts often.
    uint64_t h = kFnvOffset;
    const char* s = p;
    for (; s < le && kIsHexDigit[static_cast<unsigned char>(*s)]; ++s) {
      h = (h ^ (static_cast<unsigned char>(*s) | 0x20)) * kFnvPrime;
    }
    const bool last = k == kCriteoCategorical - 1;
    if (last ? s != le : (s == le || *s != '\t')) return fail(LineErrorCode::kHex, k + 1);
    b->keys.push_back(Mix64(ctx.salts[k] ^ h));
    p = s + 1;
  }

  if (ctx.schema.bucketize_integers) {
    const std::array<int64_t, kNumBuckets>& thresholds = BucketThresholds();
    for (int i = 0; i < kCriteoDense; ++i) {
      const uint64_t salt = ctx.salts[kCriteoCategorical + i];
      if (!present[i]) {
        b->keys.push_back(EmptyValueKey(salt));
        continue;
      }
      int64_t bucket = ints[i];
      if (bucket > 2) {
        bucket = 2 + (std::upper_bound(thresholds.begin(), thresholds.end(), bucket) -
                      thresholds.begin());
      }
      b->keys.push_back(Mix64(salt ^ static_cast<uint64_t>(bucket)));
    }
  }
  b->labels.push_back(label);
  b->values.resize(b->keys.size(), 1.0f);
  return LineError{};
}

// The label token [p, e) of a libsvm/libffm line: 0, 1, -1 or +1 (-1 -> 0).
inline bool ParseBinaryLabel(const char* p, const char* e, float* label) {
  if (e - p == 1 && (*p == '0' || *p == '1')) {
    *label = *p == '1' ? 1.0f : 0.0f;
    return true;
  }
  bool negative = false;
  if (p < e && (*p == '-' || *p == '+')) {
    negative = *p == '-';
    ++p;
  }
  double v;
  auto [rest, ec] = std::from_chars(p, e, v);
  if (ec != std::errc() || rest != e) return false;
  if (negative) {
    if (v != 1.0) return false;
    *label = 0.0f;
    return true;
  }
  if (v != 0.0 && v != 1.0) return false;
  *label = static_cast<float>(v);
  return true;
}

inline bool IsTokenEnd(const char* p, const char* le) { return p == le || *p == ' ' || *p == '\t'; }

// One libsvm/libffm line [p, le) appended to *b (staged in place, rolled back on error).
template <CtrFormat F, bool kMultiHot>
inline LineError ParseSparseLine(const char* p, const char* le, const ParseContext& ctx,
                                 CtrBlock* b) {
  const size_t keys_before = b->keys.size();
  auto fail = [&](LineErrorCode code, int index) {
    b->keys.resize(keys_before);
    b->values.resize(keys_before);
    return LineError{code, index};
  };
  p = SkipBlanks(p, le);
  const char* e = p;
  while (!IsTokenEnd(e, le)) ++e;
  float label;
  if (!ParseBinaryLabel(p, e, &label)) return fail(LineErrorCode::kLabel, 0);
  int count = 0;
  for (p = SkipBlanks(e, le); p < le; p = SkipBlanks(p, le)) {
    ++count;
    uint32_t field = 0;
    if constexpr (F == CtrFormat::kLibffm) {
      if (!ParseUnsigned(&p, le, &field) || p == le || *p != ':') {
        return fail(LineErrorCode::kToken, count);
      }
      ++p;
    }
    uint64_t index;
    if (!ParseUnsigned(&p, le, &index) || p == le || *p != ':') {
      return fail(LineErrorCode::kToken, count);
    }
    ++p;
    float value;
    if (p < le && *p == '1' && IsTokenEnd(p + 1, le)) {  // the common one-hot "idx:1"
      value = 1.0f;
      ++p;
    } else {
      auto [rest, ec] = std::from_chars(p, le, value);
      if (ec != std::errc() || !IsTokenEnd(rest, le) || !std::isfinite(value)) {
        return fail(LineErrorCode::kToken, count);
      }
      p = rest;
    }
    uint64_t salt;
    if constexpr (F == CtrFormat::kLibffm) {
      salt = ctx.Salt(field);
    } else if constexpr (kMultiHot) {
      salt = ctx.salts[0];
    } else {
      salt = ctx.Salt(static_cast<uint32_t>(count - 1));
    }
    b->keys.push_back(Mix64(salt ^ index));
    b->values.push_back(value);
  }
  if constexpr (kMultiHot) {
    b->offsets.push_back(static_cast<uint32_t>(b->keys.size()));
  } else {
    if (count != ctx.schema.num_fields) return fail(LineErrorCode::kFeatureCount, count);
  }
  b->labels.push_back(label);
  return LineError{};
}

// Parses the lines in [begin, end) into *b (appending; multi-hot: b->offsets holds its leading
// entry already), reserving room for `reserve_rows` more rows first.
template <CtrFormat F, bool kMultiHot>
void ParseTextChunk(const ParseContext& ctx, const char* begin, const char* end,
                    size_t reserve_rows, CtrBlock* b, ChunkResult* out) {
  const CtrSchema& schema = ctx.schema;
  b->labels.reserve(b->labels.size() + reserve_rows);
  b->dense.reserve(b->dense.size() + reserve_rows * schema.num_dense);
  if constexpr (kMultiHot) {
    b->offsets.reserve(b->offsets.size() + reserve_rows);
  } else {
    b->keys.reserve(b->keys.size() + reserve_rows * schema.num_fields);
    b->values.reserve(b->values.size() + reserve_rows * schema.num_fields);
  }
  const std::array<float, kLogTableSize>& log_table = LogTable();
  ChunkResult result;
  for (const char* p = begin; p < end;) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* next = nl == nullptr ? end : nl + 1;
    const char* le = nl == nullptr ? end : nl;
    if (le > p && le[-1] == '\r') --le;
    LineError error;
    if constexpr (F == CtrFormat::kCriteo) {
      error = ParseCriteoLine(p, le, ctx, log_table, b);
    } else {
      error = ParseSparseLine<F, kMultiHot>(p, le, ctx, b);
    }
    if (error.code != LineErrorCode::kNone && !IsBlankLine(p, le)) {
      ++result.bad_lines;
      if (result.first_bad == nullptr) {
        result.first_bad = p;
        result.first_error = error;
      }
      if (!ctx.skip_bad_lines) break;
    }
    p = next;
  }
  *out = result;
}

using ChunkParser = void (*)(const ParseContext&, const char*, const char*, size_t, CtrBlock*,
                             ChunkResult*);

ChunkParser ParserFor(CtrFormat format, bool multi_hot) {
  switch (format) {
    case CtrFormat::kCriteo:
      return ParseTextChunk<CtrFormat::kCriteo, false>;
    case CtrFormat::kLibsvm:
      return multi_hot ? ParseTextChunk<CtrFormat::kLibsvm, true>
                       : ParseTextChunk<CtrFormat::kLibsvm, false>;
    case CtrFormat::kLibffm:
      return multi_hot ? ParseTextChunk<CtrFormat::kLibffm, true>
                       : ParseTextChunk<CtrFormat::kLibffm, false>;
    case CtrFormat::kAuto:
    case CtrFormat::kCache:
      break;
  }
  TS_CHECK(false) << "no text parser for format " << CtrFormatName(format);
  return nullptr;
}

// --- Format detection and layout ------------------------------------------------------------

// The first non-blank line in [p, end), or an empty view.
std::string_view FirstLine(const char* p, const char* end) {
  while (p < end) {
    const char* le = LineEnd(p, end);
    if (!IsBlankLine(p, le)) return std::string_view(p, static_cast<size_t>(le - p));
    const char* nl = static_cast<const char*>(std::memchr(le, '\n', end - le));
    p = nl == nullptr ? end : nl + 1;
  }
  return {};
}

CtrFormat DetectTextFormat(const char* p, const char* end) {
  std::string_view line = FirstLine(p, end);
  if (std::count(line.begin(), line.end(), '\t') == kCriteoColumns - 1) return CtrFormat::kCriteo;
  // The first feature token: the second blank-separated token.
  size_t i = 0;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  size_t j = i;
  while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
  std::string_view token = line.substr(i, j - i);
  return std::count(token.begin(), token.end(), ':') == 2 ? CtrFormat::kLibffm : CtrFormat::kLibsvm;
}

struct FeatureCounts {
  int64_t lines = 0;  // non-blank
  int64_t min = std::numeric_limits<int64_t>::max();
  int64_t max = 0;
};

// Feature tokens (blank-separated tokens after the label) per non-blank line of [p, end).
FeatureCounts CountFeatures(const char* p, const char* end) {
  FeatureCounts counts;
  int64_t tokens = 0;
  bool in_token = false;
  auto end_line = [&] {
    if (tokens > 0) {
      ++counts.lines;
      counts.min = std::min(counts.min, tokens - 1);
      counts.max = std::max(counts.max, tokens - 1);
    }
    tokens = 0;
    in_token = false;
  };
  for (; p < end; ++p) {
    const char c = *p;
    if (c == '\n') {
      end_line();
    } else if (IsBlankChar(c)) {
      in_token = false;
    } else {
      tokens += in_token ? 0 : 1;
      in_token = true;
    }
  }
  end_line();
  return counts;
}

Status ValidateOptions(const CtrReadOptions& o) {
  if (o.format != CtrFormat::kAuto && o.format != CtrFormat::kCriteo &&
      o.format != CtrFormat::kLibsvm && o.format != CtrFormat::kLibffm &&
      o.format != CtrFormat::kCache) {
    return Status::InvalidArgument("unknown CTR format");
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
  if (o.chunk_bytes < 1) return Status::InvalidArgument("chunk_bytes must be >= 1");
  return OkStatus();
}

}  // namespace

// --- Public free functions -------------------------------------------------------------------

StatusOr<CtrFormat> ParseCtrFormat(const std::string& name) {
  for (CtrFormat f : {CtrFormat::kAuto, CtrFormat::kCriteo, CtrFormat::kLibsvm, CtrFormat::kLibffm,
                      CtrFormat::kCache}) {
    if (name == CtrFormatName(f)) return f;
  }
  return Status::InvalidArgument("unknown CTR data format '" + name +
                                 "'; choices: auto, criteo, libsvm, libffm, cache");
}

const char* CtrFormatName(CtrFormat f) {
  switch (f) {
    case CtrFormat::kAuto:
      return "auto";
    case CtrFormat::kCriteo:
      return "criteo";
    case CtrFormat::kLibsvm:
      return "libsvm";
    case CtrFormat::kLibffm:
      return "libffm";
    case CtrFormat::kCache:
      return "cache";
  }
  return "unknown";
}

uint64_t HashFeature(uint64_t seed, uint32_t field, std::string_view value) {
  uint64_t h = kFnvOffset;
  for (char c : value) h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
  return Mix64(FieldSalt(seed, field) ^ h);
}

uint64_t HashFeature(uint64_t seed, uint32_t field, uint64_t value) {
  return Mix64(FieldSalt(seed, field) ^ value);
}

int64_t CriteoBucket(int64_t x) {
  if (x <= 2) return x;
  const std::array<int64_t, kNumBuckets>& t = BucketThresholds();
  return 2 + (std::upper_bound(t.begin(), t.end(), x) - t.begin());
}

std::string CtrSchema::Describe() const {
  auto layout = [this](const char* name) {
    if (multi_hot) {
      return std::string(name) + ": varying feature counts (up to " + std::to_string(max_keys) +
             " per line) -> 1 sum-pooled field";
    }
    return std::string(name) + ": " + std::to_string(num_fields) + " features per line -> " +
           std::to_string(num_fields) + " fields";
  };
  std::string text;
  switch (source_format) {
    case CtrFormat::kCriteo:
      text = "criteo: " + std::to_string(num_dense) + " dense, " + std::to_string(num_fields) +
             " categorical fields";
      if (bucketize_integers) {
        text += " (" + std::to_string(kCriteoCategorical) + " + " + std::to_string(kCriteoDense) +
                " bucketised integers)";
      }
      break;
    case CtrFormat::kLibsvm:
    case CtrFormat::kLibffm:
      text = layout(CtrFormatName(source_format));
      break;
    case CtrFormat::kAuto:
    case CtrFormat::kCache:
      text = "unknown layout";
      break;
  }
  if (format == CtrFormat::kCache) {
    text = "cache of " + std::to_string(num_rows) + " rows from " + text;
  }
  return text;
}

Status CheckCtrSchema(const CtrSchema& expected, const CtrSchema& actual) {
  auto differs = [](const std::string& what, const std::string& want, const std::string& got) {
    return Status::InvalidArgument(what + " differs: expected " + want + ", the data has " + got);
  };
  if (expected.num_dense != actual.num_dense) {
    return differs("num_dense", std::to_string(expected.num_dense),
                   std::to_string(actual.num_dense));
  }
  if (expected.num_fields != actual.num_fields) {
    return differs("num_fields", std::to_string(expected.num_fields),
                   std::to_string(actual.num_fields));
  }
  if (expected.multi_hot != actual.multi_hot) {
    return differs("multi_hot", expected.multi_hot ? "true" : "false",
                   actual.multi_hot ? "true" : "false");
  }
  if (expected.hash_seed != actual.hash_seed) {
    return differs("hash_seed", std::to_string(expected.hash_seed),
                   std::to_string(actual.hash_seed));
  }
  if (expected.bucketize_integers != actual.bucketize_integers) {
    return differs("bucketize_integers", expected.bucketize_integers ? "true" : "false",
                   actual.bucketize_integers ? "true" : "false");
  }
  return OkStatus();
}

void CtrBlock::Clear() {
  labels.clear();
  dense.clear();
  keys.clear();
  values.clear();
  offsets.clear();
}

void AppendCtrBlock(const CtrBlock& from, bool multi_hot, CtrBlock* to) {
  const size_t key_base = to->keys.size();
  to->labels.insert(to->labels.end(), from.labels.begin(), from.labels.end());
  to->dense.insert(to->dense.end(), from.dense.begin(), from.dense.end());
  to->keys.insert(to->keys.end(), from.keys.begin(), from.keys.end());
  to->values.insert(to->values.end(), from.values.begin(), from.values.end());
  if (multi_hot) {
    for (size_t r = 1; r < from.offsets.size(); ++r) {
      to->offsets.push_back(static_cast<uint32_t>(key_base + from.offsets[r]));
    }
  }
}

// --- CtrReader -------------------------------------------------------------------------------

struct CtrReader::Impl {
  std::string path;
  CtrReadOptions options;
  std::unique_ptr<FileBytes> file;
  // Text.
  ParseContext ctx;
  ChunkParser parse = nullptr;
  // Per-thread blocks reused across Next calls: text parser threads k >= 1 (thread 0 parses
  // into the caller's block), multi-hot cache readers k >= 0.
  std::vector<CtrBlock> scratch;
  // Cache.
  CtrCacheHeader cache_header;
  const char* records = nullptr;  // the first record
};

CtrReader::CtrReader() : impl_(std::make_unique<Impl>()) {}
CtrReader::~CtrReader() = default;

StatusOr<std::unique_ptr<CtrReader>> CtrReader::Open(const std::string& path,
                                                     const CtrReadOptions& options) {
  TS_RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<CtrReader> reader(new CtrReader());
  Impl& impl = *reader->impl_;
  impl.path = path;
  impl.options = options;
  TS_ASSIGN_OR_RETURN(impl.file, FileBytes::Open(path));
  const char* data = impl.file->data();
  const size_t size = impl.file->size();
  const size_t num_partitions = static_cast<size_t>(options.num_partitions);
  const size_t partition = static_cast<size_t>(options.partition);
  CtrSchema& schema = reader->schema_;

  CtrFormat format = options.format;
  if (format == CtrFormat::kCache || (format == CtrFormat::kAuto && HasCtrCacheMagic(data, size))) {
    TS_ASSIGN_OR_RETURN(CtrCacheHeader header, DecodeCtrCacheHeader(path, data, size));
    TS_RETURN_IF_ERROR(CheckCtrCacheOptions(path, header, options));
    schema.format = CtrFormat::kCache;
    schema.source_format = header.source_format;
    schema.num_dense = static_cast<int>(header.num_dense);
    schema.num_fields = static_cast<int>(header.num_fields);
    schema.multi_hot = header.multi_hot;
    schema.max_keys = static_cast<int>(header.keys_per_record);
    schema.hash_seed = header.hash_seed;
    schema.bucketize_integers = header.bucketize_integers;
    schema.num_rows = static_cast<int64_t>(header.num_records);
    impl.cache_header = header;
    impl.records = data + kCtrCacheHeaderBytes;
    const size_t n = header.num_records;
    reader->begin_ = static_cast<int64_t>(SplitPoint(n, partition, num_partitions));
    reader->end_ = static_cast<int64_t>(SplitPoint(n, partition + 1, num_partitions));
    reader->position_ = reader->begin_;
    return reader;
  }

  const size_t body = ByteOrderMarkLength(data, size);
  if (format == CtrFormat::kAuto) format = DetectTextFormat(data + body, data + size);
  schema.format = format;
  schema.source_format = format;
  schema.hash_seed = options.hash_seed;
  if (format == CtrFormat::kCriteo) {
    schema.num_dense = kCriteoDense;
    schema.bucketize_integers = options.bucketize_integers;
    schema.num_fields = kCriteoCategorical + (options.bucketize_integers ? kCriteoDense : 0);
    schema.max_keys = schema.num_fields;
  } else {
    // The one-hot/multi-hot decision over the whole file, so that every partition makes it alike.
    const size_t num_chunks = std::clamp<size_t>(size / kMinChunkBytesPerThread, 1,
                                                 static_cast<size_t>(options.num_threads));
    const std::vector<size_t> bounds = SplitAtLineStarts(data, size, body, size, num_chunks);
    std::vector<FeatureCounts> counts(num_chunks);
    RunChunks(num_chunks, "scanning " + path,
              [&](size_t k) { counts[k] = CountFeatures(data + bounds[k], data + bounds[k + 1]); });
    FeatureCounts all;
    for (const FeatureCounts& c : counts) {
      all.lines += c.lines;
      if (c.lines > 0) {
        all.min = std::min(all.min, c.min);
        all.max = std::max(all.max, c.max);
      }
    }
    if (all.lines > 0 && all.max > std::numeric_limits<int32_t>::max() / 16) {
      return Status::InvalidArgument(path + ": a line has " + std::to_string(all.max) +
                                     " features; too many");
    }
    schema.multi_hot = all.lines > 0 && all.min != all.max;
    schema.max_keys = static_cast<int>(all.max);
    schema.num_fields = schema.multi_hot ? 1 : static_cast<int>(all.max);
  }

  impl.ctx.schema = schema;
  impl.ctx.skip_bad_lines = options.skip_bad_lines;
  const uint32_t num_salts =
      std::max<uint32_t>(kPrecomputedSalts, static_cast<uint32_t>(schema.num_fields));
  impl.ctx.salts.resize(num_salts);
  for (uint32_t f = 0; f < num_salts; ++f) impl.ctx.salts[f] = FieldSalt(options.hash_seed, f);
  impl.parse = ParserFor(format, schema.multi_hot);
  impl.scratch.resize(static_cast<size_t>(options.num_threads));

  // This partition's lines: those starting in [SplitPoint(p), SplitPoint(p + 1)).
  size_t begin = LineStartAtOrAfter(data, size, SplitPoint(size, partition, num_partitions));
  const size_t end =
      LineStartAtOrAfter(data, size, SplitPoint(size, partition + 1, num_partitions));
  if (begin == 0) begin = std::min(body, end);
  reader->begin_ = static_cast<int64_t>(begin);
  reader->end_ = static_cast<int64_t>(end);
  reader->position_ = reader->begin_;
  return reader;
}

StatusOr<bool> CtrReader::Next(CtrBlock* block) {
  TS_CHECK(block != nullptr);
  return schema_.format == CtrFormat::kCache ? NextCache(block) : NextText(block);
}

StatusOr<bool> CtrReader::NextText(CtrBlock* block) {
  Impl& impl = *impl_;
  const char* data = impl.file->data();
  const size_t size = impl.file->size();
  const bool multi_hot = schema_.multi_hot;
  size_t chunk_bytes = impl.options.chunk_bytes;
  if (multi_hot) chunk_bytes = std::min(chunk_bytes, kMaxMultiHotChunkBytes);
  const size_t min_line_bytes = schema_.format == CtrFormat::kCriteo ? kCriteoColumns : 2;

  block->Clear();
  if (multi_hot) block->offsets.push_back(0);
  while (position_ < end_) {
    const size_t begin = static_cast<size_t>(position_);
    const size_t end =
        std::min(static_cast<size_t>(end_),
                 LineStartAtOrAfter(data, size, begin + std::min(chunk_bytes, size - begin)));
    const size_t num_chunks =
        std::clamp<size_t>((end - begin) / kMinChunkBytesPerThread, 1, impl.scratch.size());
    const std::vector<size_t> bounds = SplitAtLineStarts(data, size, begin, end, num_chunks);
    std::vector<ChunkResult> results(num_chunks);
    RunChunks(num_chunks, "parsing " + impl.path, [&](size_t k) {
      // Each thread works on a local block: the blocks' vector headers are neighbours in memory
      // and updating them in place on every line would bounce cache lines between cores.
      // Chunk 0 goes straight into *block, reserving room for the whole chunk.
      CtrBlock& target = k == 0 ? *block : impl.scratch[k];
      CtrBlock local = std::move(target);
      if (k > 0) {
        local.Clear();
        if (multi_hot) local.offsets.push_back(0);
      }
      size_t reserve = EstimateLines(data + bounds[k], data + bounds[k == 0 ? num_chunks : k + 1],
                                     min_line_bytes);
      ChunkResult result;
      impl.parse(impl.ctx, data + bounds[k], data + bounds[k + 1], reserve, &local, &result);
      target = std::move(local);
      results[k] = result;
    });

    // Chunks are in file order, so the first chunk with a bad line holds the first bad line.
    int64_t bad_lines = 0;
    std::string first_bad;
    for (const ChunkResult& r : results) {
      bad_lines += r.bad_lines;
      if (r.first_bad != nullptr && first_bad.empty()) {
        const char* le = LineEnd(r.first_bad, data + size);
        first_bad = DescribeBadLine(
            impl.path, data, data + size, r.first_bad,
            Reason(schema_.format, r.first_error, r.first_bad, le, schema_.num_fields));
      }
    }
    if (bad_lines > 0 && !impl.options.skip_bad_lines) {
      block->Clear();
      return Status::InvalidArgument(first_bad);
    }
    bad_lines_ += bad_lines;
    if (first_bad_line_.empty()) first_bad_line_ = std::move(first_bad);
    for (size_t k = 1; k < num_chunks; ++k) AppendCtrBlock(impl.scratch[k], multi_hot, block);
    position_ = static_cast<int64_t>(end);
    if (block->size() > 0) return true;
  }
  return false;
}

StatusOr<bool> CtrReader::NextCache(CtrBlock* block) {
  Impl& impl = *impl_;
  const uint64_t per_chunk =
      std::max<uint64_t>(1, impl.options.chunk_bytes / impl.cache_header.RecordBytes());
  const uint64_t n = std::min<uint64_t>(per_chunk, static_cast<uint64_t>(end_ - position_));
  ReadCtrCacheRecords(impl.cache_header, impl.records, static_cast<uint64_t>(position_), n,
                      impl.options.num_threads, &impl.scratch, block);
  position_ += static_cast<int64_t>(n);
  return n > 0;
}

StatusOr<CtrBlock> CtrReader::ReadAll(const std::string& path, const CtrReadOptions& options,
                                      CtrSchema* schema) {
  CtrReadOptions one_chunk = options;
  one_chunk.chunk_bytes = std::numeric_limits<size_t>::max();
  TS_ASSIGN_OR_RETURN(std::unique_ptr<CtrReader> reader, Open(path, one_chunk));
  if (schema != nullptr) *schema = reader->schema();
  const bool multi_hot = reader->schema().multi_hot;
  CtrBlock all;
  if (multi_hot) all.offsets.push_back(0);
  CtrBlock block;
  for (;;) {
    TS_ASSIGN_OR_RETURN(bool more, reader->Next(&block));
    if (!more) break;
    if (multi_hot && all.keys.size() + block.keys.size() > std::numeric_limits<uint32_t>::max()) {
      return Status::InvalidArgument(path + " holds more than 2^32 keys; read it in chunks");
    }
    if (all.size() == 0) {
      all = std::move(block);
      block = CtrBlock();
    } else {
      AppendCtrBlock(block, multi_hot, &all);
    }
  }
  if (reader->bad_lines() > 0) {
    TS_LOG(WARNING) << "skipped " << reader->bad_lines() << " bad lines in " << path
                    << "; the first: " << reader->first_bad_line();
  }
  return all;
}

Status CtrReader::Seek(int64_t position) {
  if (position < begin_ || position > end_) {
    return Status::InvalidArgument("position " + std::to_string(position) +
                                   " is outside this partition [" + std::to_string(begin_) + ", " +
                                   std::to_string(end_) + "] of " + impl_->path);
  }
  if (schema_.format != CtrFormat::kCache && position != begin_ && position != end_ &&
      impl_->file->data()[position - 1] != '\n') {
    return Status::InvalidArgument("position " + std::to_string(position) + " of " + impl_->path +
                                   " is not at a line start");
  }
  position_ = position;
  return OkStatus();
}

}  // namespace tessera::worker
