// A random biased-MF batch with its own host storage, shared by the MF kernel tests (CPU,
// device workspace, CUDA). Few users and items, so rows repeat across samples. Header-only, so
// tessera_testing need not link the kernels. Test-only code; one problem per thread.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/mf.h"

namespace tessera::testing {

struct MfProblem {
  int dim = 0;
  int64_t num_users = 0;
  int64_t num_items = 0;
  std::vector<int32_t> user_index;
  std::vector<int32_t> item_index;
  std::vector<float> ratings;
  std::vector<float> user_rows;  // num_users x (dim + 1): factors, then the bias
  std::vector<float> item_rows;  // num_items x (dim + 1)
  // Copied into every batch.
  float global_mean = 3.5f;
  float l2 = 0.05f;
  float l2_bias = 0.02f;

  // The batch over this problem's own (host) arrays.
  kernels::MfBatch Batch() const {
    return View(user_index.data(), item_index.data(), ratings.data(), user_rows.data(),
                item_rows.data());
  }
  // The batch of this problem's sizes and hyperparameters over copies of its arrays elsewhere
  // (device buffers, for instance).
  kernels::MfBatch View(const int32_t* user_index_data, const int32_t* item_index_data,
                        const float* ratings_data, const float* user_rows_data,
                        const float* item_rows_data) const {
    kernels::MfBatch b;
    b.num_samples = static_cast<int64_t>(ratings.size());
    b.user_index = user_index_data;
    b.item_index = item_index_data;
    b.ratings = ratings_data;
    b.dim = dim;
    b.user_rows = user_rows_data;
    b.num_users = num_users;
    b.item_rows = item_rows_data;
    b.num_items = num_items;
    b.global_mean = global_mean;
    b.l2 = l2;
    b.l2_bias = l2_bias;
    return b;
  }
};

// `num_samples` samples of uniformly drawn users and items with ratings uniform in [1, 5), rows
// uniform in [-0.5, 0.5); the same problem for the same arguments on every platform's
// std::mt19937 (the distributions are libstdc++'s).
inline MfProblem RandomMfProblem(unsigned seed, int64_t num_samples, int dim, int64_t num_users,
                                 int64_t num_items) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> factor(-0.5f, 0.5f);
  std::uniform_real_distribution<float> rating(1.0f, 5.0f);
  MfProblem pr;
  pr.dim = dim;
  pr.num_users = num_users;
  pr.num_items = num_items;
  pr.user_rows.resize(num_users * (dim + 1));
  pr.item_rows.resize(num_items * (dim + 1));
  for (float& v : pr.user_rows) v = factor(rng);
  for (float& v : pr.item_rows) v = factor(rng);
  if (num_users == 0 || num_items == 0) return pr;  // no samples without users and items
  std::uniform_int_distribution<int32_t> user(0, static_cast<int32_t>(num_users - 1));
  std::uniform_int_distribution<int32_t> item(0, static_cast<int32_t>(num_items - 1));
  for (int64_t s = 0; s < num_samples; ++s) {
    pr.user_index.push_back(user(rng));
    pr.item_index.push_back(item(rng));
    pr.ratings.push_back(rating(rng));
  }
  return pr;
}

}  // namespace tessera::testing
