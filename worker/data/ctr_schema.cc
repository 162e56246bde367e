#include "worker/data/ctr_schema.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/splitmix64.h"
#include "worker/data/internal/ctr_keys.h"

namespace tessera::worker {

namespace internal {

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

}  // namespace internal

using internal::BucketThresholds;
using internal::FieldSalt;
using internal::kFnvOffset;
using internal::kFnvPrime;
using internal::kNumBuckets;

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
  return SplitMix64(FieldSalt(seed, field) ^ h);
}

uint64_t HashFeature(uint64_t seed, uint32_t field, uint64_t value) {
  return SplitMix64(FieldSalt(seed, field) ^ value);
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

namespace {

// "nan", "inf", "-inf" or the value in %g.
std::string FormatValue(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", static_cast<double>(v));
  return buf;
}

// What is wrong with v, a value that IsValidDataValue refused.
std::string BadValue(float v) {
  if (!std::isfinite(v)) return FormatValue(v);
  return FormatValue(v) + ", beyond +-" + FormatValue(kMaxAbsDataValue);
}

}  // namespace

Status ValidateCtrRecord(float label, const float* dense, int num_dense, const float* values,
                         int num_values) {
  if (label != 0.0f && label != 1.0f) {
    return Status::InvalidArgument("label " + FormatValue(label) + " is not 0 or 1");
  }
  for (int i = 0; i < num_dense; ++i) {
    if (!IsValidDataValue(dense[i])) {
      return Status::InvalidArgument("dense feature " + std::to_string(i + 1) + " is " +
                                     BadValue(dense[i]));
    }
  }
  for (int i = 0; i < num_values; ++i) {
    if (!IsValidDataValue(values[i])) {
      return Status::InvalidArgument("value of feature " + std::to_string(i + 1) + " is " +
                                     BadValue(values[i]));
    }
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

void HoldOutCtrRows(double fraction, uint64_t seed, bool multi_hot, CtrBlock* train,
                    CtrBlock* held_out) {
  if (multi_hot && held_out->offsets.empty()) held_out->offsets.push_back(0);
  const size_t n = train->size();
  if (n == 0) return;
  const size_t dense_width = train->dense.size() / n;
  const size_t fields = multi_hot ? 0 : train->keys.size() / n;
  auto bits = [](float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof(u));
    return uint64_t{u};
  };
  // A row goes when the top 53 bits of its hash, as a fraction of 2^53, fall below `fraction`.
  const uint64_t threshold = static_cast<uint64_t>(fraction * 9007199254740992.0);
  CtrBlock kept;
  if (multi_hot) kept.offsets.push_back(0);
  for (size_t r = 0; r < n; ++r) {
    const size_t begin = multi_hot ? train->offsets[r] : r * fields;
    const size_t end = multi_hot ? train->offsets[r + 1] : begin + fields;
    uint64_t h = SplitMix64(seed ^ bits(train->labels[r]));
    for (size_t d = r * dense_width; d < (r + 1) * dense_width; ++d) {
      h = SplitMix64(h ^ bits(train->dense[d]));
    }
    for (size_t k = begin; k < end; ++k) {
      h = SplitMix64(h ^ train->keys[k] ^ (bits(train->values[k]) << 32));
    }
    CtrBlock* to = (h >> 11) < threshold ? held_out : &kept;
    to->labels.push_back(train->labels[r]);
    to->dense.insert(to->dense.end(), train->dense.begin() + r * dense_width,
                     train->dense.begin() + (r + 1) * dense_width);
    to->keys.insert(to->keys.end(), train->keys.begin() + begin, train->keys.begin() + end);
    to->values.insert(to->values.end(), train->values.begin() + begin, train->values.begin() + end);
    if (multi_hot) to->offsets.push_back(static_cast<uint32_t>(to->keys.size()));
  }
  *train = std::move(kept);
}

}  // namespace tessera::worker
