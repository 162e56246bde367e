// Per-sample math of kernels/dense_ops.h shared by the CPU loop and the CUDA kernel (TS_HD), so
// both devices sum in the same order.
#pragma once

#include "kernels/hd.h"

namespace tessera::kernels {

// bias + (sum_f terms[f] + sum_j w[j] * x[j]), summed left to right; just bias when there is
// nothing to add (so a -0 bias stays -0, as a plain copy would).
TS_HD float FirstOrderLogit(float bias, const float* terms, int num_terms, const float* w,
                            const float* x, int num_x) {
  if (num_terms == 0 && num_x == 0) return bias;
  float sum = 0.0f;
  for (int f = 0; f < num_terms; ++f) sum += terms[f];
  for (int j = 0; j < num_x; ++j) sum += w[j] * x[j];
  return bias + sum;
}

}  // namespace tessera::kernels
