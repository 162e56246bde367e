// The worker's per-step check (worker/finite_check.h): the first non-finite gradient, by table
// and key, then the loss.
#include "worker/finite_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tessera::worker {
namespace {

struct StepValues {
  std::vector<std::vector<uint64_t>> keys = {{11, 12, 13}, {}, {21, 22}};
  std::vector<int> dims = {2, 5, 1};
  std::vector<std::vector<float>> grads = {
      std::vector<float>(6, 0.5f), {}, std::vector<float>(2, -0.5f)};

  Status Check(double loss) {
    std::vector<float*> pointers;
    for (auto& g : grads) pointers.push_back(g.data());
    return CheckStepFinite(7, keys, dims, pointers, loss);
  }
};

TEST(FiniteCheckTest, FiniteStepPasses) {
  StepValues step;
  EXPECT_TRUE(step.Check(12.5).ok());
  step.grads[0][5] = 3e38f;  // large is not the worker's business: the server checks the rows
  EXPECT_TRUE(step.Check(1e300).ok());
}

TEST(FiniteCheckTest, FirstNonFiniteGradientNamesStepTableAndKey) {
  StepValues step;
  step.grads[2][1] = -INFINITY;
  step.grads[0][3] = NAN;  // key 12 (row 1 of dim 2): the first table wins
  Status s = step.Check(NAN);
  EXPECT_EQ(s.code(), StatusCode::kNonFinite);
  EXPECT_EQ(s.message(), "non-finite model at step 7: table 0, key 12: the gradient is nan");
  step.grads[0][3] = 0.0f;
  EXPECT_EQ(step.Check(1.0).message(),
            "non-finite model at step 7: table 2, key 22: the gradient is -inf");
}

TEST(FiniteCheckTest, NonFiniteLossWithFiniteGradientsIsNamed) {
  StepValues step;
  for (double loss : {static_cast<double>(INFINITY), static_cast<double>(NAN)}) {
    Status s = step.Check(loss);
    EXPECT_EQ(s.code(), StatusCode::kNonFinite);
    EXPECT_EQ(s.message(), "non-finite model at step 7: the training loss is " +
                               FormatNonFinite(loss) + ", every gradient finite");
  }
  EXPECT_EQ(FormatNonFinite(INFINITY), "inf");
  EXPECT_EQ(FormatNonFinite(-NAN), "-nan");
}

}  // namespace
}  // namespace tessera::worker
