// Copies an MfProblem into a step staged by an MfDeviceWorkspace (kernels/mf_device.h), as the MF
// worker fills a step: indices and ratings, then the pulled rows. Header-only, test-only.
#pragma once

#include <cstring>
#include <memory>

#include "kernels/mf_device.h"
#include "tests/testing/mf_problem.h"

namespace tessera::testing {

inline kernels::MfStageShape MfShapeOf(const MfProblem& pr, int64_t plan_bytes = 0) {
  kernels::MfStageShape shape;
  shape.num_samples = static_cast<int64_t>(pr.ratings.size());
  shape.dim = pr.dim;
  shape.num_users = pr.num_users;
  shape.num_items = pr.num_items;
  shape.plan_bytes = plan_bytes;
  return shape;
}

inline kernels::MfStepScalars MfScalarsOf(const MfProblem& pr) {
  return {pr.global_mean, pr.l2, pr.l2_bias};
}

// Writes the problem's arrays into `step` (staged with MfShapeOf(pr)).
inline void FillMfStep(const MfProblem& pr, kernels::MfStagedStep* step) {
  const size_t n = pr.ratings.size();
  if (n > 0) {
    std::memcpy(step->user_index(), pr.user_index.data(), n * sizeof(int32_t));
    std::memcpy(step->item_index(), pr.item_index.data(), n * sizeof(int32_t));
    std::memcpy(step->ratings(), pr.ratings.data(), n * sizeof(float));
  }
  if (!pr.user_rows.empty()) {
    std::memcpy(step->user_rows(), pr.user_rows.data(), pr.user_rows.size() * sizeof(float));
  }
  if (!pr.item_rows.empty()) {
    std::memcpy(step->item_rows(), pr.item_rows.data(), pr.item_rows.size() * sizeof(float));
  }
}

}  // namespace tessera::testing
