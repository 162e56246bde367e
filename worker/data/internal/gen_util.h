// Helpers shared by the data generators of worker/data/ (rating_gen, criteo_gen): seeded
// streams, uniform and normal draws written out so that the output does not depend on the
// standard library's distributions, Zipf popularity, Walker's alias table, a block writer for
// formatted text and the pieces of truth.json. Internal to worker/data/.
//
// Everything here is deterministic: the generators' files are reproducible byte for byte from
// their seed, so a change to any result here changes every generated data set.
// Threads: free functions are thread-safe; the classes are not (one per thread).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tessera::worker::internal {

// An independent, reproducible stream per purpose (stream) and e.g. field (index), so that
// changing one option does not change the draws made for another purpose. index 0 gives
// SplitMix64(seed ^ SplitMix64(stream)).
std::mt19937_64 MakeRng(uint64_t seed, uint64_t stream, uint64_t index = 0);

// Uniform in [0, 1) from the top 53 bits.
inline double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift; bias < 2^-32).
inline uint32_t UniformIndex(uint64_t bits, uint64_t n) {
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

// Unnormalised Zipf popularity over ids: the id perm[k] gets weight 1 / (k + 1)^exponent, where
// perm is a seeded random permutation of 0..n-1 (so popular ids are scattered). *total is the
// sum of the weights, added in the order k = 0, 1, ....
std::vector<double> ZipfWeights(int64_t n, double exponent, std::mt19937_64 rng, double* total);

// Walker's alias method (Vose's construction): O(1) draws from a fixed discrete distribution.
// prob and alias share one entry, so a draw touches one cache line.
class AliasTable {
 public:
  // scaled[id] is the weight of id scaled to mean 1 (the probability times scaled.size()).
  // Callers scale in their own order of operations: the rounding of the scaled weights decides
  // the table, and so every draw.
  explicit AliasTable(std::vector<double> scaled);

  // One draw from 64 random bits: the top 32 pick an entry, the bottom 32 toss its coin.
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

// Appends text to a file in large blocks (1 MiB). Owns the FILE*.
class BlockWriter {
 public:
  // max_line_bytes bounds what one line between Reserve and Commit may write.
  static StatusOr<std::unique_ptr<BlockWriter>> Open(const std::string& path,
                                                     size_t max_line_bytes);
  ~BlockWriter();
  BlockWriter(const BlockWriter&) = delete;
  BlockWriter& operator=(const BlockWriter&) = delete;

  // Space for one line of at most max_line_bytes; commit it with Commit(end).
  Status Reserve() {
    if (used_ + max_line_bytes_ > buffer_.size()) return Flush();
    return OkStatus();
  }
  char* cursor() { return buffer_.data() + used_; }
  char* limit() { return buffer_.data() + buffer_.size(); }
  void Commit(char* end) { used_ = static_cast<size_t>(end - buffer_.data()); }

  // Writes what is buffered and closes the file; call once, and check the result.
  Status Close();

 private:
  BlockWriter(std::string path, std::FILE* f, size_t max_line_bytes);
  Status Flush();

  std::string path_;
  std::FILE* file_;
  size_t max_line_bytes_;
  std::vector<char> buffer_;
  size_t used_ = 0;
};

// Creates out_dir and its parents if they do not exist.
Status CreateOutputDir(const std::string& out_dir);

// Writes text to path, replacing the file.
Status WriteTextFile(const std::string& path, const std::string& text);

// value in shortest round-trip form (std::to_chars); "null" when not finite.
std::string JsonNumber(double value);

// Append one `  "key": value,\n` line of a JSON object; raw_value is written as is.
void AppendJson(std::string* json, const char* key, const std::string& raw_value);
void AppendJson(std::string* json, const char* key, double value);
void AppendJson(std::string* json, const char* key, int64_t value);
void AppendJson(std::string* json, const char* key, uint64_t value);

}  // namespace tessera::worker::internal
