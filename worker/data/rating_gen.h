// Synthetic explicit-feedback ratings from a planted biased matrix-factorization model, for
// testing and benchmarking MF training against a known answer (the noise floor).
//
// Model (Koren, Bell, Volinsky 2009, eq. 4 plus noise):
//   r(u, i) = mu + b_u + b_i + p_u . q_i + eps,   mu = 3.5,
//   b_u, b_i ~ N(0, 0.3^2),   p_u, q_i ~ N(0, s^2 I) with s = rank^(-1/4) (so p.q has variance
//   ~1),   eps ~ N(0, noise^2).
// Ratings are continuous (not rounded or clipped). Each rating draws its user and its item
// independently with Zipf-skewed popularity: the id at popularity rank k (0-based, over a seeded
// random permutation of the ids, so popular ids are scattered) has probability proportional to
// 1 / (k + 1)^exponent. The same (user, item) pair may occur more than once. Each rating goes to
// the test set with probability test_fraction. Output is a pure function of the options: the
// same options give byte-identical files.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tessera::worker {

struct RatingGenOptions {
  int64_t users = 10000;       // number of user ids, 0..users-1
  int64_t items = 2000;        // number of item ids, 0..items-1
  int64_t ratings = 1000000;   // ratings drawn in total (train + test)
  int rank = 8;                // dimension of the planted factors p_u, q_i
  double noise = 0.5;          // standard deviation of eps
  uint64_t seed = 1;           // seeds every random choice
  double test_fraction = 0.1;  // probability that a rating goes to test.txt, in (0, 1)
  double user_zipf = 0.5;      // popularity exponent of users (0 = uniform)
  double item_zipf = 0.8;      // popularity exponent of items (0 = uniform)
};

// OK, or InvalidArgument saying which option is out of range.
Status ValidateRatingGenOptions(const RatingGenOptions& o);

// Writes, creating out_dir if missing:
//   OUT/train.txt, OUT/test.txt  LIBMF text "user item rating\n", ids 0-based, ratings with 4
//                                decimals (fixed point);
//   OUT/truth.json               {"users", "items", "ratings", "train_ratings", "test_ratings",
//                                "rank", "noise_sigma", "mu", "bias_std", "factor_std",
//                                "user_zipf", "item_zipf", "seed", "test_fraction",
//                                "test_noise_rmse"}; test_noise_rmse is the RMS of the noise drawn
//                                for the test ratings, i.e. the test RMSE of the true model.
// Logs progress (at most every 10%) for large sets. Memory: O((users + items) * rank).
// Errors: InvalidArgument for bad options; InvalidArgument/DataLoss when out_dir or a file
// cannot be created or written.
Status GenerateRatings(const RatingGenOptions& o, const std::string& out_dir);

}  // namespace tessera::worker
