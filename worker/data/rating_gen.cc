#include "worker/data/rating_gen.h"

#include <charconv>
#include <cmath>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "core/logging.h"
#include "worker/data/internal/gen_util.h"

namespace tessera::worker {
namespace {

using internal::AliasTable;
using internal::AppendJson;
using internal::BlockWriter;
using internal::NormalGenerator;
using internal::Uniform;

constexpr double kMu = 3.5;
constexpr double kBiasStd = 0.3;
constexpr int64_t kMaxIds = int64_t{1} << 31;       // ids are sampled with 32-bit arithmetic
constexpr double kMaxModelBytes = 8.0 * (1 << 30);  // planted model + sampling tables
constexpr double kMaxNoise = 1000.0;                // keeps fixed-point printing in range
constexpr size_t kMaxLineBytes = 64;                // "uint32 uint32 -1234567890.1234\n" fits

// Independent, reproducible stream per purpose, so that e.g. changing test_fraction does not
// change which users and items are drawn.
enum class Stream : uint64_t { kUserPerm = 1, kItemPerm, kModel, kPick, kNoise, kSplit };

std::mt19937_64 MakeRng(uint64_t seed, Stream stream) {
  return internal::MakeRng(seed, static_cast<uint64_t>(stream));
}

// Zipf popularity over n ids (internal::ZipfWeights), each weight scaled to mean 1 as
// weight * (n / total).
AliasTable ZipfPopularity(int64_t n, double exponent, std::mt19937_64 rng) {
  double total = 0.0;
  std::vector<double> scaled = internal::ZipfWeights(n, exponent, std::move(rng), &total);
  for (double& w : scaled) w *= static_cast<double>(scaled.size()) / total;  // mean 1
  return AliasTable(std::move(scaled));
}

// Biases and factors of n users (or items), row-major factors.
struct FactorTable {
  std::vector<float> bias;
  std::vector<float> factors;  // n x rank
};

FactorTable DrawFactors(int64_t n, int rank, double factor_std, NormalGenerator* normal) {
  FactorTable t;
  t.bias.resize(static_cast<size_t>(n));
  t.factors.resize(static_cast<size_t>(n) * static_cast<size_t>(rank));
  for (size_t row = 0; row < t.bias.size(); ++row) {
    t.bias[row] = static_cast<float>(kBiasStd * normal->Next());
    for (int k = 0; k < rank; ++k) {
      t.factors[row * static_cast<size_t>(rank) + static_cast<size_t>(k)] =
          static_cast<float>(factor_std * normal->Next());
    }
  }
  return t;
}

// "user item rating\n" with the rating in fixed point, 4 decimals. REQUIRES: |value| < 1e14.
char* FormatRating(char* p, char* end, uint32_t user, uint32_t item, double value) {
  p = std::to_chars(p, end, user).ptr;
  *p++ = ' ';
  p = std::to_chars(p, end, item).ptr;
  *p++ = ' ';
  int64_t scaled = std::llround(value * 1e4);
  if (scaled < 0) {
    *p++ = '-';
    scaled = -scaled;
  }
  p = std::to_chars(p, end, scaled / 10000).ptr;
  *p++ = '.';
  int64_t frac = scaled % 10000;
  for (int64_t div = 1000; div > 0; div /= 10) *p++ = static_cast<char>('0' + frac / div % 10);
  *p++ = '\n';
  return p;
}

}  // namespace

Status ValidateRatingGenOptions(const RatingGenOptions& o) {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("rating generator: " + m); };
  if (o.users <= 0 || o.users > kMaxIds) {
    return bad("users must be in [1, 2^31], got " + std::to_string(o.users));
  }
  if (o.items <= 0 || o.items > kMaxIds) {
    return bad("items must be in [1, 2^31], got " + std::to_string(o.items));
  }
  if (o.ratings <= 0) return bad("ratings must be > 0, got " + std::to_string(o.ratings));
  if (o.rank <= 0 || o.rank > 1024) {
    return bad("rank must be in [1, 1024], got " + std::to_string(o.rank));
  }
  if (!(o.noise >= 0.0 && o.noise <= kMaxNoise)) {
    return bad("noise must be in [0, 1000], got " + std::to_string(o.noise));
  }
  if (!(o.test_fraction > 0.0 && o.test_fraction < 1.0)) {
    return bad("test_fraction must be in (0, 1), got " + std::to_string(o.test_fraction));
  }
  if (!(o.user_zipf >= 0.0 && o.user_zipf <= 10.0) ||
      !(o.item_zipf >= 0.0 && o.item_zipf <= 10.0)) {
    return bad("user_zipf and item_zipf must be in [0, 10], got " + std::to_string(o.user_zipf) +
               " and " + std::to_string(o.item_zipf));
  }
  // Per id: bias + rank factors (floats), an alias entry (8 bytes), build scratch (~16 bytes).
  double model_bytes = static_cast<double>(o.users + o.items) * (4.0 * (o.rank + 1) + 24.0);
  if (model_bytes > kMaxModelBytes) {
    return bad(
        "(users + items) * (rank + 7) * 4 bytes of model exceed 8 GiB; use fewer ids or a "
        "lower rank");
  }
  return OkStatus();
}

Status GenerateRatings(const RatingGenOptions& o, const std::string& out_dir) {
  TS_RETURN_IF_ERROR(ValidateRatingGenOptions(o));
  TS_RETURN_IF_ERROR(internal::CreateOutputDir(out_dir));

  const double factor_std = std::pow(static_cast<double>(o.rank), -0.25);
  NormalGenerator model_normal(MakeRng(o.seed, Stream::kModel));
  const FactorTable users = DrawFactors(o.users, o.rank, factor_std, &model_normal);
  const FactorTable items = DrawFactors(o.items, o.rank, factor_std, &model_normal);
  const AliasTable user_popularity =
      ZipfPopularity(o.users, o.user_zipf, MakeRng(o.seed, Stream::kUserPerm));
  const AliasTable item_popularity =
      ZipfPopularity(o.items, o.item_zipf, MakeRng(o.seed, Stream::kItemPerm));

  TS_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> train,
                      BlockWriter::Open(out_dir + "/train.txt", kMaxLineBytes));
  TS_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> test,
                      BlockWriter::Open(out_dir + "/test.txt", kMaxLineBytes));

  std::mt19937_64 pick_rng = MakeRng(o.seed, Stream::kPick);
  std::mt19937_64 split_rng = MakeRng(o.seed, Stream::kSplit);
  NormalGenerator noise_normal(MakeRng(o.seed, Stream::kNoise));
  const size_t rank = static_cast<size_t>(o.rank);
  const bool log_progress = o.ratings >= 1000000;
  int64_t next_report = o.ratings / 10;
  int64_t test_count = 0;
  double test_noise_sq = 0.0;
  for (int64_t n = 0; n < o.ratings; ++n) {
    uint32_t u = user_popularity.Sample(pick_rng());
    uint32_t i = item_popularity.Sample(pick_rng());
    double eps = o.noise * noise_normal.Next();
    bool is_test = Uniform(split_rng) < o.test_fraction;
    const float* p_u = &users.factors[u * rank];
    const float* q_i = &items.factors[i * rank];
    double dot = 0.0;
    for (size_t k = 0; k < rank; ++k) dot += static_cast<double>(p_u[k]) * q_i[k];
    double value = kMu + users.bias[u] + items.bias[i] + dot + eps;
    BlockWriter* out = is_test ? test.get() : train.get();
    TS_RETURN_IF_ERROR(out->Reserve());
    out->Commit(FormatRating(out->cursor(), out->limit(), u, i, value));
    if (is_test) {
      ++test_count;
      test_noise_sq += eps * eps;
    }
    if (log_progress && n + 1 == next_report) {
      TS_LOG(INFO) << "generated " << n + 1 << " / " << o.ratings << " ratings";
      next_report += o.ratings / 10;
    }
  }
  TS_RETURN_IF_ERROR(train->Close());
  TS_RETURN_IF_ERROR(test->Close());

  std::string json = "{\n";
  AppendJson(&json, "users", o.users);
  AppendJson(&json, "items", o.items);
  AppendJson(&json, "ratings", o.ratings);
  AppendJson(&json, "train_ratings", o.ratings - test_count);
  AppendJson(&json, "test_ratings", test_count);
  AppendJson(&json, "rank", static_cast<int64_t>(o.rank));
  AppendJson(&json, "noise_sigma", o.noise);
  AppendJson(&json, "mu", kMu);
  AppendJson(&json, "bias_std", kBiasStd);
  AppendJson(&json, "factor_std", factor_std);
  AppendJson(&json, "user_zipf", o.user_zipf);
  AppendJson(&json, "item_zipf", o.item_zipf);
  AppendJson(&json, "seed", o.seed);
  AppendJson(&json, "test_fraction", o.test_fraction);
  AppendJson(&json, "test_noise_rmse",
             test_count > 0 ? std::sqrt(test_noise_sq / static_cast<double>(test_count)) : 0.0);
  json.erase(json.size() - 2, 1);  // the last ','
  json += "}\n";
  TS_RETURN_IF_ERROR(internal::WriteTextFile(out_dir + "/truth.json", json));
  TS_LOG(INFO) << "wrote " << o.ratings - test_count << " train and " << test_count
               << " test ratings to " << out_dir;
  return OkStatus();
}

}  // namespace tessera::worker
