// A random CTR batch with its own host storage (labels, dense features, bags of keys with their
// weights, and the pulled embedding and linear rows), shared by the CTR model tests (CPU and
// CUDA). Few rows, so rows repeat across samples. Header-only, so tessera_testing need not link
// the worker. Test-only code.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "worker/ctr_model.h"

namespace tessera::testing {

struct CtrBatch {
  worker::CtrModelConfig config;  // the model the batch is for
  int64_t batch = 0;
  int64_t rows = 0;
  std::vector<float> labels, dense, weights, emb, linear;
  std::vector<int64_t> offsets;
  std::vector<int32_t> indices;

  // The batch over this object's own (host) arrays.
  worker::CtrBatchView View() const {
    worker::CtrBatchView v;
    v.batch_size = batch;
    v.labels = labels.data();
    v.dense = dense.data();
    v.offsets = offsets.data();
    v.indices = indices.data();
    v.weights = weights.data();
    v.num_rows = rows;
    v.emb_rows = emb.data();
    v.linear_rows = linear.data();
    return v;
  }
};

// `batch_size` samples over `num_rows` rows for a model of `config` (its num_fields, num_dense and
// emb_dim shape the batch): labels 0 or 1, dense features in [0, 1), and per field a bag of one
// key of weight 1 (one-hot) or, multi_hot, of min_bag_keys to 3 keys weighted in [0.5, 1.5);
// embedding and linear rows in [-0.5, 0.5). The same batch for the same arguments.
inline CtrBatch RandomCtrBatch(const worker::CtrModelConfig& config, int64_t batch_size,
                               int64_t num_rows, bool multi_hot, int min_bag_keys, unsigned seed) {
  constexpr int kMaxBagKeys = 3;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  CtrBatch b;
  b.config = config;
  b.batch = batch_size;
  b.rows = num_rows;
  b.offsets.push_back(0);
  for (int64_t s = 0; s < batch_size; ++s) {
    b.labels.push_back(static_cast<float>(rng() % 2));
    for (int j = 0; j < config.num_dense; ++j) b.dense.push_back(u(rng) + 0.5f);
    for (int f = 0; f < config.num_fields; ++f) {
      const int keys =
          multi_hot ? min_bag_keys + static_cast<int>(rng() % (kMaxBagKeys + 1 - min_bag_keys)) : 1;
      for (int k = 0; k < keys; ++k) {
        b.indices.push_back(static_cast<int32_t>(rng() % num_rows));  // rows repeat across samples
        b.weights.push_back(multi_hot ? 1.0f + u(rng) : 1.0f);
      }
      b.offsets.push_back(static_cast<int64_t>(b.indices.size()));
    }
  }
  for (int64_t i = 0; i < num_rows * config.emb_dim; ++i) b.emb.push_back(u(rng));
  for (int64_t i = 0; i < num_rows; ++i) b.linear.push_back(u(rng));
  return b;
}

}  // namespace tessera::testing
