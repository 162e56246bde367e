#include "tests/worker/data/ctr_reader_test_util.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

namespace tessera::worker::test_util {

using ::tessera::testing::TempDir;
using ::tessera::testing::WriteFile;

std::ostream& operator<<(std::ostream& os, const Row& r) {
  os << "{label " << r.label << ", dense";
  for (float d : r.dense) os << " " << d;
  os << ", keys";
  for (size_t i = 0; i < r.keys.size(); ++i)
    os << " " << std::hex << r.keys[i] << std::dec << ":" << r.values[i];
  return os << "}";
}

// Splits a block into rows, checking its array sizes against the schema.
std::vector<Row> ToRows(const CtrBlock& b, const CtrSchema& schema) {
  std::vector<Row> rows;
  const size_t nd = static_cast<size_t>(schema.num_dense);
  EXPECT_EQ(b.dense.size(), b.size() * nd);
  EXPECT_EQ(b.keys.size(), b.values.size());
  if (schema.multi_hot) {
    EXPECT_EQ(b.offsets.size(), b.size() + 1);
    if (b.offsets.size() != b.size() + 1) return rows;
  } else {
    EXPECT_TRUE(b.offsets.empty());
    EXPECT_EQ(b.keys.size(), b.size() * static_cast<size_t>(schema.num_fields));
  }
  for (size_t r = 0; r < b.size(); ++r) {
    Row row;
    row.label = b.labels[r];
    row.dense.assign(b.dense.begin() + r * nd, b.dense.begin() + (r + 1) * nd);
    size_t begin = schema.multi_hot ? b.offsets[r] : r * schema.num_fields;
    size_t end = schema.multi_hot ? b.offsets[r + 1] : (r + 1) * schema.num_fields;
    row.keys.assign(b.keys.begin() + begin, b.keys.begin() + end);
    row.values.assign(b.values.begin() + begin, b.values.begin() + end);
    rows.push_back(row);
  }
  return rows;
}

CtrReadOptions Options(CtrFormat format, uint64_t seed) {
  CtrReadOptions o;
  o.format = format;
  o.hash_seed = seed;
  return o;
}

// Reads `path` whole; fails the test on error.
std::vector<Row> ReadRows(const std::string& path, const CtrReadOptions& options,
                          CtrSchema* schema_out) {
  CtrSchema schema;
  StatusOr<CtrBlock> block = CtrReader::ReadAll(path, options, &schema);
  EXPECT_TRUE(block.ok()) << block.status().ToString();
  if (!block.ok()) return {};
  if (schema_out != nullptr) *schema_out = schema;
  return ToRows(*block, schema);
}

std::vector<Row> ReadText(const TempDir& dir, const std::string& text,
                          const CtrReadOptions& options, CtrSchema* schema) {
  std::string path = dir.Join("data.txt");
  WriteFile(path, text);
  return ReadRows(path, options, schema);
}

// The error of reading `text` whole, or OK.
Status ReadError(const std::string& path, const std::string& text, const CtrReadOptions& options) {
  WriteFile(path, text);
  StatusOr<CtrBlock> block = CtrReader::ReadAll(path, options, nullptr);
  return block.status();
}

// A Criteo line from its 40 fields.
std::string CriteoLine(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i > 0 ? "\t" : "") + fields[i];
  return line;
}

// label, 13 ints, 26 categoricals.
std::vector<std::string> CriteoFields(int label, std::vector<std::string> ints,
                                      std::vector<std::string> cats) {
  std::vector<std::string> f = {std::to_string(label)};
  ints.resize(kCriteoDense);
  cats.resize(kCriteoCategorical);
  f.insert(f.end(), ints.begin(), ints.end());
  f.insert(f.end(), cats.begin(), cats.end());
  return f;
}

// `lines` random Criteo lines: missing values, negative ints, either case of hex.
std::string RandomCriteo(int lines, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int n = 0; n < lines; ++n) {
    std::vector<std::string> ints;
    std::vector<std::string> cats;
    for (int i = 0; i < kCriteoDense; ++i) {
      int r = static_cast<int>(rng() % 10);
      ints.push_back(r == 0 ? "" : std::to_string(static_cast<int>(rng() % 5000) - 3));
    }
    for (int k = 0; k < kCriteoCategorical; ++k) {
      char buf[16];
      std::snprintf(buf, sizeof(buf), rng() % 7 == 0 ? "%08X" : "%08x",
                    static_cast<unsigned>(rng() % 300));
      cats.push_back(rng() % 9 == 0 ? "" : buf);
    }
    text += CriteoLine(CriteoFields(static_cast<int>(rng() % 2), ints, cats)) + "\n";
  }
  return text;
}

// `lines` random libsvm lines with `fixed` features each, or 1..8 when fixed is 0.
std::string RandomLibsvm(int lines, int fixed, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string text;
  for (int n = 0; n < lines; ++n) {
    text += rng() % 2 == 0 ? "-1" : "+1";
    int count = fixed > 0 ? fixed : 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < count; ++i) {
      text += " " + std::to_string(rng() % 1000) + ":" + (rng() % 3 == 0 ? "0.5" : "1");
    }
    text += "\n";
  }
  return text;
}

}  // namespace tessera::worker::test_util
