// Finite checks of the values a training step touches: a worker's gradients before they are
// pushed, rows and parameters read from a checkpoint or an export (host memory; a CUDA worker
// checks what it downloaded anyway: the push frame and the loss), and, through NonFiniteLanes,
// a server's rows inside the update that writes them (kernels/sparse_optimizer.h). Branch-free,
// vectorised sums, so that a check of what a step just wrote costs a small fraction of the step;
// the position of the first bad value is looked for only once one was seen.
//
// Thread-compatible values and pure functions; never allocate.
#pragma once

#include <cstdint>

namespace tessera::kernels {

// Adds v - v for every value (+0 when v is finite, NaN for NaN and +-inf) to 8 independent float
// lanes: the lanes let the loop vectorise without reassociating a float sum, and a NaN, once in a
// lane, stays there. For a kernel that checks the values it has just written, still in cache.
class NonFiniteLanes {
 public:
  void Add(const float* values, int64_t n) {
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) acc_[k] += values[i + k] - values[i + k];
    }
    for (; i < n; ++i) acc_[0] += values[i] - values[i];
  }
  // True when every value added since construction or the last Reset was finite.
  bool AllFinite() const {
    bool finite = true;
    for (int k = 0; k < kLanes; ++k) finite &= acc_[k] == acc_[k];
    return finite;
  }
  void Reset() {
    for (float& a : acc_) a = 0.0f;
  }

 private:
  static constexpr int kLanes = 8;
  float acc_[kLanes] = {};
};

// Index of the first element of values[0, n) that is NaN or +-inf; n when all are finite.
// REQUIRES: n >= 0.
int64_t FindNonFinite(const float* values, int64_t n);

}  // namespace tessera::kernels
