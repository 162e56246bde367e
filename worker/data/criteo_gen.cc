#include "worker/data/criteo_gen.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "core/logging.h"
#include "worker/data/ctr_metrics.h"
#include "worker/data/internal/gen_util.h"

namespace tessera::worker {
namespace {

using internal::AliasTable;
using internal::AppendJson;
using internal::BlockWriter;
using internal::JsonNumber;
using internal::NormalGenerator;
using internal::Uniform;

constexpr int kNumInts = 13;
constexpr int kNumCategorical = 26;
constexpr int kRank = 2;                   // dimension of the interaction embeddings
constexpr double kInteractionStd = 0.4;    // std of <v_a, v_b> for two popular values
constexpr double kRarityReference = 0.01;  // values rarer than this carry less signal
constexpr int64_t kCalibrationRows = 200000;
constexpr uint64_t kCalibrationSampler = 1;  // RowSampler index of the calibration sample
constexpr double kMaxCount = 1e12;
constexpr int kIdBits = 27;  // a value is hashed from (field << kIdBits | id)
constexpr double kMaxModelBytes = 8.0 * (1 << 30);
constexpr size_t kMaxLineBytes = 512;  // 2 + 13 * (13 + 1) + 26 * (8 + 1) = 418 at most

struct CategoricalSpec {
  int64_t vocab;        // values before vocab_scale
  double zipf;          // popularity exponent
  double missing_rate;  // probability that the field is empty
  double weight_std;    // s_f: std of the first-order weight of a popular value
};

// Vocabulary sizes span 3..100000 and missing rates follow the real Criteo set's pattern.
// Vocabulary sizes span 3..100000 and missing rates follow the real Criteo set's pattern. The
// large fields are steeply skewed (exponent 1.4-1.6), so that most rows carry popular values.
constexpr std::array<CategoricalSpec, kNumCategorical> kCategorical = {{
    {1000, 1.1, 0.0, 0.4},     // C1
    {300, 1.1, 0.0, 0.4},      // C2
    {50000, 1.5, 0.03, 0.3},   // C3
    {20000, 1.4, 0.03, 0.3},   // C4
    {200, 1.1, 0.0, 0.3},      // C5
    {12, 0.8, 0.12, 0.3},      // C6   interacts with C14
    {10000, 1.5, 0.0, 0.3},    // C7
    {500, 1.3, 0.0, 0.2},      // C8
    {3, 1.0, 0.0, 0.2},        // C9   interacts with C20
    {30000, 1.5, 0.0, 0.2},    // C10
    {5000, 1.4, 0.0, 0.3},     // C11
    {100000, 1.5, 0.03, 0.0},  // C12  no signal
    {3000, 1.2, 0.0, 0.3},     // C13
    {25, 1.0, 0.0, 0.4},       // C14  interacts with C6
    {10000, 1.5, 0.0, 0.2},    // C15
    {100000, 1.6, 0.03, 0.3},  // C16
    {10, 0.8, 0.0, 0.6},       // C17  interacts with C23
    {4000, 1.2, 0.0, 0.3},     // C18
    {2000, 1.2, 0.44, 0.2},    // C19
    {4, 1.0, 0.44, 0.3},       // C20  interacts with C9
    {100000, 1.5, 0.03, 0.0},  // C21  no signal
    {15, 1.0, 0.76, 0.3},      // C22
    {15, 1.0, 0.0, 0.5},       // C23  interacts with C17
    {50000, 1.5, 0.03, 0.3},   // C24
    {100, 1.1, 0.44, 0.2},     // C25
    {50000, 1.6, 0.44, 0.3},   // C26
}};

// Pairs of categorical fields (0-based) that interact: disjoint, and all of 3 to 25 values, so
// that every pair of values is seen often. Interactions of larger fields proved hard to learn
// from 10^5-10^6 rows for FM-style models amid 37 other fields.
constexpr std::array<std::pair<int, int>, 3> kInteractions = {{{16, 22}, {13, 5}, {8, 19}}};

struct IntSpec {
  double log_mean;      // m: the count is floor(exp(m + s * N(0, 1)))
  double log_std;       // s
  double missing_rate;  // probability that the field is empty
};

constexpr std::array<IntSpec, kNumInts> kIntSpecs = {{
    {0.5, 1.3, 0.45},    // I1
    {2.0, 2.0, 0.0},     // I2   linear effect
    {2.0, 1.5, 0.2},     // I3
    {1.8, 1.0, 0.2},     // I4
    {7.5, 2.0, 0.03},    // I5   saturating effect
    {3.5, 1.8, 0.22},    // I6
    {1.5, 1.5, 0.04},    // I7   bump
    {2.5, 1.0, 0.0005},  // I8
    {4.0, 1.5, 0.04},    // I9
    {0.0, 0.8, 0.45},    // I10
    {0.8, 1.2, 0.04},    // I11
    {-0.5, 1.5, 0.76},   // I12
    {1.8, 1.0, 0.2},     // I13
}};

// g(I2, I5, I7) of the header; x[j] = log1p(I_(j+1)), 0 when missing.
double IntEffect(const std::array<double, kNumInts>& x) {
  double d7 = x[6] - 1.5;
  return 0.25 * (x[1] - 2.0) - 0.4 * std::tanh((x[4] - 7.5) / 1.5) + 0.5 * std::exp(-d7 * d7);
}

// Independent, reproducible stream per purpose (and field), so that e.g. changing test_fraction
// does not change the rows, nor rows the planted model.
enum class Stream : uint64_t {
  kPopularity = 1,
  kModel,
  kHashKey,
  kValues,
  kMissing,
  kInts,
  kLabel,
  kSplit,
};

std::mt19937_64 MakeRng(uint64_t seed, Stream stream, uint64_t index = 0) {
  return internal::MakeRng(seed, static_cast<uint64_t>(stream), index);
}

// Zipf popularity over ids (internal::ZipfWeights) as probabilities: weight / total.
std::vector<double> ZipfProbabilities(int64_t n, double exponent, std::mt19937_64 rng) {
  double total = 0.0;
  std::vector<double> probs = internal::ZipfWeights(n, exponent, std::move(rng), &total);
  for (double& p : probs) p /= total;
  return probs;
}

// An alias table drawing id with probability probs[id], scaled to mean 1 as probs[id] * n.
std::unique_ptr<AliasTable> MakeAliasTable(const std::vector<double>& probs) {
  std::vector<double> scaled(probs.size());
  for (size_t id = 0; id < scaled.size(); ++id) {
    scaled[id] = probs[id] * static_cast<double>(scaled.size());  // mean 1
  }
  return std::make_unique<AliasTable>(std::move(scaled));
}

int64_t ScaledVocab(const CategoricalSpec& spec, double vocab_scale) {
  return std::max<int64_t>(2, std::llround(static_cast<double>(spec.vocab) * vocab_scale));
}

// The planted model of the header. Value ids of field f are 0..vocab-1; id == vocab is "missing".
struct PlantedModel {
  struct Field {
    int64_t vocab = 0;
    std::unique_ptr<AliasTable> popularity;
    std::vector<float> weight;     // vocab + 1 entries, the last for "missing"
    std::vector<float> embedding;  // (vocab + 1) x kRank for interacting fields, else empty
  };
  std::array<Field, kNumCategorical> fields;
  uint32_t hash_key = 0;  // salts the printed values
  double bias = 0.0;
};

PlantedModel DrawModel(const CriteoGenOptions& o) {
  PlantedModel model;
  model.hash_key = static_cast<uint32_t>(MakeRng(o.seed, Stream::kHashKey)());
  const double embedding_std = std::sqrt(kInteractionStd / std::sqrt(static_cast<double>(kRank)));
  for (int f = 0; f < kNumCategorical; ++f) {
    const CategoricalSpec& spec = kCategorical[static_cast<size_t>(f)];
    PlantedModel::Field& field = model.fields[static_cast<size_t>(f)];
    field.vocab = ScaledVocab(spec, o.vocab_scale);
    std::vector<double> probs = ZipfProbabilities(
        field.vocab, spec.zipf, MakeRng(o.seed, Stream::kPopularity, static_cast<uint64_t>(f)));
    field.popularity = MakeAliasTable(probs);
    const bool interacts = std::any_of(kInteractions.begin(), kInteractions.end(), [f](auto pair) {
      return pair.first == f || pair.second == f;
    });
    // A stream per field keeps each field's weights independent of the other fields' sizes.
    NormalGenerator normal(MakeRng(o.seed, Stream::kModel, static_cast<uint64_t>(f)));
    field.weight.resize(probs.size() + 1);
    if (interacts) field.embedding.assign((probs.size() + 1) * kRank, 0.0f);  // missing: zero
    // Rare values get proportionally smaller effects: a learner sees them too seldom to estimate
    // them, and a model whose signal hides in the tail would put the oracle out of reach.
    for (size_t id = 0; id <= probs.size(); ++id) {
      double rarity = id < probs.size() ? std::min(1.0, probs[id] / kRarityReference) : 1.0;
      double shrink = std::sqrt(rarity);
      field.weight[id] = static_cast<float>(spec.weight_std * shrink * normal.Next());
      if (interacts && id < probs.size()) {
        for (int k = 0; k < kRank; ++k) {
          field.embedding[id * kRank + static_cast<size_t>(k)] =
              static_cast<float>(embedding_std * shrink * normal.Next());
        }
      }
    }
  }
  return model;
}

// One row's features: categorical ids (vocab = missing) and counts (-1 = missing).
struct Row {
  std::array<uint32_t, kNumCategorical> ids;
  std::array<int64_t, kNumInts> counts;
};

// Draws rows from the model's feature distribution. Each row takes a fixed number of draws from
// each stream.
class RowSampler {
 public:
  RowSampler(const PlantedModel& model, uint64_t seed, uint64_t index)
      : model_(model),
        values_(MakeRng(seed, Stream::kValues, index)),
        missing_(MakeRng(seed, Stream::kMissing, index)),
        ints_(MakeRng(seed, Stream::kInts, index)) {}

  void Next(Row* row) {
    for (size_t f = 0; f < kNumCategorical; ++f) {
      const PlantedModel::Field& field = model_.fields[f];
      bool missing = Uniform(missing_) < kCategorical[f].missing_rate;
      uint32_t id = field.popularity->Sample(values_());
      row->ids[f] = missing ? static_cast<uint32_t>(field.vocab) : id;
    }
    for (size_t j = 0; j < kNumInts; ++j) {
      const IntSpec& spec = kIntSpecs[j];
      bool missing = Uniform(missing_) < spec.missing_rate;
      double count = std::floor(std::exp(spec.log_mean + spec.log_std * ints_.Next()));
      row->counts[j] = missing ? -1 : static_cast<int64_t>(std::min(count, kMaxCount));
    }
  }

 private:
  const PlantedModel& model_;
  std::mt19937_64 values_;
  std::mt19937_64 missing_;
  NormalGenerator ints_;
};

// The planted logit of a row without the bias, before signal_scale.
double Signal(const PlantedModel& model, const Row& row, double interaction_scale) {
  double first_order = 0.0;
  for (size_t f = 0; f < kNumCategorical; ++f) first_order += model.fields[f].weight[row.ids[f]];
  double interactions = 0.0;
  for (auto [a, b] : kInteractions) {
    const PlantedModel::Field& field_a = model.fields[static_cast<size_t>(a)];
    const PlantedModel::Field& field_b = model.fields[static_cast<size_t>(b)];
    const float* va = &field_a.embedding[row.ids[static_cast<size_t>(a)] * size_t{kRank}];
    const float* vb = &field_b.embedding[row.ids[static_cast<size_t>(b)] * size_t{kRank}];
    for (int k = 0; k < kRank; ++k) interactions += static_cast<double>(va[k]) * vb[k];
  }
  std::array<double, kNumInts> x;
  for (size_t j = 0; j < kNumInts; ++j) {
    x[j] = std::log1p(static_cast<double>(std::max<int64_t>(row.counts[j], 0)));
  }
  return first_order + interaction_scale * interactions + IntEffect(x);
}

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// The bias that makes the mean click probability target_ctr on a sample of the features drawn
// from their own streams (bisection: the mean is increasing in the bias).
double CalibrateBias(const PlantedModel& model, const CriteoGenOptions& o) {
  RowSampler sampler(model, o.seed, kCalibrationSampler);
  std::vector<double> signal(static_cast<size_t>(kCalibrationRows));
  Row row;
  for (double& s : signal) {
    sampler.Next(&row);
    s = o.signal_scale * Signal(model, row, o.interaction_scale);
  }
  double lo = -30.0;
  double hi = 30.0;
  for (int iter = 0; iter < 60; ++iter) {
    double mid = 0.5 * (lo + hi);
    double mean = 0.0;
    for (double s : signal) mean += Sigmoid(mid + s);
    (mean / static_cast<double>(signal.size()) < o.target_ctr ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// murmur3's 32-bit finaliser: a bijection, so distinct (field, id) print distinct values.
uint32_t Mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

// One Criteo TSV line. REQUIRES: kMaxLineBytes of space at p.
char* FormatRow(char* p, char* end, const PlantedModel& model, const Row& row, bool label) {
  static constexpr char kHex[] = "0123456789abcdef";
  *p++ = label ? '1' : '0';
  for (int64_t count : row.counts) {
    *p++ = '\t';
    if (count >= 0) p = std::to_chars(p, end, count).ptr;
  }
  for (size_t f = 0; f < kNumCategorical; ++f) {
    *p++ = '\t';
    uint32_t id = row.ids[f];
    if (id == model.fields[f].vocab) continue;  // missing
    uint32_t value = Mix32(((static_cast<uint32_t>(f) << kIdBits) | id) ^ model.hash_key);
    for (int shift = 28; shift >= 0; shift -= 4) *p++ = kHex[(value >> shift) & 0xF];
  }
  *p++ = '\n';
  return p;
}

// A JSON array of per-field values, e.g. [1000, 500, ...].
template <typename Container, typename Fn>
std::string JsonArray(const Container& items, Fn to_json) {
  std::string out = "[";
  for (const auto& item : items) out += (out.size() > 1 ? ", " : "") + to_json(item);
  return out + "]";
}

}  // namespace

Status ValidateCriteoGenOptions(const CriteoGenOptions& o) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("criteo generator: " + m); };
  if (o.rows <= 0) return bad("rows must be > 0, got " + std::to_string(o.rows));
  if (!(o.test_fraction > 0.0 && o.test_fraction < 1.0)) {
    return bad("test_fraction must be in (0, 1), got " + std::to_string(o.test_fraction));
  }
  if (!(o.target_ctr >= 0.01 && o.target_ctr <= 0.99)) {
    return bad("target_ctr must be in [0.01, 0.99], got " + std::to_string(o.target_ctr));
  }
  if (!(o.signal_scale >= 0.0 && o.signal_scale <= 10.0)) {
    return bad("signal_scale must be in [0, 10], got " + std::to_string(o.signal_scale));
  }
  if (!(o.interaction_scale >= 0.0 && o.interaction_scale <= 10.0)) {
    return bad("interaction_scale must be in [0, 10], got " + std::to_string(o.interaction_scale));
  }
  // The largest field, scaled, must fit in kIdBits bits of id.
  if (!(o.vocab_scale > 0.0 && o.vocab_scale <= 1000.0)) {
    return bad("vocab_scale must be in (0, 1000], got " + std::to_string(o.vocab_scale));
  }
  // Per value: probability and permutation scratch, alias entry, weight, some embeddings.
  double values = 0.0;
  for (const CategoricalSpec& spec : kCategorical) {
    values += static_cast<double>(ScaledVocab(spec, o.vocab_scale));
  }
  if (values * 40.0 > kMaxModelBytes) {
    return bad("vocab_scale " + std::to_string(o.vocab_scale) +
               " needs more than 8 GiB for the planted model; use a smaller one");
  }
  return OkStatus();
}

Status GenerateCriteo(const CriteoGenOptions& o, const std::string& out_dir) {
  TS_RETURN_IF_ERROR(ValidateCriteoGenOptions(o));
  static_assert(kNumCategorical <= (1 << (32 - kIdBits)), "field index must fit the hash input");
  TS_CHECK(ScaledVocab(kCategorical[11], 1000.0) < (int64_t{1} << kIdBits));
  TS_RETURN_IF_ERROR(internal::CreateOutputDir(out_dir));

  PlantedModel model = DrawModel(o);
  model.bias = CalibrateBias(model, o);

  TS_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> train,
                      BlockWriter::Open(out_dir + "/train.tsv", kMaxLineBytes));
  TS_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> test,
                      BlockWriter::Open(out_dir + "/test.tsv", kMaxLineBytes));

  RowSampler sampler(model, o.seed, 0);
  std::mt19937_64 label_rng = MakeRng(o.seed, Stream::kLabel);
  std::mt19937_64 split_rng = MakeRng(o.seed, Stream::kSplit);
  std::vector<float> test_probs;
  std::vector<float> test_labels;
  const bool log_progress = o.rows >= 1000000;
  int64_t next_report = o.rows / 10;
  int64_t positives = 0;
  double logit_sum = 0.0;
  double logit_sq = 0.0;
  Row row;
  for (int64_t n = 0; n < o.rows; ++n) {
    sampler.Next(&row);
    double logit = model.bias + o.signal_scale * Signal(model, row, o.interaction_scale);
    double prob = Sigmoid(logit);
    bool label = Uniform(label_rng) < prob;
    bool is_test = Uniform(split_rng) < o.test_fraction;
    BlockWriter* out = is_test ? test.get() : train.get();
    TS_RETURN_IF_ERROR(out->Reserve());
    out->Commit(FormatRow(out->cursor(), out->limit(), model, row, label));
    positives += label;
    logit_sum += logit;
    logit_sq += logit * logit;
    if (is_test) {
      test_probs.push_back(static_cast<float>(prob));
      test_labels.push_back(label ? 1.0f : 0.0f);
    }
    if (log_progress && n + 1 == next_report) {
      TS_LOG(INFO) << "generated " << n + 1 << " / " << o.rows << " rows";
      next_report += o.rows / 10;
    }
  }
  TS_RETURN_IF_ERROR(train->Close());
  TS_RETURN_IF_ERROR(test->Close());

  const BinaryMetrics oracle =
      ComputeBinaryMetrics(test_probs.data(), test_labels.data(), test_probs.size());
  const int64_t test_rows = oracle.count;
  const int64_t train_rows = o.rows - test_rows;
  const double test_rate = test_rows > 0 ? static_cast<double>(oracle.positives) / test_rows : 0.0;
  std::vector<float> base(test_probs.size(), static_cast<float>(test_rate));
  const double rows = static_cast<double>(o.rows);
  const double logit_mean = logit_sum / rows;

  std::string json = "{\n";
  AppendJson(&json, "rows", o.rows);
  AppendJson(&json, "train_rows", train_rows);
  AppendJson(&json, "test_rows", test_rows);
  AppendJson(&json, "train_positives", positives - oracle.positives);
  AppendJson(&json, "test_positives", oracle.positives);
  AppendJson(&json, "positive_rate", static_cast<double>(positives) / rows);
  AppendJson(&json, "train_positive_rate",
             train_rows > 0 ? static_cast<double>(positives - oracle.positives) / train_rows
                            : std::nan(""));
  AppendJson(&json, "test_positive_rate", test_rows > 0 ? test_rate : std::nan(""));
  AppendJson(&json, "oracle_auc", oracle.auc);
  AppendJson(&json, "oracle_logloss", oracle.logloss);
  AppendJson(&json, "base_logloss", LogLoss(base.data(), test_labels.data(), base.size()));
  AppendJson(&json, "seed", o.seed);
  AppendJson(&json, "test_fraction", o.test_fraction);
  AppendJson(&json, "target_ctr", o.target_ctr);
  AppendJson(&json, "signal_scale", o.signal_scale);
  AppendJson(&json, "interaction_scale", o.interaction_scale);
  AppendJson(&json, "vocab_scale", o.vocab_scale);
  AppendJson(&json, "bias", model.bias);
  AppendJson(&json, "logit_mean", logit_mean);
  AppendJson(&json, "logit_std",
             std::sqrt(std::max(0.0, logit_sq / rows - logit_mean * logit_mean)));
  AppendJson(&json, "rarity_reference", kRarityReference);
  AppendJson(&json, "interaction_rank", int64_t{kRank});
  AppendJson(&json, "interaction_std", kInteractionStd);
  AppendJson(&json, "interactions", JsonArray(kInteractions, [](auto pair) {
    return "[\"C" + std::to_string(pair.first + 1) + "\", \"C" + std::to_string(pair.second + 1) +
           "\"]";
  }));
  AppendJson(&json, "int_effects",
             "[\"0.25 * (log1p(I2) - 2)\", \"-0.4 * tanh((log1p(I5) - 7.5) / 1.5)\", "
             "\"0.5 * exp(-(log1p(I7) - 1.5)^2)\"]");
  AppendJson(&json, "categorical_vocab_sizes", JsonArray(model.fields, [](const auto& field) {
    return std::to_string(field.vocab);
  }));
  AppendJson(&json, "categorical_zipf",
             JsonArray(kCategorical, [](const auto& spec) { return JsonNumber(spec.zipf); }));
  AppendJson(&json, "categorical_missing_rates", JsonArray(kCategorical, [](const auto& spec) {
    return JsonNumber(spec.missing_rate);
  }));
  AppendJson(&json, "categorical_weight_std",
             JsonArray(kCategorical, [](const auto& spec) { return JsonNumber(spec.weight_std); }));
  AppendJson(&json, "int_log_means",
             JsonArray(kIntSpecs, [](const auto& spec) { return JsonNumber(spec.log_mean); }));
  AppendJson(&json, "int_log_stds",
             JsonArray(kIntSpecs, [](const auto& spec) { return JsonNumber(spec.log_std); }));
  AppendJson(&json, "int_missing_rates",
             JsonArray(kIntSpecs, [](const auto& spec) { return JsonNumber(spec.missing_rate); }));
  json.erase(json.size() - 2, 1);  // the last ','
  json += "}\n";
  TS_RETURN_IF_ERROR(internal::WriteTextFile(out_dir + "/truth.json", json));
  TS_LOG(INFO) << "wrote " << train_rows << " train and " << test_rows << " test rows to "
               << out_dir << " (positive rate " << static_cast<double>(positives) / rows
               << ", oracle test AUC " << oracle.auc << ")";
  return OkStatus();
}

}  // namespace tessera::worker
