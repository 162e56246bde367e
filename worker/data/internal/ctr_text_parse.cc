#include "worker/data/internal/ctr_text_parse.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>
#include <system_error>

#include "core/logging.h"
#include "core/splitmix64.h"
#include "worker/data/internal/text_chunks.h"
#include "worker/data/value_limits.h"

namespace tessera::worker::internal {
namespace {

// --- Criteo integers -------------------------------------------------------------------------

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

// A Criteo integer's dense feature: sign(x) * log(1 + |x|). The usual transform clips negatives
// to 0 first (DLRM, NVTabular), which makes I2's -1, -2 and -3 (a tenth of the rows of Criteo's
// sample) indistinguishable from 0; the signed log keeps them apart and in range (|value| <= 44).
inline float DenseValue(int64_t x, const std::array<float, kLogTableSize>& table) {
  if (x >= 0) {
    if (x < kLogTableSize) return table[x];
    return static_cast<float>(std::log1p(static_cast<double>(x)));
  }
  // -x overflows for INT64_MIN: take the magnitude as unsigned.
  const uint64_t magnitude = 0 - static_cast<uint64_t>(x);
  if (magnitude < static_cast<uint64_t>(kLogTableSize)) return -table[magnitude];
  return -static_cast<float>(std::log1p(static_cast<double>(magnitude)));
}

// kIsHexDigit[c]: c is 0-9, a-f or A-F.
constexpr std::array<bool, 256> MakeHexDigitTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'f'; ++c) t[c] = t[c - 'a' + 'A'] = true;
  return t;
}
constexpr std::array<bool, 256> kIsHexDigit = MakeHexDigitTable();

// --- Parsing ---------------------------------------------------------------------------------

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
    b->keys.push_back(SplitMix64(ctx.salts[k] ^ h));
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
      b->keys.push_back(SplitMix64(salt ^ static_cast<uint64_t>(bucket)));
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
      if (!IsTokenEnd(rest, le) || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
        return fail(LineErrorCode::kToken, count);
      }
      // from_chars reads "nan" and "inf"; a value beyond float range is result_out_of_range.
      if (ec != std::errc() || !IsValidDataValue(value)) {
        return fail(LineErrorCode::kValueRange, count);
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
    b->keys.push_back(SplitMix64(salt ^ index));
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

}  // namespace

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
    case LineErrorCode::kValueRange:
      return "value of feature " + index + " is not finite or beyond +-1e6";
    case LineErrorCode::kFeatureCount:
      return "found " + index + " features, expected " + std::to_string(num_fields) +
             " (the other lines of the file all have " + std::to_string(num_fields) + ")";
  }
  return "bad line";
}

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

}  // namespace tessera::worker::internal
