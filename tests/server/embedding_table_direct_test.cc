// EmbeddingTable's direct index: keys below kMaxDirectKeys (MF's dense ids) held in an array
// indexed by the key beside the hash (server/embedding_table.h).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/random_math.h"
#include "server/embedding_table.h"
#include "tests/server/embedding_table_testing.h"

namespace tessera::server {
namespace {

using kernels::OptimizerKind;

// direct_index = false (TESSERA_DIRECT_INDEX=0): small ids stay in the hash, with the same rows.
TEST(EmbeddingTableTest, WithoutTheDirectIndexSmallIdsStayInTheHashWithTheSameRows) {
  TableOptions hashed_options = SmallOptions();
  hashed_options.direct_index = false;
  auto direct = MakeTable(SmallOptions());
  auto hashed = MakeTable(hashed_options);
  std::vector<uint64_t> ids(20000);
  for (uint64_t i = 0; i < ids.size(); ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(5));
  for (uint64_t id : ids) {
    const float* a = direct->FindOrCreate(id);
    const float* b = hashed->FindOrCreate(id);
    ASSERT_TRUE(std::equal(a, a + direct->row_floats(), b)) << "id " << id;
  }
  EXPECT_GE(direct->direct_limit(), ids.size());
  EXPECT_EQ(hashed->direct_limit(), 0u);
  for (uint64_t id : ids) ASSERT_NE(hashed->Find(id), nullptr) << id;
}

// Dense ids (MF's users and items) end up in the direct index, whatever order they arrive in:
// rows keep their address as the index grows and the hash's keys move across, every id is found
// by Find and FindBatch, hashed keys beside them are unaffected, and ForEach visits each once.
TEST(EmbeddingTableTest, DenseIdsMoveToTheDirectIndexAndKeepTheirRows) {
  auto table = MakeTable(SmallOptions());
  constexpr uint64_t kIds = 50000;
  std::vector<uint64_t> ids(kIds);
  for (uint64_t i = 0; i < kIds; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(7));
  std::unordered_map<uint64_t, float*> rows;
  for (uint64_t id : ids) {
    rows[id] = table->FindOrCreate(id);
    rows[id][0] = static_cast<float>(id);
    const uint64_t hashed = kernels::SplitMix64(id) | (uint64_t{1} << 63);
    rows[hashed] = table->FindOrCreate(hashed);
  }
  EXPECT_GE(table->direct_limit(), kIds);
  EXPECT_LE(table->direct_limit(), 4 * 2 * kIds);
  EXPECT_EQ(table->size(), static_cast<int64_t>(2 * kIds));
  std::vector<uint64_t> keys;
  for (const auto& [key, row] : rows) keys.push_back(key);
  std::vector<float*> found(keys.size());
  table->FindBatch(keys.data(), static_cast<int64_t>(keys.size()), false, found.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(found[i], rows[keys[i]]) << "key " << keys[i];
    ASSERT_EQ(table->Find(keys[i]), rows[keys[i]]) << "key " << keys[i];
  }
  for (uint64_t id = 0; id < kIds; ++id) ASSERT_EQ(rows[id][0], static_cast<float>(id));
  std::unordered_map<uint64_t, const float*> visited;
  table->ForEach([&](uint64_t key, const float* row) {
    EXPECT_TRUE(visited.emplace(key, row).second) << "key visited twice: " << key;
  });
  EXPECT_EQ(visited.size(), rows.size());
  for (const auto& [key, row] : visited) EXPECT_EQ(row, rows[key]) << "key " << key;
  EXPECT_EQ(table->Find(kIds), nullptr);  // below the limit, never created
}

// Ids below kMaxDirectKeys but far apart stay in the hash: the direct index never grows past
// four entries per such row, so a few large ids cannot make the table allocate gigabytes.
TEST(EmbeddingTableTest, SparseSmallIdsKeepTheDirectIndexSmall) {
  auto table = MakeTable(SmallOptions());
  for (uint64_t i = 1; i <= 2000; ++i) {
    table->FindOrCreate(i * 30011 % EmbeddingTable::kMaxDirectKeys);
  }
  EXPECT_LE(table->direct_limit(), 4 * 2048);
  EXPECT_LT(table->MemoryBytes(), size_t{1} << 22);
  for (uint64_t i = 1; i <= 2000; ++i) {
    EXPECT_NE(table->Find(i * 30011 % EmbeddingTable::kMaxDirectKeys), nullptr) << i;
  }
  // A restored row lands in either index as a created one would, with the values given.
  std::vector<float> values(table->row_floats(), 1.5f);
  table->Restore(3, values.data());
  table->Restore(uint64_t{1} << 40, values.data());
  for (uint64_t key : {uint64_t{3}, uint64_t{1} << 40}) {
    ASSERT_NE(table->Find(key), nullptr);
    EXPECT_EQ(RowValues(table->Find(key), table->row_floats()), values) << key;
  }
}

// One million dense ids (MF's tables) cost less than hashed keys: 4 bytes of direct index per
// row instead of the hash's 12 per slot.
TEST(EmbeddingTableTest, DenseIdsAllocateLessThanHashedKeys) {
  TableOptions options;
  options.dim = 33;
  options.zero_tail = 1;
  options.optimizer.kind = OptimizerKind::kAdagrad;
  auto dense = MakeTable(options);
  auto hashed = MakeTable(options);
  constexpr int64_t kRows = 1000000;
  for (int64_t i = 0; i < kRows; ++i) {
    dense->FindOrCreate(static_cast<uint64_t>(i));
    hashed->FindOrCreate(kernels::SplitMix64(i));
  }
  // The arenas are alike (same rows); the indexes differ: 2^20 direct entries of 4 bytes against
  // 2^21 hash slots of 12.
  const double dense_bytes = static_cast<double>(dense->MemoryBytes()) / kRows;
  const double hashed_bytes = static_cast<double>(hashed->MemoryBytes()) / kRows;
  std::printf("allocated bytes per row: dense ids %.1f, hashed keys %.1f\n", dense_bytes,
              hashed_bytes);
  EXPECT_EQ(dense->direct_limit(), uint64_t{1} << 20);
  EXPECT_GE(hashed_bytes - dense_bytes, 16.0);
}

}  // namespace
}  // namespace tessera::server
