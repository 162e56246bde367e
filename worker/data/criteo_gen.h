// Synthetic Criteo-format click logs from a planted logistic click model, for testing CTR models
// (LR, FM, DeepFM, ...) against a known answer: the test AUC and log loss of the true click
// probabilities (the oracle), which no model can beat in expectation.
//
// A row has 13 integer features I1..I13 and 26 categorical features C1..C26, each possibly
// missing. Its click probability is sigmoid(z) with
//   z = bias + signal_scale * ( sum_f w_f[C_f]                              first order, 26 fields
//                             + interaction_scale * sum_(a,b) <v_a[C_a], v_b[C_b]>   3 pairs
//                             + g(I2, I5, I7) ),                            dense effects
// and the label is a Bernoulli draw of that probability.
//  * Values of C_f are drawn with Zipf-skewed popularity (the id at popularity rank k has
//    probability proportional to 1 / (k + 1)^zipf_f, over a seeded permutation of the ids) from
//    vocabularies of 3 to 100000 values (times vocab_scale); C_f is missing with probability
//    missing_f (Criteo-like: C19, C20, C25, C26 about 44%, C22 about 76%). The sizes, exponents,
//    rates and weight scales per field are fixed (criteo_gen.cc) and written to truth.json.
//  * w_f[v] ~ N(0, s_f^2 * min(1, p_f(v) / 0.01)), where p_f(v) is the popularity of v: values
//    rarer than 1% of rows carry proportionally less signal, which keeps the planted model
//    learnable from 10^5-10^6 rows. A missing C_f is a value of its own with weight
//    ~ N(0, s_f^2). C12 and C21 (100000 values each) carry no signal; C17 (10 values, s = 0.6),
//    C23 and C14 the most.
//  * Interactions: the pairs (C17, C23), (C14, C6) and (C9, C20), fields of 3 to 25 values,
//    interact through rank-2 value embeddings with entries ~ N(0, t^2 * min(1, p_f(v) / 0.01)),
//    2 t^4 = 0.4^2: the dot product of two popular values has standard deviation 0.4. A missing
//    value has a zero embedding. The pairs are disjoint, so an FM or DeepFM with embedding
//    dimension >= 6 represents them exactly; a model without crosses (LR) cannot.
//  * Integers are counts floor(exp(m_j + s_j * N(0, 1))) (so many are 0), capped at 10^12, and
//    missing with Criteo-like rates. With x_j = log1p(I_j), a missing I_j counting as 0:
//      g = 0.25 * (x2 - 2) - 0.4 * tanh((x5 - 7.5) / 1.5) + 0.5 * exp(-(x7 - 1.5)^2).
//    The other ten integers carry no signal.
//  * bias is calibrated on a separate sample so that the mean click probability is target_ctr.
// With the defaults the oracle test AUC is about 0.82-0.84 (by seed) and the positive rate 0.25.
//
// Each row goes to the test set with probability test_fraction. Independent random streams per
// purpose keep the rows independent of test_fraction, and the planted model independent of rows:
// more rows with the same seed are more data from the same model. Output is a pure function of
// the options: the same options give byte-identical files.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tessera::worker {

struct CriteoGenOptions {
  int64_t rows = 1000000;      // rows drawn in total (train + test)
  uint64_t seed = 1;           // seeds every random choice
  double test_fraction = 0.1;  // probability that a row goes to test.tsv, in (0, 1)
  double target_ctr = 0.25;    // mean click probability the bias is calibrated to, in [0.01, 0.99]
  double signal_scale = 1.0;   // multiplies every planted effect (not the bias); higher is easier
  double interaction_scale = 1.0;  // multiplies the pairwise interactions; 0 = first order only
  double vocab_scale = 1.0;  // multiplies every vocabulary size (each at least 2), in (0, 1000]
};

// OK, or InvalidArgument saying which option is out of range.
Status ValidateCriteoGenOptions(const CriteoGenOptions& o);

// Writes, creating out_dir if missing:
//   OUT/train.tsv, OUT/test.tsv  Criteo TSV: "label \t I1 .. I13 \t C1 .. C26 \n", 40 fields, an
//                                empty field when missing; label 0/1; integers non-negative
//                                decimal; categorical values 8 lowercase hex digits, distinct
//                                across all fields;
//   OUT/truth.json               options, counts ("rows", "train_rows", "test_rows",
//                                "train_positives", "test_positives", "positive_rate", ...), the
//                                calibrated "bias", the planted model's own test metrics
//                                "oracle_auc" and "oracle_logloss" (null if undefined, e.g. a
//                                test set of one class), "base_logloss" (predicting the test
//                                positive rate for every row), and the per-field parameters.
// Logs progress (at most every 10%) for large sets. Memory: O(total vocabulary + test rows).
// Errors: InvalidArgument for bad options; InvalidArgument/DataLoss when out_dir or a file
// cannot be created or written.
Status GenerateCriteo(const CriteoGenOptions& o, const std::string& out_dir);

}  // namespace tessera::worker
