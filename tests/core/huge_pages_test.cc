// Huge pages asked for large fresh vectors (core/huge_pages.h): the storage is the vector's as
// before, and where the kernel offers THP the pages touched afterwards are huge ones.
#include "core/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace tessera {
namespace {

std::string ThpMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  return line;
}

// kB of huge pages in the mapping that holds `p`, from /proc/self/smaps; -1 if not found.
int64_t AnonHugeKbAt(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= addr && addr < hi;
      continue;
    }
    if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      return std::stoll(line.substr(line.find_first_of("0123456789")));
    }
  }
  return -1;
}

TEST(HugePagesTest, ReserveKeepsTheContentsAndGivesTheCapacity) {
  std::vector<uint64_t> v = {1, 2, 3};
  ReserveHugePages(&v, size_t{4} << 20);
  EXPECT_GE(v.capacity(), size_t{4} << 20);
  EXPECT_EQ(v, (std::vector<uint64_t>{1, 2, 3}));
  // A reserve that does not grow the vector leaves it alone.
  const uint64_t* data = v.data();
  ReserveHugePages(&v, 10);
  EXPECT_EQ(v.data(), data);
  // Small or null ranges are accepted and ignored.
  AdviseHugePages(nullptr, 1 << 30);
  AdviseHugePages(v.data(), 100);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif
#else
constexpr bool kSanitizerAllocator = false;
#endif

TEST(HugePagesTest, AFilledLargeVectorGetsHugePagesWhereTheKernelOffersThem) {
  if (kSanitizerAllocator) GTEST_SKIP() << "a sanitizer's allocator owns the mappings";
  const std::string mode = ThpMode();
  if (mode.find("[never]") != std::string::npos || mode.empty()) {
    GTEST_SKIP() << "transparent huge pages are off here (" << mode << ")";
  }
  std::vector<float> v;
  ReserveHugePages(&v, size_t{16} << 20);  // 64 MiB
  v.resize(v.capacity(), 1.0f);
  const int64_t huge_kb = AnonHugeKbAt(v.data() + v.size() / 2);
  ASSERT_GE(huge_kb, 0) << "the vector's mapping is not in /proc/self/smaps";
  // Without the advice (THP mode "madvise") there are none; with it, all 64 MiB but what the
  // kernel could not find free huge pages for. One is enough to tell.
  EXPECT_GE(huge_kb, 2048) << "THP mode " << mode;
}

}  // namespace
}  // namespace tessera
