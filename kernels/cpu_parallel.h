// Element-wise CPU work of the CTR step on the threads its matrix products run on.
//
// Debian's oneDNN is the OpenMP build: a product runs on the calling thread's OpenMP team
// (kernels/gemm_cpu.h, SetGemmThreads), whose other threads spin in libgomp between products.
// They spun while the calling thread alone ran the pooling, the FM term, the ReLU backwards and
// the copies: 11 % of a DeepFM run's CPU samples (docs/PERFORMANCE.md). CpuParallelFor cuts such
// a loop over the same team, so the threads that wait for the next product take part of it: one
// thread policy for both kinds of work, and no second pool competing for the cores.
//
// The cut never changes a result: a loop handed to CpuParallelFor computes each item from its
// inputs alone (a column sum is cut into fixed blocks of rows whose sums are added in block order,
// a scatter-add is not cut at all), so the bits are the same on 1 and on 2 threads
// (tests/kernels/cpu_parallel_test.cc).
//
// Under ThreadSanitizer the loops run on the calling thread: Debian's libgomp is not
// instrumented, so TSan cannot see the barrier that orders a team's writes before the caller's
// reads.
#pragma once

#include <cstdint>

namespace tessera::kernels {

// Calls body(context, begin, end) on pieces that cut [0, n) once each, every piece but the last a
// multiple of `align` items long, on the calling thread's OpenMP team: at most GemmThreads()
// threads, and no more than leave each `grain` items of the work. The threads take the pieces in
// turn (a few per thread), so one that starts late takes fewer. Returns when every piece is done.
// n < 2 * grain (or a team of one) runs body(0, n) on the calling thread alone.
void CpuParallelRanges(int64_t n, int64_t grain, int64_t align,
                       void (*body)(void* context, int64_t begin, int64_t end), void* context);

// The same for a callable fn(begin, end).
template <typename Fn>
void CpuParallelFor(int64_t n, int64_t grain, int64_t align, const Fn& fn) {
  CpuParallelRanges(
      n, grain, align,
      [](void* context, int64_t begin, int64_t end) {
        (*static_cast<const Fn*>(context))(begin, end);
      },
      const_cast<Fn*>(&fn));
}

// Items per thread below which a loop stays on one thread: about 20 us of streaming floats, so
// that waking the team costs a few per cent of the loop at most.
inline constexpr int64_t kParallelGrainFloats = 32768;

}  // namespace tessera::kernels
