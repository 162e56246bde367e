// Finite checks of the values a training step touches: a worker's gradients before they are
// pushed, rows and parameters read from a checkpoint or an export (host memory; a CUDA worker
// checks what it downloaded anyway: the push frame and the loss), and, through NonFiniteLanes,
// a server's rows inside the update that writes them (kernels/sparse_optimizer.h). Branch-free,
// vectorised bit tests, so that a check of what a step just wrote costs a small part of the step;
// the position of the first bad value is looked for only once one was seen.
//
// Thread-compatible values and pure functions; never allocate.
#pragma once

#include <cstdint>
#include <cstring>

namespace tessera::kernels {

// Looks at every value's exponent bits: (bits & exponent mask) + the exponent's lowest bit sets
// the sign bit exactly when the exponent is all ones (NaN or +-inf), and the OR of those over the
// values keeps it. Integer operations the compiler vectorises, never waiting on a float add; for
// a kernel that checks the values it has just written, still in cache.
class NonFiniteLanes {
 public:
  void Add(const float* values, int64_t n) {
    // One local accumulator: an OR reduction GCC vectorises (a member would be reloaded on every
    // iteration, since `values` may alias it as far as the compiler knows).
    uint32_t acc = 0;
    for (int64_t i = 0; i < n; ++i) acc |= Flag(values[i]);
    acc_ |= acc;
  }
  // True when every value added since construction or the last Reset was finite.
  bool AllFinite() const { return (acc_ & kSign) == 0; }
  void Reset() { acc_ = 0; }

 private:
  static constexpr uint32_t kExponent = 0x7f800000u, kExponentLsb = 0x00800000u,
                            kSign = 0x80000000u;
  static uint32_t Flag(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    return (bits & kExponent) + kExponentLsb;
  }
  uint32_t acc_ = 0;
};

// Index of the first element of values[0, n) that is NaN or +-inf; n when all are finite.
// REQUIRES: n >= 0.
int64_t FindNonFinite(const float* values, int64_t n);

}  // namespace tessera::kernels
