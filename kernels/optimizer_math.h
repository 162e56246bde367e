// Per-element optimizer updates shared by the CPU loops and the CUDA kernels (TS_HD): one
// formula for both devices, so the CPU unit tests check the arithmetic the GPU runs.
// No loops, no memory beyond the element, no I/O.
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

// w <- w - eta * g.
TS_HD float SgdStep(float w, float g, const SgdParams& p) { return w - p.lr * g; }

// Adagrad (Duchi, Hazan, Singer 2011), diagonal form: acc <- acc + g^2;
// w <- w - eta * g / (sqrt(acc) + eps). Updates *acc and returns the new weight.
TS_HD float AdagradStep(float w, float g, float* acc, const AdagradParams& p) {
  *acc += g * g;
  return w - p.lr * g / (sqrtf(*acc) + p.eps);
}

}  // namespace tessera::kernels
