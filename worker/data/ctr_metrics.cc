#include "worker/data/ctr_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "core/logging.h"

namespace tessera::worker {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool IsPositive(float label) { return label > 0.5f; }

}  // namespace

double ExactAuc(const float* scores, const float* labels, size_t n) {
  // (score, is_positive) pairs sorted by score: 8 bytes an example, so the sort stays in cache
  // longer than an index sort would.
  std::vector<std::pair<float, bool>> examples(n);
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(scores[i])) return kNaN;  // NaN has no place in a strict weak order
    examples[i] = {scores[i], IsPositive(labels[i])};
  }
  std::sort(examples.begin(), examples.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // Walk groups of equal scores in increasing order. A positive beats every negative of a lower
  // group and ties with each negative of its own group (Mann-Whitney U with average ranks).
  double wins = 0.0;  // U: counts of (positive, negative) pairs, ties as 1/2
  double negatives_below = 0.0;
  double positives = 0.0;
  size_t begin = 0;
  while (begin < n) {
    size_t end = begin;
    double group_positives = 0.0;
    while (end < n && examples[end].first == examples[begin].first) {
      group_positives += examples[end].second ? 1.0 : 0.0;
      ++end;
    }
    double group_negatives = static_cast<double>(end - begin) - group_positives;
    wins += group_positives * (negatives_below + 0.5 * group_negatives);
    negatives_below += group_negatives;
    positives += group_positives;
    begin = end;
  }
  if (positives == 0.0 || negatives_below == 0.0) return kNaN;
  return wins / (positives * negatives_below);
}

double LogLoss(const float* probs, const float* labels, size_t n, double eps) {
  TS_CHECK(eps > 0.0 && eps < 0.5) << "eps " << eps;
  if (n == 0) return kNaN;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double p = std::clamp(static_cast<double>(probs[i]), eps, 1.0 - eps);
    double y = labels[i];
    sum -= y * std::log(p) + (1.0 - y) * std::log1p(-p);
  }
  return sum / static_cast<double>(n);
}

BinaryMetrics ComputeBinaryMetrics(const float* probs, const float* labels, size_t n, double eps) {
  BinaryMetrics m;
  m.auc = ExactAuc(probs, labels, n);
  m.logloss = LogLoss(probs, labels, n, eps);
  m.count = static_cast<int64_t>(n);
  m.positives = std::count_if(labels, labels + n, IsPositive);
  return m;
}

}  // namespace tessera::worker
