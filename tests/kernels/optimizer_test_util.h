// OptimizerParams of each kind for the optimizer tests (optimizer_test.cc,
// sparse_optimizer_test.cc), and the tolerance Adam's float beta2 needs. Test-only code.
#pragma once

#include "kernels/sparse_optimizer.h"

namespace tessera::kernels::test_util {

inline OptimizerParams Sgd(float lr) {
  OptimizerParams p;
  p.kind = OptimizerKind::kSgd;
  p.lr = lr;
  return p;
}

inline OptimizerParams Adagrad(float lr, float eps, float initial_accumulator) {
  OptimizerParams p;
  p.kind = OptimizerKind::kAdagrad;
  p.lr = lr;
  p.eps = eps;
  p.initial_accumulator = initial_accumulator;
  return p;
}

inline OptimizerParams Adam(float lr, float beta1, float beta2, float eps) {
  OptimizerParams p;
  p.kind = OptimizerKind::kAdam;
  p.lr = lr;
  p.beta1 = beta1;
  p.beta2 = beta2;
  p.eps = eps;
  return p;
}

inline OptimizerParams Ftrl(float alpha, float beta, float l1, float l2) {
  OptimizerParams p;
  p.kind = OptimizerKind::kFtrl;
  p.lr = alpha;
  p.ftrl_beta = beta;
  p.l1 = l1;
  p.l2 = l2;
  return p;
}

// 1 - beta2 for beta2 = 0.999f is 9.99987e-4 in float (0.999 is not a float), so values that
// scale with 1 - beta2 (Adam's v and step size) are checked to this relative tolerance, not to
// 4 ulps. The weights are exact to 4 ulps: the error cancels between v and the step size.
inline constexpr float kBetaRounding = 2e-5f;

}  // namespace tessera::kernels::test_util
