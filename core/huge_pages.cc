#include "core/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace tessera {

void AdviseHugePages(const void* begin, size_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (begin == nullptr || bytes < 2 * kHuge) return;
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (reinterpret_cast<uintptr_t>(begin) + bytes) & ~(kHuge - 1);
  if (last <= first) return;
#ifdef MADV_HUGEPAGE
  // Failure (EINVAL without THP) leaves the range as it was: nothing to report.
  (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

}  // namespace tessera
