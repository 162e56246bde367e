// Transparent huge pages for large arrays that are filled once and then read (a reader's
// ratings, the samples a worker trains on).
//
// Linux's default here is THP mode "madvise": a range gets 2 MiB pages only when the process asks.
// Without them, filling 200 MB faults 50,000 times, each fault a few microseconds under
// virtualisation: MF's set-up on 10M ratings spent a quarter of its time in page faults (perf,
// docs/PERFORMANCE.md). Asking costs nothing where THP is off or the range is small.
#pragma once

#include <cstddef>
#include <vector>

namespace tessera {

// Asks for huge pages over the whole 2 MiB pages inside [begin, begin + bytes). Best effort: a
// no-op below 4 MiB, on kernels without THP, and for pages already touched (those keep their
// small pages until the kernel collapses them).
void AdviseHugePages(const void* begin, size_t bytes);

// v->reserve(n), with huge pages asked for the new storage before anything touches it. Use it
// where a large vector is about to be filled.
template <typename T>
void ReserveHugePages(std::vector<T>* v, size_t n) {
  const bool fresh = n > v->capacity();
  v->reserve(n);
  if (fresh) AdviseHugePages(v->data(), v->capacity() * sizeof(T));
}

}  // namespace tessera
