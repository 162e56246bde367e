// Per-sample math of biased matrix factorization (Koren, Bell, Volinsky 2009, eq. 4-5):
//   r_hat(u, i) = mu + b_u + b_i + p_u . q_i
//   loss        = 0.5 * e^2 + 0.5 * l2 * (|p_u|^2 + |q_i|^2) + 0.5 * l2_bias * (b_u^2 + b_i^2),
//   e = r - r_hat
// A user or item row is [factors(dim) | bias], stride MfRowStride(dim). Shared by the CPU loops
// and the CUDA kernels (TS_HD); the dot product itself is a loop and lives in each kernel.
#pragma once

#include <cstdint>

#include "kernels/hd.h"

namespace tessera::kernels {

// Floats per user/item row: the factors, then the bias.
TS_HD int64_t MfRowStride(int dim) { return static_cast<int64_t>(dim) + 1; }

// r_hat = mu + b_u + b_i + p_u . q_i, given the dot product.
TS_HD float MfPrediction(float global_mean, float user_bias, float item_bias, float dot) {
  return global_mean + user_bias + item_bias + dot;
}

// e = r - r_hat: the residual whose square the loss halves.
TS_HD float MfError(float rating, float prediction) { return rating - prediction; }

// d loss / d p_u[j] = -e * q_i[j] + l2 * p_u[j] (and symmetrically for q_i[j]).
TS_HD float MfFactorGrad(float err, float other_factor, float own_factor, float l2) {
  return l2 * own_factor - err * other_factor;
}

// d loss / d b_u = -e + l2_bias * b_u (and symmetrically for b_i).
TS_HD float MfBiasGrad(float err, float bias, float l2) { return l2 * bias - err; }

}  // namespace tessera::kernels
