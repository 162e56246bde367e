#include "worker/data/internal/gen_util.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/logging.h"
#include "core/splitmix64.h"

namespace tessera::worker::internal {
namespace {

constexpr size_t kBlockBytes = size_t{1} << 20;  // fwrite granularity

}  // namespace

std::mt19937_64 MakeRng(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t id = SplitMix64(stream ^ (index << 32));
  return std::mt19937_64(SplitMix64(seed ^ id));
}

std::vector<double> ZipfWeights(int64_t n, double exponent, std::mt19937_64 rng, double* total) {
  std::vector<uint32_t> perm(static_cast<size_t>(n));
  for (size_t k = 0; k < perm.size(); ++k) perm[k] = static_cast<uint32_t>(k);
  for (size_t k = perm.size(); k > 1; --k) {  // Fisher-Yates
    std::swap(perm[k - 1], perm[UniformIndex(rng(), k)]);
  }
  std::vector<double> weights(perm.size());
  *total = 0.0;
  for (size_t k = 0; k < perm.size(); ++k) {
    weights[perm[k]] = std::pow(static_cast<double>(k + 1), -exponent);
    *total += weights[perm[k]];
  }
  return weights;
}

AliasTable::AliasTable(std::vector<double> scaled) : entries_(scaled.size()) {
  std::vector<uint32_t> small;
  std::vector<uint32_t> large;
  for (size_t id = 0; id < scaled.size(); ++id) {
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

StatusOr<std::unique_ptr<BlockWriter>> BlockWriter::Open(const std::string& path,
                                                         size_t max_line_bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return Status::InvalidArgument("cannot create " + path + ": " + std::strerror(errno));
  }
  return std::unique_ptr<BlockWriter>(new BlockWriter(path, f, max_line_bytes));
}

BlockWriter::BlockWriter(std::string path, std::FILE* f, size_t max_line_bytes)
    : path_(std::move(path)),
      file_(f),
      max_line_bytes_(max_line_bytes),
      buffer_(kBlockBytes + max_line_bytes) {}

BlockWriter::~BlockWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status BlockWriter::Close() {
  TS_RETURN_IF_ERROR(Flush());
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) return Status::DataLoss("cannot close " + path_ + ": " + std::strerror(errno));
  return OkStatus();
}

Status BlockWriter::Flush() {
  if (used_ > 0 && std::fwrite(buffer_.data(), 1, used_, file_) != used_) {
    return Status::DataLoss("cannot write " + path_ + ": " + std::strerror(errno));
  }
  used_ = 0;
  return OkStatus();
}

Status CreateOutputDir(const std::string& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec)
    return Status::InvalidArgument("cannot create directory " + out_dir + ": " + ec.message());
  return OkStatus();
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

std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  TS_CHECK(ec == std::errc());
  return std::string(buf, end);
}

void AppendJson(std::string* json, const char* key, const std::string& raw_value) {
  *json += std::string("  \"") + key + "\": " + raw_value + ",\n";
}

void AppendJson(std::string* json, const char* key, double value) {
  AppendJson(json, key, JsonNumber(value));
}

void AppendJson(std::string* json, const char* key, int64_t value) {
  AppendJson(json, key, std::to_string(value));
}

void AppendJson(std::string* json, const char* key, uint64_t value) {
  AppendJson(json, key, std::to_string(value));
}

}  // namespace tessera::worker::internal
