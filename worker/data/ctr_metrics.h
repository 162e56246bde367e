// Evaluation metrics of binary click (CTR) models: exact ROC AUC and log loss.
//
// Labels are floats; a label counts as a click (positive) when it is > 0.5. All functions are
// pure: they read the caller's arrays (host memory) and keep nothing, so any thread may call them
// on any data. Nothing here is approximate: AUC is computed by sorting, not from a histogram.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tessera::worker {

// Exact area under the ROC curve of scores against labels: the probability that a random
// positive scores above a random negative, tied scores counting 1/2 (the Mann-Whitney U statistic
// with average ranks, divided by positives * negatives). O(n log n) time, O(n) memory.
// Returns NaN when n == 0, when only one class is present, or when a score is NaN.
// REQUIRES: scores and labels hold n elements each (may be null when n == 0).
double ExactAuc(const float* scores, const float* labels, size_t n);

// Mean binary cross-entropy -[y log p + (1 - y) log(1 - p)] in nats, with every probability
// clipped to [eps, 1 - eps] first so a confident mistake costs -log(eps), not infinity. Labels
// may be soft (any value in [0, 1]). Returns NaN when n == 0.
// REQUIRES: probs and labels hold n elements each; 0 < eps < 0.5.
double LogLoss(const float* probs, const float* labels, size_t n, double eps = 1e-7);

// The usual report of a binary classifier on one data set.
struct BinaryMetrics {
  double auc = 0.0;       // ExactAuc of the probabilities (NaN with one class)
  double logloss = 0.0;   // LogLoss with the given eps (NaN when count == 0)
  int64_t count = 0;      // examples evaluated
  int64_t positives = 0;  // examples whose label is > 0.5
};

// AUC, log loss and counts of predicted click probabilities against labels.
// REQUIRES: as ExactAuc and LogLoss.
BinaryMetrics ComputeBinaryMetrics(const float* probs, const float* labels, size_t n,
                                   double eps = 1e-7);

}  // namespace tessera::worker
