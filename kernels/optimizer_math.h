// Per-element optimizer updates shared by the CPU loops and the CUDA kernels (TS_HD): one
// formula for both devices, so the CPU unit tests check the arithmetic the GPU runs.
// No loops, no memory beyond the element, no I/O; the one exception is row-wise Adagrad's mean
// square of a gradient row, a reduction whose order both devices must share.
#pragma once

#include <cmath>

#include "kernels/hd.h"

namespace tessera::kernels {

struct SgdParams {
  float lr = 0.01f;  // learning rate (eta)
};

struct AdagradParams {
  float lr = 0.05f;   // learning rate (eta)
  float eps = 1e-8f;  // added to sqrt(acc) so a zero accumulator does not divide by zero
};

struct AdamParams {
  float lr = 0.001f;     // learning rate (alpha)
  float beta1 = 0.9f;    // decay of the first moment m
  float beta2 = 0.999f;  // decay of the second moment v
  float eps = 1e-8f;     // added to sqrt(v) (not bias-corrected: the "epsilon hat" form)
};

struct FtrlParams {
  float alpha = 0.05f;  // learning rate: the per-coordinate rate is alpha / (beta + sqrt(n))
  float beta = 1.0f;    // > 0 keeps the rate finite before the first gradient (n = 0)
  float l1 = 0.0f;      // lambda_1: |z| <= l1 gives an exact zero weight (sparsity)
  float l2 = 0.0f;      // lambda_2
};

// w <- w - eta * g.
TS_HD float SgdStep(float w, float g, const SgdParams& p) { return w - p.lr * g; }

// Adagrad (Duchi, Hazan, Singer 2011), diagonal form: acc <- acc + g^2;
// w <- w - eta * g / (sqrt(acc) + eps). Updates *acc and returns the new weight.
TS_HD float AdagradStep(float w, float g, float* acc, const AdagradParams& p) {
  *acc += g * g;
  return w - p.lr * g / (sqrtf(*acc) + p.eps);
}

// Row-wise Adagrad (the embedding-table form of FBGEMM and TorchRec; LIBMF's per-row adaptive
// rate): one accumulator per row, acc <- acc + mean_j(g_j^2), then every weight of the row moves
// by the same scale: w_j <- w_j - (eta / (sqrt(acc) + eps)) g_j. One float of state per row
// instead of dim. The mean square sums in kRowwiseLanes partial sums, j mod kRowwiseLanes, added
// in lane order: the same order on every vector width, so the CPU vectorises it, and the CUDA
// kernel's threads take a lane each and add the lanes in that order too (nvcc fuses the
// multiply-adds: the bits agree to rounding; on the emulated device they are the CPU's).
constexpr int kRowwiseLanes = 16;

TS_HD float RowwiseMeanSquare(const float* g, int dim) {
  float lanes[kRowwiseLanes] = {};
  int j = 0;
  for (; j + kRowwiseLanes <= dim; j += kRowwiseLanes) {
    for (int k = 0; k < kRowwiseLanes; ++k) lanes[k] += g[j + k] * g[j + k];
  }
  for (int k = 0; j + k < dim; ++k) lanes[k] += g[j + k] * g[j + k];
  float sum = 0.0f;
  for (int k = 0; k < kRowwiseLanes; ++k) sum += lanes[k];
  return sum / static_cast<float>(dim);
}

// Lane `lane` of RowwiseMeanSquare: the squares of g[j] for j = lane mod kRowwiseLanes, added in
// order from 0 (the CUDA kernel's threads each take one lane; lanes[lane] above is this sum).
TS_HD float RowwiseLaneSquares(const float* g, int dim, int lane) {
  float sum = 0.0f;
  for (int j = lane; j < dim; j += kRowwiseLanes) sum += g[j] * g[j];
  return sum;
}

// Adds the row's mean square to *acc and returns the row's step scale eta / (sqrt(acc) + eps).
TS_HD float RowwiseAdagradScale(float mean_square, float* acc, const AdagradParams& p) {
  *acc += mean_square;
  return p.lr / (sqrtf(*acc) + p.eps);
}

// w <- w - scale * g.
TS_HD float RowwiseAdagradStep(float w, float g, float scale) { return w - scale * g; }

// Adam (Kingma, Ba 2015), in the form of Section 2's last paragraph, as PyTorch's SparseAdam and
// TF's LazyAdam compute it: the bias corrections fold into one step size per row,
//   step_size = lr * sqrt(1 - beta2^t) / (1 - beta1^t),
// for the row's t-th update (t >= 1, counted per row: lazy Adam updates only the rows a push
// touches, so each row keeps its own t). Computed once per row, then AdamStep per element.
TS_HD float AdamStepSize(float t, const AdamParams& p) {
  return p.lr * sqrtf(1.0f - powf(p.beta2, t)) / (1.0f - powf(p.beta1, t));
}

// m <- beta1 m + (1 - beta1) g; v <- beta2 v + (1 - beta2) g^2;
// w <- w - step_size * m / (sqrt(v) + eps). Updates *m, *v and returns the new weight.
TS_HD float AdamStep(float w, float g, float* m, float* v, float step_size, const AdamParams& p) {
  *m = p.beta1 * *m + (1.0f - p.beta1) * g;
  *v = p.beta2 * *v + (1.0f - p.beta2) * g * g;
  return w - step_size * *m / (sqrtf(*v) + p.eps);
}

// FTRL-proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013,
// Algorithm 1), per coordinate. The weight is a function of the state (z, n):
//   w = 0                                                  if |z| <= l1
//   w = -(z - sgn(z) l1) / ((beta + sqrt(n)) / alpha + l2)  otherwise.
// REQUIRES: alpha > 0 and beta > 0 (or n > 0), so the denominator is positive.
TS_HD float FtrlWeight(float z, float n, const FtrlParams& p) {
  // Soft threshold without a branch, so the CPU loop vectorises: z - sgn(z) l1 for |z| > l1
  // equals sgn(z) (|z| - l1) exactly; for |z| <= l1 the magnitude is 0 (w = +-0).
  const float excess = fabsf(z) - p.l1;
  const float magnitude = excess > 0.0f ? excess : 0.0f;
  return -copysignf(magnitude, z) / ((p.beta + sqrtf(n)) / p.alpha + p.l2);
}

// One FTRL round for gradient g at the current weight w (= FtrlWeight(*z, *n) when the state
// is consistent): sigma = (sqrt(n + g^2) - sqrt(n)) / alpha; z <- z + g - sigma w;
// n <- n + g^2. Updates *z, *n and returns the new weight FtrlWeight(z, n).
TS_HD float FtrlStep(float w, float g, float* z, float* n, const FtrlParams& p) {
  const float n_new = *n + g * g;
  const float sigma = (sqrtf(n_new) - sqrtf(*n)) / p.alpha;
  *z += g - sigma * w;
  *n = n_new;
  return FtrlWeight(*z, n_new, p);
}

// The z that gives weight w at n = 0, i.e. FtrlWeight(z, 0) == w up to rounding:
// z = -(w (beta / alpha + l2) + sgn(w) l1), and 0 for w = 0. Lets a row start from non-zero
// initial weights with a consistent state.
TS_HD float FtrlZForWeight(float w, const FtrlParams& p) {
  if (w == 0.0f) return 0.0f;
  return -(w * (p.beta / p.alpha + p.l2) + copysignf(p.l1, w));
}

}  // namespace tessera::kernels
