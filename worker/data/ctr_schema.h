// What a CTR reader produces, whatever the file: the formats, a row's keys (HashFeature: the
// stable 64-bit key of a categorical value), the layout of a file (CtrSchema) and a chunk of
// rows (CtrBlock). Shared by the text readers and the binary cache (worker/data/ctr_reader.h,
// worker/data/ctr_cache.h) and by the models that consume the rows. Pure values and functions:
// thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "worker/data/value_limits.h"

namespace tessera::worker {

enum class CtrFormat {
  kAuto,    // detect (worker/data/ctr_reader.h)
  kCriteo,  // Criteo TSV: label, I1..I13, C1..C26
  kLibsvm,  // label idx:val ...
  kLibffm,  // label field:idx:val ...
  kCache,   // binary cache written by WriteCtrCache (worker/data/ctr_cache.h)
};

// "auto", "criteo", "libsvm", "libffm" or "cache"; InvalidArgument listing the choices otherwise.
StatusOr<CtrFormat> ParseCtrFormat(const std::string& name);
// The name ParseCtrFormat accepts for `f`.
const char* CtrFormatName(CtrFormat f);

// Stable 64-bit key of a categorical (field, raw value): the same on every platform, compiler
// and run. key = SplitMix64(salt ^ FNV-1a-64(value bytes)) with
// salt = SplitMix64(seed ^ SplitMix64(field)), SplitMix64 being core/splitmix64.h's finaliser
// (golden values are pinned in tests).
uint64_t HashFeature(uint64_t seed, uint32_t field, std::string_view value);
// The same for numeric ids and buckets: SplitMix64(salt ^ value). For a fixed (seed, field)
// distinct values always give distinct keys (SplitMix64 is a bijection).
uint64_t HashFeature(uint64_t seed, uint32_t field, uint64_t value);

// Criteo integer buckets (bucketize_integers), after the 3 Idiots' Kaggle solution: x itself for
// x <= 2 (negatives included), else 2 + floor(ln(x)^2) (so buckets of x > 2 start at 3).
int64_t CriteoBucket(int64_t x);

inline constexpr int kCriteoDense = 13;
inline constexpr int kCriteoCategorical = 26;

// What a reader produces, known after Open.
struct CtrSchema {
  // kCriteo, kLibsvm, kLibffm, or kCache when reading a cache (see source_format).
  CtrFormat format = CtrFormat::kAuto;
  // The text format the rows came from (== format for text; the cache's source for a cache).
  CtrFormat source_format = CtrFormat::kAuto;
  // Dense features per row (Criteo: 13; libsvm/libffm: 0).
  int num_dense = 0;
  // Categorical fields per row when one-hot (Criteo 26, 39 with bucketised integers; libsvm and
  // libffm: the features per line); 1 when multi_hot.
  int num_fields = 0;
  // libsvm/libffm with varying feature counts: one field, a variable list of keys per row,
  // sum-pooled (CtrBlock::offsets).
  bool multi_hot = false;
  // The most keys a row has (num_fields when one-hot; for a multi-hot text file the most feature
  // tokens on a line, for a multi-hot cache its padded record width).
  int max_keys = 0;
  uint64_t hash_seed = 0;
  bool bucketize_integers = false;
  // Rows in the whole file: the cache's record count; -1 (unknown) for text.
  int64_t num_rows = -1;

  // One line for the start-up log, e.g. "criteo: 13 dense, 26 categorical fields",
  // "libsvm: 10 features per line -> 10 fields",
  // "libsvm: varying feature counts (1..37 per line) -> 1 sum-pooled field".
  std::string Describe() const;
};

// OK when `actual` has the field layout `expected` asks for (num_dense, num_fields, multi_hot,
// hash_seed, bucketize_integers), else InvalidArgument naming the first field that differs and
// both values. For checking a reader against the model configuration.
Status CheckCtrSchema(const CtrSchema& expected, const CtrSchema& actual);

// A chunk of rows, struct of arrays, in file order. One-hot: keys/values hold num_fields entries
// per row (row-major) and offsets is empty. Multi-hot: row r's keys are
// keys[offsets[r], offsets[r + 1]) and offsets has size() + 1 entries. Every categorical field
// of a one-hot row has a key.
struct CtrBlock {
  std::vector<float> labels;      // 0 or 1
  std::vector<float> dense;       // size() x num_dense
  std::vector<uint64_t> keys;     // see above
  std::vector<float> values;      // libsvm/libffm value per key; 1 for Criteo categorical
  std::vector<uint32_t> offsets;  // multi-hot only
  size_t size() const { return labels.size(); }
  // Empties every array (keeping their capacity).
  void Clear();
};

// The value rule of every CTR row, whatever file it came from (text readers, the binary cache):
// the label is 0 or 1, and every dense feature and every feature value is finite with
// |x| <= kMaxAbsDataValue (worker/data/value_limits.h). OK, or InvalidArgument saying what is
// wrong with the first bad value, e.g. "label 2 is not 0 or 1", "dense feature 3 is nan",
// "value of feature 4 is 3e+38, beyond +-1e+06"; callers prefix the file and line or record.
// `values` may hold padding (value 0). REQUIRES: dense and values hold num_dense / num_values
// floats (either may be null when its count is 0).
Status ValidateCtrRecord(float label, const float* dense, int num_dense, const float* values,
                         int num_values);

// Appends the rows of `from` to *to. REQUIRES: both have the same layout; multi-hot: both hold
// their leading offset (offsets.size() == size() + 1) and the keys fit uint32 offsets.
void AppendCtrBlock(const CtrBlock& from, bool multi_hot, CtrBlock* to);

// Moves about `fraction` of the rows of *train to the end of *held_out (the validation set of
// early stopping), both kept in file order. A row goes by a hash of `seed` and its content (label,
// dense features, keys, values), so it goes the same way whichever worker's partition read it,
// and duplicate rows go together. REQUIRES: 0 <= fraction <= 1; both blocks have the layout of
// `multi_hot` (an empty multi-hot *held_out is given its leading offset here).
void HoldOutCtrRows(double fraction, uint64_t seed, bool multi_hot, CtrBlock* train,
                    CtrBlock* held_out);

}  // namespace tessera::worker
