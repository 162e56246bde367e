// Per-element math of the dense CTR layers (FM, DeepFM, Wide&Deep, DCN-v2): ReLU, sigmoid +
// binary cross-entropy, the FM second-order interaction and the DCN-v2 cross layer. Shared by
// the CPU loops and the CUDA kernels (TS_HD); loops, reductions and matrix products live in
// each kernel (kernels/dense.h, fm.h, cross.h).
#pragma once

#include <math.h>

#include "kernels/hd.h"

namespace tessera::kernels {

// max(x, 0).
TS_HD float Relu(float x) { return x > 0.0f ? x : 0.0f; }

// d relu / d x times dy, written from the OUTPUT y = relu(x): y > 0 exactly when x > 0, so the
// backward needs no copy of the input (the forward may run in place). At x = 0 the gradient is 0.
TS_HD float ReluGrad(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

// 1 / (1 + exp(-z)), never evaluating exp of a positive number: finite and in [0, 1] for every
// finite z (and for +-inf).
TS_HD float Sigmoid(float z) {
  const float e = expf(-fabsf(z));  // in (0, 1]
  const float inv = 1.0f / (1.0f + e);
  return z >= 0.0f ? inv : e * inv;
}

// Binary cross-entropy of sigmoid(z) against a label y in [0, 1] (soft labels allowed):
//   -y log(sigmoid(z)) - (1 - y) log(1 - sigmoid(z)) = max(z, 0) - z y + log(1 + exp(-|z|)).
// The right-hand form never takes the log of a rounded-to-zero probability, so it is finite for
// every finite z (e.g. z = 1e4, y = 0 gives 1e4, not inf).
TS_HD float SigmoidBce(float z, float y) {
  return fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
}

// d (scale * SigmoidBce(z, y)) / d z = scale * (sigmoid(z) - y); in [-|scale|, |scale|].
TS_HD float SigmoidBceGrad(float z, float y, float scale) { return scale * (Sigmoid(z) - y); }

// FM second-order term of one embedding dimension d (Rendle 2010, eq. 5):
//   sum_{f < g} v_f[d] v_g[d] = 0.5 * ((sum_f v_f[d])^2 - sum_f v_f[d]^2),
// given sum = sum_f v_f[d] and sum_sq = sum_f v_f[d]^2.
TS_HD float FmInteraction(float sum, float sum_sq) { return 0.5f * (sum * sum - sum_sq); }

// d y / d v_f[d] times dy, where y sums FmInteraction over d: dy * (sum - v_f[d]).
TS_HD float FmGrad(float dy, float sum, float v) { return dy * (sum - v); }

// DCN-v2 cross layer (Wang et al. 2021, eq. 1), per element i of a sample:
//   x_{l+1}[i] = x0[i] * z[i] + xl[i],   z = W xl + b (the matrix product is the kernel's).
TS_HD float CrossOutput(float x0, float z, float xl) { return x0 * z + xl; }

// d loss / d z[i] = dy[i] * x0[i].
TS_HD float CrossGradZ(float dy, float x0) { return dy * x0; }

// d loss / d x0[i] through this layer's product (the identity path of layer 0, where xl = x0,
// is the caller's): dy[i] * z[i].
TS_HD float CrossGradX0(float dy, float z) { return dy * z; }

}  // namespace tessera::kernels
