// Finite checks of the values a training step touches: a worker's gradients before they are
// pushed, rows and parameters read from a checkpoint or an export (host memory; a CUDA worker
// checks what it downloaded anyway: the push frame and the loss), and, through NonFiniteFlag, a
// server's rows inside the update that writes them (kernels/sparse_optimizer.h). Branch-free,
// vectorised bit tests, so that a check of what a step just wrote costs a small part of the step;
// the position of the first bad value is looked for only once one was seen.
//
// Thread-compatible values and pure functions; never allocate.
#pragma once

#include <cstdint>
#include <cstring>

namespace tessera::kernels {

// The finite test as bits: (bits & exponent mask) + the exponent's lowest bit sets the sign bit
// exactly when the exponent is all ones (NaN or +-inf). ORed over values, the sign bit says
// whether any was not finite: integer operations that vectorise in any loop, never waiting on a
// float add. Kernels that write values call it on what they write (sparse_optimizer_cpu.cc).
inline uint32_t NonFiniteFlag(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return (bits & 0x7f800000u) + 0x00800000u;
}
// True when `flags`, an OR of NonFiniteFlag values, saw only finite values.
inline bool FlagsFinite(uint32_t flags) { return (flags & 0x80000000u) == 0; }
// Index of the first element of values[0, n) that is NaN or +-inf; n when all are finite.
// REQUIRES: n >= 0.
int64_t FindNonFinite(const float* values, int64_t n);

}  // namespace tessera::kernels
