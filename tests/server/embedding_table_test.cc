#include "server/embedding_table.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/random_math.h"
#include "tests/server/embedding_table_testing.h"

namespace tessera::server {
namespace {

using kernels::OptimizerKind;

// The full initial row (weights + state) computed from the options alone.
std::vector<float> ExpectedInitialRow(const TableOptions& options, uint64_t key) {
  const int state = kernels::OptimizerStateFloats(options.optimizer.kind, options.dim);
  std::vector<float> row(options.dim + state, 0.0f);
  const uint64_t stream = kernels::RowStream(options.seed, options.table_id, key);
  for (int j = 0; j < options.dim - options.zero_tail; ++j) {
    row[j] = options.init_std * kernels::CounterNormal(stream, static_cast<uint32_t>(j));
  }
  for (int j = 0; j < state; ++j) row[options.dim + j] = options.optimizer.initial_accumulator;
  return row;
}

TEST(EmbeddingTableTest, FindOrCreateThenFindReturnsTheSameRowWithInitialValues) {
  const TableOptions options = SmallOptions();
  auto table = MakeTable(options);
  float* created = table->FindOrCreate(17);
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(table->size(), 1);
  EXPECT_EQ(table->Find(17), created);
  EXPECT_EQ(table->FindOrCreate(17), created);
  EXPECT_EQ(table->size(), 1);
  const EmbeddingTable& const_table = *table;
  EXPECT_EQ(const_table.Find(17), created);
  EXPECT_EQ(RowValues(created, table->row_floats()), ExpectedInitialRow(options, 17));
}

TEST(EmbeddingTableTest, FindOfUnseenKeyReturnsNull) {
  auto table = MakeTable(SmallOptions());
  EXPECT_EQ(table->Find(5), nullptr);
  table->FindOrCreate(6);
  EXPECT_EQ(table->Find(5), nullptr);
  const EmbeddingTable& const_table = *table;
  EXPECT_EQ(const_table.Find(5), nullptr);
  EXPECT_EQ(table->size(), 1);
}

TEST(EmbeddingTableTest, InitialWeightsEqualTheCreatedRow) {
  auto table = MakeTable(SmallOptions());
  for (uint64_t key : {0ull, 1ull, 99ull, 0xDEADBEEFull}) {
    std::vector<float> expected(table->dim());
    table->InitialWeights(key, expected.data());
    EXPECT_EQ(table->Find(key), nullptr) << "InitialWeights must not create a row";
    const float* row = table->FindOrCreate(key);
    EXPECT_EQ(RowValues(row, table->dim()), expected) << "key " << key;
  }
}

TEST(EmbeddingTableTest, InitialWeightsAreTheSameOnTwoServersWithTheSameSeedAndTable) {
  TableOptions options = SmallOptions();
  auto server_a = MakeTable(options);
  options.initial_capacity = 5000;  // a different index layout must not matter
  auto server_b = MakeTable(options);
  // Different creation order on each "server".
  for (uint64_t key = 0; key < 100; ++key) server_a->FindOrCreate(key);
  for (uint64_t key = 100; key-- > 0;) server_b->FindOrCreate(key);
  for (uint64_t key = 0; key < 100; ++key) {
    EXPECT_EQ(RowValues(server_a->Find(key), server_a->row_floats()),
              RowValues(server_b->Find(key), server_b->row_floats()))
        << "key " << key;
  }
}

TEST(EmbeddingTableTest, InitialWeightsDifferForAnotherTableIdOrSeed) {
  const TableOptions options = SmallOptions();
  TableOptions other_table = options;
  other_table.table_id = options.table_id + 1;
  TableOptions other_seed = options;
  other_seed.seed = options.seed + 1;
  auto table = MakeTable(options);
  auto table_b = MakeTable(other_table);
  auto table_c = MakeTable(other_seed);
  std::vector<float> a(options.dim), b(options.dim), c(options.dim), next_key(options.dim);
  table->InitialWeights(7, a.data());
  table_b->InitialWeights(7, b.data());
  table_c->InitialWeights(7, c.data());
  table->InitialWeights(8, next_key.data());
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(b, c);
  EXPECT_NE(a, next_key);
}

TEST(EmbeddingTableTest, InitialWeightsFollowInitStd) {
  TableOptions options = SmallOptions();
  options.dim = 64;
  options.init_std = 0.01f;
  auto table = MakeTable(options);
  double sum_squares = 0.0;
  const int kKeys = 200;
  std::vector<float> w(options.dim);
  for (int key = 0; key < kKeys; ++key) {
    table->InitialWeights(key, w.data());
    for (float x : w) sum_squares += static_cast<double>(x) * x;
  }
  const double std_dev = std::sqrt(sum_squares / (kKeys * options.dim));
  EXPECT_NEAR(std_dev, 0.01, 0.0005);
}

TEST(EmbeddingTableTest, ZeroTailWeightsStartAtZero) {
  TableOptions options = SmallOptions();
  options.dim = 9;
  options.zero_tail = 2;
  auto table = MakeTable(options);
  for (uint64_t key = 0; key < 50; ++key) {
    const float* row = table->FindOrCreate(key);
    for (int j = 0; j < 7; ++j) EXPECT_NE(row[j], 0.0f) << "key " << key << " j " << j;
    EXPECT_EQ(row[7], 0.0f);
    EXPECT_EQ(row[8], 0.0f);
  }
  options.zero_tail = options.dim;
  auto all_zero = MakeTable(options);
  const float* row = all_zero->FindOrCreate(1);
  for (int j = 0; j < options.dim; ++j) EXPECT_EQ(row[j], 0.0f);
}

TEST(EmbeddingTableTest, AdagradStateStartsAtInitialAccumulator) {
  TableOptions options = SmallOptions();
  options.optimizer.initial_accumulator = 0.1f;
  auto table = MakeTable(options);
  EXPECT_EQ(table->state_floats(), options.dim);
  EXPECT_EQ(table->row_floats(), 2 * options.dim);
  for (uint64_t key = 0; key < 20; ++key) {
    const float* row = table->FindOrCreate(key);
    for (int j = 0; j < options.dim; ++j) EXPECT_EQ(row[options.dim + j], 0.1f);
  }
}

TEST(EmbeddingTableTest, SgdRowsHoldOnlyWeights) {
  TableOptions options = SmallOptions();
  options.optimizer.kind = OptimizerKind::kSgd;
  auto table = MakeTable(options);
  EXPECT_EQ(table->state_floats(), 0);
  EXPECT_EQ(table->row_floats(), options.dim);
  EXPECT_EQ(RowValues(table->FindOrCreate(4), table->row_floats()), ExpectedInitialRow(options, 4));
}

TEST(EmbeddingTableTest, RowsAreSixteenByteAlignedAndDoNotOverlap) {
  TableOptions options = SmallOptions();
  options.dim = 5;  // row_floats 10: padded to a stride of 12
  options.optimizer.kind = OptimizerKind::kAdagrad;
  auto table = MakeTable(options);
  for (uint64_t key = 0; key < 10000; ++key) {
    float* row = table->FindOrCreate(key);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(row) % 16, 0u) << "key " << key;
    for (int j = 0; j < table->row_floats(); ++j) row[j] = static_cast<float>(key);
  }
  for (uint64_t key = 0; key < 10000; ++key) {
    const float* row = table->Find(key);
    for (int j = 0; j < table->row_floats(); ++j) {
      ASSERT_EQ(row[j], static_cast<float>(key)) << "key " << key << " j " << j;
    }
  }
}

TEST(EmbeddingTableTest, GrowthKeepsEveryRowAndEveryPointerTakenBeforeIt) {
  auto table = MakeTable(SmallOptions());
  const size_t initial_bytes = table->MemoryBytes();
  const uint64_t kKeys = 200000;  // 16 index slots -> 2^18: many doublings
  std::vector<float*> pointers;
  pointers.reserve(kKeys);
  for (uint64_t i = 0; i < kKeys; ++i) {
    const uint64_t key = kernels::SplitMix64(i);
    float* row = table->FindOrCreate(key);
    row[0] = static_cast<float>(i);
    row[table->row_floats() - 1] = -static_cast<float>(i);
    pointers.push_back(row);
  }
  EXPECT_GT(table->MemoryBytes(), initial_bytes * 64);
  EXPECT_EQ(table->size(), static_cast<int64_t>(kKeys));
  for (uint64_t i = 0; i < kKeys; ++i) {
    const uint64_t key = kernels::SplitMix64(i);
    float* row = table->Find(key);
    ASSERT_EQ(row, pointers[i]) << "key " << key;
    ASSERT_EQ(row[0], static_cast<float>(i));
    ASSERT_EQ(row[table->row_floats() - 1], -static_cast<float>(i));
  }
}

TEST(EmbeddingTableTest, ExtremeAndCollidingLookingKeysAreOrdinaryKeys) {
  const TableOptions options = SmallOptions();
  auto table = MakeTable(options);
  std::vector<uint64_t> keys = {0,
                                1,
                                std::numeric_limits<uint64_t>::max(),
                                std::numeric_limits<uint64_t>::max() - 1,
                                0xFFFFFFFFull,
                                0x100000000ull,
                                1ull << 63};
  for (uint64_t k = 1; k < 64; ++k) keys.push_back(k << 40);    // differ only in high bits
  for (uint64_t k = 1; k < 64; ++k) keys.push_back(k << 58);    // all low bits equal
  for (uint64_t k = 0; k < 64; ++k) keys.push_back(k * 16384);  // same shard-slot residue
  std::unordered_set<uint64_t> seen;
  keys.erase(std::remove_if(keys.begin(), keys.end(),
                            [&](uint64_t key) { return !seen.insert(key).second; }),
             keys.end());
  for (uint64_t key : keys) {
    ASSERT_EQ(table->Find(key), nullptr) << "key " << key;
    table->FindOrCreate(key)[0] = static_cast<float>(key % 1000003);
  }
  EXPECT_EQ(table->size(), static_cast<int64_t>(keys.size()));
  for (uint64_t key : keys) {
    const float* row = table->Find(key);
    ASSERT_NE(row, nullptr) << "key " << key;
    EXPECT_EQ(row[0], static_cast<float>(key % 1000003)) << "key " << key;
    std::vector<float> expected = ExpectedInitialRow(options, key);
    expected[0] = static_cast<float>(key % 1000003);
    EXPECT_EQ(RowValues(row, table->row_floats()), expected) << "key " << key;
  }
}

TEST(EmbeddingTableTest, FindBatchGivesDuplicatesTheSamePointer) {
  auto table = MakeTable(SmallOptions());
  const std::vector<uint64_t> keys = {5, 9, 5, 0, 9, 5, std::numeric_limits<uint64_t>::max(), 0};
  std::vector<float*> rows(keys.size(), nullptr);
  table->FindBatch(keys.data(), static_cast<int64_t>(keys.size()), /*create=*/true, rows.data());
  EXPECT_EQ(table->size(), 4);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_NE(rows[i], nullptr);
    EXPECT_EQ(rows[i], table->Find(keys[i])) << "i " << i;
  }
  EXPECT_EQ(rows[0], rows[2]);
  EXPECT_EQ(rows[0], rows[5]);
  EXPECT_EQ(rows[1], rows[4]);
  EXPECT_EQ(rows[3], rows[7]);
  EXPECT_NE(rows[0], rows[1]);
}

TEST(EmbeddingTableTest, FindBatchWithoutCreateReturnsNullForMissingKeysAndAddsNone) {
  auto table = MakeTable(SmallOptions());
  float* present = table->FindOrCreate(11);
  const std::vector<uint64_t> keys = {11, 12, 11, 13, 12};
  std::vector<float*> rows(keys.size(), present);
  table->FindBatch(keys.data(), static_cast<int64_t>(keys.size()), /*create=*/false, rows.data());
  EXPECT_EQ(rows, (std::vector<float*>{present, nullptr, present, nullptr, nullptr}));
  EXPECT_EQ(table->size(), 1);
  table->FindBatch(keys.data(), 0, /*create=*/true, rows.data());
  EXPECT_EQ(table->size(), 1);
}

TEST(EmbeddingTableTest, FindBatchThatGrowsTheIndexReturnsValidRows) {
  const TableOptions options = SmallOptions();
  auto table = MakeTable(options);
  std::vector<uint64_t> keys;
  for (uint64_t i = 0; i < 5000; ++i) keys.push_back(i * 7919);
  for (uint64_t i = 0; i < 5000; i += 3) keys.push_back(i * 7919);  // duplicates at the end
  std::vector<float*> rows(keys.size());
  table->FindBatch(keys.data(), static_cast<int64_t>(keys.size()), /*create=*/true, rows.data());
  EXPECT_EQ(table->size(), 5000);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(rows[i], table->Find(keys[i])) << "i " << i;
    ASSERT_EQ(RowValues(rows[i], table->row_floats()), ExpectedInitialRow(options, keys[i]));
  }
}

TEST(EmbeddingTableTest, ForEachVisitsEveryRowOnce) {
  auto table = MakeTable(SmallOptions());
  std::unordered_map<uint64_t, const float*> expected;
  for (uint64_t i = 0; i < 3000; ++i) {
    const uint64_t key = i * 0x9E3779B97F4A7C15ull;
    expected[key] = table->FindOrCreate(key);
  }
  std::unordered_map<uint64_t, const float*> visited;
  table->ForEach([&](uint64_t key, const float* row) {
    EXPECT_TRUE(visited.emplace(key, row).second) << "key visited twice: " << key;
  });
  EXPECT_EQ(visited, expected);

  auto empty = MakeTable(SmallOptions());
  int calls = 0;
  empty->ForEach([&](uint64_t, const float*) { ++calls; });
  EXPECT_EQ(calls, 0);
}

// Random FindOrCreate / Find / FindBatch / writes against a std::unordered_map reference.
void RunAgainstReference(uint64_t seed) {
  std::mt19937_64 rng(seed);
  TableOptions options = SmallOptions();
  options.dim = 1 + static_cast<int>(rng() % 9);
  options.zero_tail = static_cast<int>(rng() % (options.dim + 1));
  options.optimizer.kind = rng() % 2 ? OptimizerKind::kAdagrad : OptimizerKind::kSgd;
  options.initial_capacity = static_cast<int64_t>(rng() % 100);
  auto table = MakeTable(options);
  const int row_floats = table->row_floats();
  std::unordered_map<uint64_t, std::vector<float>> reference;

  // A small key universe (so keys repeat) plus extremes.
  const uint64_t universe = 1 + rng() % 4000;
  auto random_key = [&]() -> uint64_t {
    switch (rng() % 8) {
      case 0:
        return std::numeric_limits<uint64_t>::max() - rng() % 4;
      case 1:
        return rng() % 4;
      case 2:  // small ids: the direct index, grown (and the hash's keys moved) as rows come
        return rng() % (2 * universe);
      default:
        return kernels::SplitMix64(rng() % universe);
    }
  };
  auto check_row = [&](uint64_t key, const float* row) {
    auto it = reference.find(key);
    if (it == reference.end()) {
      ASSERT_EQ(row, nullptr) << "key " << key;
    } else {
      ASSERT_NE(row, nullptr) << "key " << key;
      ASSERT_EQ(RowValues(row, row_floats), it->second) << "key " << key;
    }
  };
  auto touch = [&](uint64_t key, float* row) {
    auto [it, inserted] = reference.try_emplace(key);
    if (inserted) it->second = ExpectedInitialRow(options, key);
    ASSERT_EQ(RowValues(row, row_floats), it->second) << "key " << key;
    // Write through the pointer, as an optimizer would.
    const int j = static_cast<int>(rng() % row_floats);
    row[j] += 1.0f;
    it->second[j] += 1.0f;
  };

  std::vector<uint64_t> keys;
  std::vector<float*> rows;
  for (int op = 0; op < 20000; ++op) {
    switch (rng() % 4) {
      case 0: {
        const uint64_t key = random_key();
        ASSERT_NO_FATAL_FAILURE(touch(key, table->FindOrCreate(key)));
        break;
      }
      case 1: {
        const uint64_t key = random_key();
        ASSERT_NO_FATAL_FAILURE(check_row(key, table->Find(key)));
        break;
      }
      default: {
        const bool create = rng() % 2;
        keys.resize(rng() % 300);
        for (uint64_t& key : keys) key = random_key();
        rows.assign(keys.size(), nullptr);
        table->FindBatch(keys.data(), static_cast<int64_t>(keys.size()), create, rows.data());
        for (size_t i = 0; i < keys.size(); ++i) {
          if (create) {
            ASSERT_NO_FATAL_FAILURE(touch(keys[i], rows[i]));
          } else {
            ASSERT_NO_FATAL_FAILURE(check_row(keys[i], rows[i]));
          }
        }
        break;
      }
    }
    ASSERT_EQ(table->size(), static_cast<int64_t>(reference.size()));
  }
  size_t visited = 0;
  table->ForEach([&](uint64_t key, const float* row) {
    ++visited;
    check_row(key, row);
  });
  EXPECT_EQ(visited, reference.size());
}

TEST(EmbeddingTableTest, RandomOperationsAgreeWithUnorderedMapReference) {
  const uint64_t base_seed = 20261206;  // fixed, so that a failure repeats; printed on failure
  for (uint64_t i = 0; i < 8; ++i) {
    const uint64_t seed = base_seed + i;
    SCOPED_TRACE("seed " + std::to_string(seed));
    RunAgainstReference(seed);
    if (HasFatalFailure()) return;
  }
}

TEST(EmbeddingTableTest, InvalidOptionsAreInvalidArgument) {
  auto expect_invalid = [](const TableOptions& options, const char* what) {
    auto table = EmbeddingTable::Create(options);
    ASSERT_FALSE(table.ok()) << what;
    EXPECT_EQ(table.status().code(), StatusCode::kInvalidArgument) << what;
  };
  TableOptions options;
  options.dim = 0;
  expect_invalid(options, "dim 0");
  options.dim = -3;
  expect_invalid(options, "dim -3");
  options.dim = EmbeddingTable::kMaxDim + 1;
  expect_invalid(options, "dim too large");
  options = TableOptions();
  options.zero_tail = options.dim + 1;
  expect_invalid(options, "zero_tail > dim");
  options.zero_tail = -1;
  expect_invalid(options, "negative zero_tail");
  options = TableOptions();
  options.init_std = -0.1f;
  expect_invalid(options, "negative init_std");
  options.init_std = std::numeric_limits<float>::quiet_NaN();
  expect_invalid(options, "NaN init_std");
  options = TableOptions();
  options.initial_capacity = -1;
  expect_invalid(options, "negative initial_capacity");
  options = TableOptions();
  options.optimizer.lr = std::numeric_limits<float>::infinity();
  expect_invalid(options, "infinite lr");

  options = TableOptions();
  options.zero_tail = options.dim;
  options.init_std = 0.0f;
  EXPECT_TRUE(EmbeddingTable::Create(options).ok());
}

// Resident set size of this process, from /proc/self/statm (second field, in pages).
int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

// Clang defines no __SANITIZE_THREAD__ (scripts/sanitize-check.sh --thread).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TS_TEST_UNDER_CLANG_SANITIZER 1
#endif
#endif
#ifndef TS_TEST_UNDER_CLANG_SANITIZER
#define TS_TEST_UNDER_CLANG_SANITIZER 0
#endif

// The memory budget: 1.25 x (weights + optimizer state) bytes per row for large tables.
TEST(EmbeddingTableTest, OneMillionRowsStayWithinTheMemoryBudget) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || TS_TEST_UNDER_CLANG_SANITIZER
  GTEST_SKIP() << "the sanitizers' shadow memory makes resident-size measurements meaningless";
#endif
  TableOptions options;
  options.dim = 33;  // 32 factors + bias
  options.zero_tail = 1;
  options.optimizer.kind = OptimizerKind::kAdagrad;
  const double budget_bytes_per_row = 1.25 * 66 * sizeof(float);  // 330
  {
    // Warm up: fault in the code and data pages the insert path uses, outside the measurement.
    auto warm = MakeTable(options);
    for (uint64_t key = 0; key < 100; ++key) warm->FindOrCreate(key);
  }
  const int64_t resident_before = ResidentBytes();
  auto table = MakeTable(options);
  ASSERT_EQ(table->row_floats(), 66);
  const int64_t kRows = 1000000;
  for (int64_t i = 0; i < kRows; ++i) table->FindOrCreate(kernels::SplitMix64(i));
  const int64_t resident_after = ResidentBytes();
  ASSERT_EQ(table->size(), kRows);

  const double allocated_per_row = static_cast<double>(table->MemoryBytes()) / kRows;
  const double resident_per_row = static_cast<double>(resident_after - resident_before) / kRows;
  RecordProperty("allocated_bytes_per_row", std::to_string(allocated_per_row));
  RecordProperty("resident_bytes_per_row", std::to_string(resident_per_row));
  std::printf(
      "1M rows of 66 floats: allocated %.1f B/row, resident growth %.1f B/row (budget %.0f)\n",
      allocated_per_row, resident_per_row, budget_bytes_per_row);
  EXPECT_LE(allocated_per_row, budget_bytes_per_row);
  // No slack: the index and the arena are mmap'd directly and freed index arrays are unmapped,
  // so the resident growth is the touched part of MemoryBytes() (plus a few malloc'd bytes for
  // the chunk directory), never more.
  EXPECT_LE(resident_per_row, budget_bytes_per_row);
  EXPECT_LE(resident_after - resident_before, static_cast<int64_t>(table->MemoryBytes()) + 65536);
}

}  // namespace
}  // namespace tessera::server
