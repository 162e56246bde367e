#include "worker/rating_gen.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <system_error>
#include <utility>
#include <vector>

#include "core/logging.h"
#include "kernels/random_math.h"

namespace tessera::worker {
namespace {

constexpr double kMu = 3.5;
constexpr double kBiasStd = 0.3;
constexpr int64_t kMaxIds = int64_t{1} << 31;       // ids are sampled with 32-bit arithmetic
constexpr double kMaxModelBytes = 8.0 * (1 << 30);  // planted model + sampling tables
constexpr double kMaxNoise = 1000.0;                // keeps fixed-point printing in range
constexpr size_t kBlockBytes = size_t{1} << 20;     // fwrite granularity
constexpr size_t kMaxLineBytes = 64;                // "uint32 uint32 -1234567890.1234\n" fits

// Independent, reproducible stream per purpose, so that e.g. changing test_fraction does not
// change which users and items are drawn.
enum class Stream : uint64_t { kUserPerm = 1, kItemPerm, kModel, kPick, kNoise, kSplit };

std::mt19937_64 MakeRng(uint64_t seed, Stream stream) {
  return std::mt19937_64(
      kernels::SplitMix64(seed ^ kernels::SplitMix64(static_cast<uint64_t>(stream))));
}

// Uniform in [0, 1) from the top 53 bits.
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift; bias < 2^-32).
uint32_t UniformIndex(uint64_t bits, uint64_t n) {
  return static_cast<uint32_t>(((bits >> 32) * n) >> 32);
}

// Standard normal by Box-Muller, written out (not std::normal_distribution) so that the output
// does not depend on the standard library's implementation.
class NormalGenerator {
 public:
  explicit NormalGenerator(std::mt19937_64 rng) : rng_(std::move(rng)) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = 1.0 - Uniform(rng_);  // (0, 1], so the log is finite
    double u2 = Uniform(rng_);
    double radius = std::sqrt(-2.0 * std::log(u1));
    double angle = 6.283185307179586 * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

 private:
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// Walker's alias method (Vose's construction): O(1) draws from a fixed discrete distribution.
// prob and alias share one entry, so a draw touches one cache line.
class AliasTable {
 public:
  // Zipf popularity over ids: the id perm[k] gets weight 1 / (k + 1)^exponent, where perm is a
  // seeded random permutation of 0..n-1.
  AliasTable(int64_t n, double exponent, std::mt19937_64 rng) : entries_(static_cast<size_t>(n)) {
    std::vector<uint32_t> perm(entries_.size());
    for (size_t k = 0; k < perm.size(); ++k) perm[k] = static_cast<uint32_t>(k);
    for (size_t k = perm.size(); k > 1; --k) {  // Fisher-Yates
      std::swap(perm[k - 1], perm[UniformIndex(rng(), k)]);
    }
    std::vector<double> scaled(perm.size());
    double total = 0.0;
    for (size_t k = 0; k < perm.size(); ++k) {
      scaled[perm[k]] = std::pow(static_cast<double>(k + 1), -exponent);
      total += scaled[perm[k]];
    }
    std::vector<uint32_t> small;
    std::vector<uint32_t> large;
    for (size_t id = 0; id < scaled.size(); ++id) {
      scaled[id] *= static_cast<double>(scaled.size()) / total;  // mean 1
      (scaled[id] < 1.0 ? small : large).push_back(static_cast<uint32_t>(id));
    }
    while (!small.empty() && !large.empty()) {
      uint32_t s = small.back();
      small.pop_back();
      uint32_t l = large.back();
      entries_[s] = {static_cast<float>(scaled[s]), l};
      scaled[l] -= 1.0 - scaled[s];
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // What remains has probability 1 up to rounding.
    for (uint32_t id : small) entries_[id] = {1.0f, id};
    for (uint32_t id : large) entries_[id] = {1.0f, id};
  }

  uint32_t Sample(uint64_t bits) const {
    uint32_t k = UniformIndex(bits, entries_.size());
    double coin = static_cast<double>(bits & 0xFFFFFFFFu) * 0x1.0p-32;
    const Entry& e = entries_[k];
    return coin < e.prob ? k : e.alias;
  }

 private:
  struct Entry {
    float prob = 1.0f;  // keep k with this probability, else take alias
    uint32_t alias = 0;
  };
  std::vector<Entry> entries_;
};

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

// Appends text to a file in large blocks. Owns the FILE*.
class BlockWriter {
 public:
  static StatusOr<std::unique_ptr<BlockWriter>> Open(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) {
      return Status::InvalidArgument("cannot create " + path + ": " + std::strerror(errno));
    }
    return std::unique_ptr<BlockWriter>(new BlockWriter(path, f));
  }
  ~BlockWriter() {
    if (file_ != nullptr) std::fclose(file_);
  }
  BlockWriter(const BlockWriter&) = delete;
  BlockWriter& operator=(const BlockWriter&) = delete;

  // Space for one line of at most kMaxLineBytes; commit it with Commit(end).
  Status Reserve() {
    if (used_ + kMaxLineBytes > buffer_.size()) return Flush();
    return OkStatus();
  }
  char* cursor() { return buffer_.data() + used_; }
  char* limit() { return buffer_.data() + buffer_.size(); }
  void Commit(char* end) { used_ = static_cast<size_t>(end - buffer_.data()); }

  Status Close() {
    TS_RETURN_IF_ERROR(Flush());
    int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) return Status::DataLoss("cannot close " + path_ + ": " + std::strerror(errno));
    return OkStatus();
  }

 private:
  BlockWriter(std::string path, std::FILE* f)
      : path_(std::move(path)), file_(f), buffer_(kBlockBytes + kMaxLineBytes) {}
  Status Flush() {
    if (used_ > 0 && std::fwrite(buffer_.data(), 1, used_, file_) != used_) {
      return Status::DataLoss("cannot write " + path_ + ": " + std::strerror(errno));
    }
    used_ = 0;
    return OkStatus();
  }

  std::string path_;
  std::FILE* file_;
  std::vector<char> buffer_;
  size_t used_ = 0;
};

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

void AppendJson(std::string* json, const char* key, double value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  TS_CHECK(ec == std::errc());
  *json += std::string("  \"") + key + "\": " + std::string(buf, end) + ",\n";
}

void AppendJson(std::string* json, const char* key, int64_t value) {
  *json += std::string("  \"") + key + "\": " + std::to_string(value) + ",\n";
}

void AppendJson(std::string* json, const char* key, uint64_t value) {
  *json += std::string("  \"") + key + "\": " + std::to_string(value) + ",\n";
}

Status WriteTextFile(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr)
    return Status::InvalidArgument("cannot create " + path + ": " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return Status::DataLoss("cannot write " + path + ": " + std::strerror(errno));
  return OkStatus();
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
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec)
    return Status::InvalidArgument("cannot create directory " + out_dir + ": " + ec.message());

  const double factor_std = std::pow(static_cast<double>(o.rank), -0.25);
  NormalGenerator model_normal(MakeRng(o.seed, Stream::kModel));
  const FactorTable users = DrawFactors(o.users, o.rank, factor_std, &model_normal);
  const FactorTable items = DrawFactors(o.items, o.rank, factor_std, &model_normal);
  const AliasTable user_popularity(o.users, o.user_zipf, MakeRng(o.seed, Stream::kUserPerm));
  const AliasTable item_popularity(o.items, o.item_zipf, MakeRng(o.seed, Stream::kItemPerm));

  TS_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> train,
                      BlockWriter::Open(out_dir + "/train.txt"));
  TS_ASSIGN_OR_RETURN(std::unique_ptr<BlockWriter> test, BlockWriter::Open(out_dir + "/test.txt"));

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
  TS_RETURN_IF_ERROR(WriteTextFile(out_dir + "/truth.json", json));
  TS_LOG(INFO) << "wrote " << o.ratings - test_count << " train and " << test_count
               << " test ratings to " << out_dir;
  return OkStatus();
}

}  // namespace tessera::worker
