#include "kernels/cpu_parallel.h"

#include <algorithm>
#include <atomic>

// libgomp's entry point for a parallel region (what g++ emits for `#pragma omp parallel`, stable
// since GCC 4.9) and the team size: declared here, as gemm_cpu.cc declares its two, so that
// the code needs no -fopenmp and a Clang build brings no second OpenMP runtime beside libgomp.
extern "C" {
void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);
int omp_get_max_threads(void);
}

namespace tessera::kernels {
namespace {

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TS_CPU_PARALLEL_SERIAL 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TS_CPU_PARALLEL_SERIAL 1
#endif

// The work is cut into kPiecesPerThread pieces per thread, which the team's threads take in turn
// from a shared counter: a thread that starts late (woken from its wait, or descheduled for a
// moment) or runs on colder caches takes fewer pieces instead of holding up the region's end.
constexpr int64_t kPiecesPerThread = 4;

struct Region {
  int64_t n;
  int64_t piece;  // a multiple of the alignment
  void (*body)(void*, int64_t, int64_t);
  void* context;
  std::atomic<int64_t> next{0};
};

void RunPieces(void* data) {
  Region& r = *static_cast<Region*>(data);
  for (;;) {
    const int64_t begin = r.next.fetch_add(r.piece, std::memory_order_relaxed);
    if (begin >= r.n) return;
    r.body(r.context, begin, std::min(r.n, begin + r.piece));
  }
}

}  // namespace

void CpuParallelRanges(int64_t n, int64_t grain, int64_t align,
                       void (*body)(void* context, int64_t begin, int64_t end), void* context) {
  if (n <= 0) return;
  int64_t threads = std::min<int64_t>(omp_get_max_threads(), n / std::max<int64_t>(grain, 1));
#ifdef TS_CPU_PARALLEL_SERIAL
  threads = 1;
#endif
  if (threads <= 1) {
    body(context, 0, n);
    return;
  }
  align = std::max<int64_t>(align, 1);
  const int64_t pieces = threads * kPiecesPerThread;
  const int64_t piece = (n + pieces - 1) / pieces;
  Region region;
  region.n = n;
  region.piece = (piece + align - 1) / align * align;
  region.body = body;
  region.context = context;
  // Alignment can leave fewer pieces than threads: ask only for threads that can have one.
  threads = std::min(threads, (n + region.piece - 1) / region.piece);
  if (threads <= 1) {
    body(context, 0, n);
    return;
  }
  GOMP_parallel(RunPieces, &region, static_cast<unsigned>(threads), 0);
}

}  // namespace tessera::kernels
