// Helpers of the EmbeddingTable tests (embedding_table_test.cc, embedding_table_direct_test.cc).
#pragma once

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "server/embedding_table.h"

namespace tessera::server {

inline std::unique_ptr<EmbeddingTable> MakeTable(const TableOptions& options) {
  auto table = EmbeddingTable::Create(options);
  EXPECT_TRUE(table.ok()) << table.status().ToString();
  return std::move(table).value();
}

// A small Adagrad table that starts at the smallest index, so tests cross many doublings.
inline TableOptions SmallOptions() {
  TableOptions options;
  options.table_id = 3;
  options.dim = 6;
  options.seed = 42;
  options.init_std = 0.5f;
  options.optimizer.kind = kernels::OptimizerKind::kAdagrad;
  options.optimizer.initial_accumulator = 0.25f;
  options.initial_capacity = 0;
  return options;
}

inline std::vector<float> RowValues(const float* row, int row_floats) {
  return std::vector<float>(row, row + row_floats);
}

}  // namespace tessera::server
